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


# --- Nothing silent: parameters are checked before anything runs; the paper profile says what it will do --

@pytest.fixture
def no_execution(monkeypatch):
    """papermill's execute_notebook replaced by a recorder: these tests check what happens before it."""
    import papermill as pm

    calls = []
    monkeypatch.setattr(pm, "execute_notebook", lambda src, dst, parameters=None, **kw: calls.append((src, parameters)))
    monkeypatch.setattr(course, "_relative_paths", lambda *a, **k: None)
    return calls


def test_a_misspelt_parameter_is_refused_before_any_chapter_runs(chapters, tmp_path, capsys, no_execution):
    out = tmp_path / "run"
    rc = course.main(["run", "--notebooks", str(chapters), "--out", str(out), "-p", "sede", "7"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: parameter 'sede' (did you mean 'seed'?) is not declared by any selected chapter "
                   "(00_first, 01_broken, 02_last); they declare: metrics_dir, profile, seed")
    assert no_execution == [] and not out.exists()          # nothing ran, nothing was written


def test_a_parameter_of_the_wrong_type_is_refused_naming_chapter_and_default(chapters, tmp_path, capsys,
                                                                              no_execution):
    rc = course.main(["run", "--notebooks", str(chapters), "--out", str(tmp_path / "r"), "-p", "seed", "abc"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "error: parameter 'seed' of 00_first must be an integer (its default is 0), got 'abc'")
    assert no_execution == []
    rc = course.main(["run", "--notebooks", str(chapters), "--out", str(tmp_path / "r"), "-p", "seed", "1",
                      "-p", "seed", "2"])
    assert rc == 2 and "'seed' given more than once" in capsys.readouterr().err


def test_values_are_converted_to_the_type_of_each_chapters_default(chapters, tmp_path, no_execution):
    nb = nbformat.read(chapters / "00_first.ipynb", as_version=4)
    nb.cells[0].source += '\nrun_name = "x"\nrate = 0.5\nflag = False\nroot = None'
    nbformat.write(nb, chapters / "00_first.ipynb")
    course.run_course(tmp_path / "r", params={"seed": "3", "run_name": "007", "rate": "1", "flag": "true",
                                               "root": "/data"}, nb_dir=chapters, only=["00"], log=lambda *a, **k: None)
    (_, passed), = no_execution
    assert passed["seed"] == 3 and passed["run_name"] == "007" and passed["rate"] == 1.0
    assert passed["flag"] is True and passed["root"] == "/data" and passed["profile"] == "quick"
    with pytest.raises(ValueError, match=r"'flag' of 00_first must be True or False .*got 'maybe'"):
        course.run_course(tmp_path / "r", params={"flag": "maybe"}, nb_dir=chapters, only=["00"])
    with pytest.raises(ValueError, match=r"'seed' of 00_first must be an integer .*got 1\.5"):
        course.run_course(tmp_path / "r", params={"seed": 1.5}, nb_dir=chapters, only=["00"])


def test_paper_profile_on_a_cpu_says_what_it_will_do_before_starting(chapters, tmp_path, monkeypatch, no_execution):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for stem in ("04_senet", "06_scan"):
        _chapter(chapters / f"{stem}.ipynb", "pass")
    events = []
    import papermill as pm

    monkeypatch.setattr(pm, "execute_notebook", lambda src, dst, **kw: events.append(("run", src)))
    course.run_course(tmp_path / "r", profile="paper", nb_dir=chapters, only=["04", "06"],
                      log=lambda *a, **k: events.append(("log", " ".join(map(str, a)))))
    kind, plan = events[0]
    assert kind == "log" and [e[0] for e in events].index("run") > 0      # the plan comes first
    assert "WARNING: no GPU found" in plan and "runs on the CPU" in plan
    assert "2 chapter(s) (04_senet, 06_scan)" in plan
    # the full preset to generate: 300 x 1,800 Aff-Wild2 frames + 2,000 Hume clips x 144.7 (the mean of
    # log-uniform lengths on [20, 480]) + 46k static faces
    assert "~875k images" in plan and "289k Hume-Reaction frames" in plan and "~4.1 GB on disk" in plan
    assert "04, 06: pre-train the face feature model (resnet50, 112 px, 20 epochs" in plan
    assert "- 04: train SE-ResNet-50 fine-tuning at 112 px for 20 epochs" in plan
    assert "- 06: train SCAN-CCI (ResNet-50) at 224 px for 20 epochs" in plan
    assert "days of training" in plan
    # a GPU and a real data root: no warning, no generation
    gpu = course.paper_plan(course.select_notebooks(chapters, ["04"]), {"data_root": "/datasets"}, cuda=True)
    assert "WARNING" not in gpu and "generate" not in gpu and "read your data at /datasets" in gpu


def test_sigterm_unwinds_the_run_like_ctrl_c_and_the_handler_is_restored():
    import os
    import signal
    import time

    from affectlab.course import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)   # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) is before


def test_affectlab_runs_moves_every_default_run_folder(tmp_path, monkeypatch):
    from affectlab.course import default_metrics_dir
    from affectlab.paths import runs_dir

    monkeypatch.setenv("AFFECTLAB_RUNS", str(tmp_path))
    assert runs_dir() == tmp_path.resolve()
    assert default_metrics_dir("quick") == tmp_path.resolve() / "quick" / "metrics"
    monkeypatch.delenv("AFFECTLAB_RUNS")
    assert default_metrics_dir("quick").parts[-3:] == ("runs", "quick", "metrics")
