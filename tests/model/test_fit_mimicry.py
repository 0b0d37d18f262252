"""FaceRNET on Hume-Vidmimic2: ``python -m affectlab.fit facernet --smoke`` on a tiny mimicry world trains a head of
the six emotions and scores the challenge's mean Pearson ρ over them; a root holding both Hume data sets is
refused; chapter 07's ``mimicry_demo`` runs on a world it makes beside the course's."""
import json
import math

import pytest
import torch

from affectlab import fit
from affectlab.course import read_metrics_file
from affectlab.labels import MIMICRY_EMOTIONS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny-vidmimic", preset="tiny", seed=0, progress=False,
                      corpora=("vidmimic",))


def test_smoke_trains_six_outputs_and_scores_the_mimicry_challenge(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert fit.main(["facernet", "--profile", "quick", "--smoke", "--data-root", str(world), "--out", str(out),
                     "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"Hume-Vidmimic2: 6 intensities ({', '.join(MIMICRY_EMOTIONS)})" in printed
    records = read_metrics_file(out / "fit_facernet.json")
    assert [(r.task, r.metric) for r in records] == [("MIMICRY", "pearson")] and math.isfinite(records[0].value)
    doc = json.loads((out / "fit_facernet.json").read_text())
    assert doc["steps"] == fit.SMOKE_STEPS and math.isfinite(doc["last_loss"])
    state = torch.load(out / "models" / "best.pth", weights_only=False)
    state = state.get("model", state)
    assert state["out.weight"].shape == (len(MIMICRY_EMOTIONS), 32) and state["out.bias"].shape == (6,)


def test_a_root_with_both_hume_data_sets_is_refused_before_training(world, tmp_path, capsys):
    import shutil

    from affectlab.data.synth import make_world

    both = tmp_path / "both"
    shutil.copytree(world / "vidmimic", both / "vidmimic")
    shutil.copytree(make_world(tmp_path / "hume-world", preset="tiny", progress=False, corpora=("hume",)) / "hume",
                    both / "hume")
    assert fit.main(["facernet", "--smoke", "--data-root", str(both), "--out", str(tmp_path / "out"),
                     "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "holds both Hume-Reaction" in err and str(both / "vidmimic") in err
    assert not (tmp_path / "out" / "fit_facernet.json").exists()


def test_chapter_demo_makes_the_mimicry_world_beside_the_course_world_and_scores_six(world, tmp_path, monkeypatch):
    import affectlab.cache as cache
    from affectlab.models.facernet import REC
    from affectlab.recipes import facernet as recipe, settings

    monkeypatch.setattr(cache, "cache_dir", lambda: tmp_path / "cache")   # a random REC's: not the course's cache

    course = tmp_path / "synthetic"          # a course world's folder: its manifest names preset and seed
    course.mkdir()
    (course / "manifest.json").write_text(json.dumps({"preset": "tiny", "seed": 0}))
    assert recipe.mimicry_root(course, {}) == tmp_path / "synthetic-vidmimic"
    assert recipe.mimicry_root(world, {}) == world
    S = settings("facernet", "quick", epochs=2, t=64, batch_size=4)
    res = recipe.mimicry_demo(course, S, "cpu", 0, rec=REC(width=4).eval())
    assert res["targets"] == MIMICRY_EMOTIONS and list(res["pearson"]) == list(MIMICRY_EMOTIONS)
    assert res["videos"] == (8, 4) and -1 <= res["score"] <= 1
    assert list((tmp_path / "cache").glob("facernet-trunk-vidmimic-*"))
    assert res["score"] == pytest.approx(sum(res["pearson"].values()) / 6)
