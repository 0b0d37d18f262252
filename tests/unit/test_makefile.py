"""The Makefile's two commands write and train on the world their profile names (checked with `make -n`, which
prints the commands without running them)."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str) -> list[str]:
    out = subprocess.run(["make", "-n", "-B", *args, "VENV=.venv-dry-run"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if "affectlab" in line]


def test_the_quick_course_writes_and_trains_on_the_quick_world():
    lines = _dry_run("course")
    synth = [line for line in lines if "affectlab.data.synth" in line]
    assert synth and all("--preset quick" in line for line in synth)
    assert any("--out data/synthetic " in line + " " for line in synth)
    assert any("--out data/synthetic-vidmimic" in line for line in synth)
    assert any("recipes.pretrain --profile quick" in line for line in lines)
    assert any("course run --profile quick" in line for line in lines)


def test_the_paper_course_writes_the_full_world_beside_the_quick_one():
    # the synthetic world has no "paper" preset: the paper profile trains on the full one, in its own folder
    lines = _dry_run("course", "PROFILE=paper")
    synth = [line for line in lines if "affectlab.data.synth" in line]
    assert synth and all("--preset full" in line for line in synth)
    assert all("data/synthetic-full" in line for line in synth)
    assert any("recipes.pretrain --profile paper" in line for line in lines)
    assert any("course run --profile paper" in line for line in lines)


def test_the_tests_run_on_the_quick_world():
    synth = [line for line in _dry_run("test") if "affectlab.data.synth" in line]
    assert synth and all("--preset quick" in line and "data/synthetic" in line for line in synth)
