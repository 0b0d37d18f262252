"""The course runner and report: failure path, parameters, schema validation."""
import json

import nbformat
import pytest

from affectlab import course


def _chapter(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"\nmetrics_dir = None\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


RECORD = """
from affectlab.course import record_metrics
record_metrics("{name}", [dict(model="FaceChannel", variant="joint", task="EXPR", metric="f1", value=0.5 + seed)],
               profile=profile, seed=seed, data="synthetic", metrics_dir=metrics_dir)
"""


@pytest.fixture
def chapters(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _chapter(nbs / "00_first.ipynb", RECORD.format(name="00_first"))
    _chapter(nbs / "01_broken.ipynb", "raise RuntimeError('this chapter is broken on purpose')")
    _chapter(nbs / "02_last.ipynb", RECORD.format(name="02_last"))
    return nbs


def test_a_failing_chapter_is_reported_and_the_others_still_run(chapters, tmp_path, capsys):
    out = tmp_path / "run"
    before = (chapters / "00_first.ipynb").read_bytes()
    rc = course.main(["run", "--notebooks", str(chapters), "--out", str(out), "-p", "seed", "2"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "01_broken" in err and "00_first" not in err
    status = json.loads((out / "status.json").read_text())["status"]
    assert status["00_first"] == "ok" and status["02_last"] == "ok" and "RuntimeError" in status["01_broken"]
    assert (chapters / "00_first.ipynb").read_bytes() == before  # sources never overwritten
    metrics = course.load_metrics(out)
    assert sorted(metrics["notebook"]) == ["00_first", "02_last"]
    assert set(metrics["value"]) == {2.5} and set(metrics["seed"]) == {2}  # -p seed 2 reached the chapters
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert "01_broken" in (out / "report.md").read_text()


def test_only_selects_chapters_and_unknown_ones_are_one_line_errors(chapters, tmp_path, capsys):
    assert [p.stem for p in course.select_notebooks(chapters, ["02", "00_first"])] == ["00_first", "02_last"]
    rc = course.main(["run", "--notebooks", str(chapters), "--out", str(tmp_path / "r"), "--only", "07"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "07" in err


def test_bad_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        course.main(["run", "--frobnicate"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_schema_is_validated_when_written_and_read(tmp_path):
    row = dict(model="m", variant="v", task="EXPR", metric="f1", value=0.4)
    path = course.record_metrics("03_x", [row], profile="quick", seed=0, data="synthetic", metrics_dir=tmp_path)
    assert course.read_metrics_file(path)[0].value == 0.4
    for bad in (dict(row, value=float("nan")), dict(row, model=""), dict(row, value="high")):
        with pytest.raises((ValueError, TypeError)):
            course.record_metrics("03_x", [bad], profile="quick", seed=0, data="synthetic", metrics_dir=tmp_path)
    (tmp_path / "04_y.json").write_text('{"schema": 1, "records": [{"model": "m"}]}')
    with pytest.raises(ValueError, match="04_y.json"):
        course.load_metrics(tmp_path)


def test_paper_results_files_have_the_columns():
    df = course.paper_results()
    assert list(df.columns) == course.PAPER_COLUMNS
    assert df["value"].notna().all()
