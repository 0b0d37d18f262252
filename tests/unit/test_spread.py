"""The seed-spread summary: min / mean / max over runs, per-chapter run folders, floors beside worst runs."""
import json

import pytest

from affectlab.course import record_metrics
from affectlab.spread import floor_margins, run_status, spread_of, summarise, write_summary


def _run(root, run, chapter, values, status="ok"):
    out = root / run / chapter
    record_metrics(chapter, [dict(model=m, variant=v, task="EXPR", metric=k, value=x)
                             for (m, v, k), x in values.items()],
                   profile="quick", seed=int(run[4]), data="synthetic", metrics_dir=out / "metrics")
    (out / "status.json").write_text(json.dumps({"status": {chapter: status}}))


@pytest.fixture
def runs(tmp_path):
    key = ("FaceRNet", "full", "pearson")
    for run, rho in (("seed0-threadsdefault", 0.25), ("seed1-threadsdefault", 0.19), ("seed0-threads1", 0.22)):
        _run(tmp_path, run, "07_facernet", {key: rho})
    _run(tmp_path, "seed1-threads1", "07_facernet", {key: 0.12}, status="AssertionError: FaceRNet learnt too little")
    return tmp_path


def test_summary_gives_min_mean_max_and_each_run(runs):
    table = summarise(runs, ["seed0-threadsdefault", "seed1-threadsdefault", "seed0-threads1"]).iloc[0]
    assert (table["min"], table["max"], table["n"]) == (0.19, 0.25, 3)
    assert table["mean"] == pytest.approx((0.25 + 0.19 + 0.22) / 3)
    assert table["spread"] == pytest.approx(0.06)
    assert table["seed1-threadsdefault"] == 0.19


def test_a_failing_run_keeps_its_figures_and_its_status(runs):
    table = summarise(runs).iloc[0]
    assert table["min"] == 0.12 and table["n"] == 4
    assert run_status(runs / "seed1-threads1") == {"07_facernet": "AssertionError: FaceRNet learnt too little"}


def test_floor_margins_compare_the_worst_run_with_the_floor(runs):
    m = floor_margins(summarise(runs, ["seed0-threadsdefault", "seed1-threadsdefault", "seed0-threads1"])).iloc[0]
    assert (m["floor"], m["worst"]) == (0.15, 0.19)
    assert m["margin"] == pytest.approx(0.04) and m["spread"] == pytest.approx(0.06) and m["sd"] == pytest.approx(0.03)
    assert not m["margin >= spread"] and m["margin >= sd"]


def test_written_summary_is_read_back_by_chapters(runs, tmp_path):
    table = summarise(runs)
    json_path, md_path = write_summary(table, {"machine": {"cpu": "x", "cores": 2, "torch": "t"},
                                               "runs": ["a"]}, tmp_path / "out" / "seed_spread")
    assert "## The floors chapters assert" in md_path.read_text()
    shown = spread_of("07_facernet", {("FaceRNet", "full", "pearson"): 0.2}, path=json_path)
    assert shown.loc[("FaceRNet", "full", "pearson"), "this run"] == 0.2
    assert shown.loc[("FaceRNet", "full", "pearson"), "min"] == 0.12
    assert spread_of("07_facernet", path=tmp_path / "missing.json").empty


def test_a_partial_run_keeps_the_other_chapters_earlier_figures_and_says_which_run_measured_them(runs, tmp_path):
    from affectlab.spread import carry_over

    earlier_table = summarise(runs)
    _run(runs, "seed0-threadsdefault", "03_facechannel", {("FaceChannel", "FC", "f1"): 0.2})
    earlier = {"command": "python -m affectlab.spread --jobs 2", "jobs": 2, "chapters": ["03", "07"],
               "status": {"seed0-threadsdefault": {"03_facechannel": "ok", "07_facernet": "ok"}},
               "seconds": {"seed0-threadsdefault": {"03_facechannel": 99.0, "07_facernet": 150.0}}}
    path, _ = write_summary(summarise(runs), {**earlier, "machine": {"cpu": "x", "cores": 2, "torch": "t"},
                                              "runs": ["seed0-threadsdefault"]}, tmp_path / "earlier" / "s")
    earlier = json.loads(path.read_text())
    # now only chapter 07 is measured again, with other numbers
    table = earlier_table.assign(**{"seed0-threadsdefault": 0.3, "min": 0.3})
    meta = {"command": "python -m affectlab.spread --only 07", "jobs": 1, "date": "2026-12-07",
            "runs": ["seed0-threadsdefault"], "chapters": ["07"],
            "status": {"seed0-threadsdefault": {"07_facernet": "ok"}},
            "seconds": {"seed0-threadsdefault": {"07_facernet": 120.0}}}
    merged, meta = carry_over(table, meta, earlier, ran=["07"])
    assert sorted(merged["notebook"].unique()) == ["03_facechannel", "07_facernet"]
    assert merged.set_index("notebook").loc["07_facernet", "min"] == 0.3              # this run's, not the earlier
    assert merged.set_index("notebook").loc["03_facechannel", "seed0-threadsdefault"] == 0.2
    assert meta["chapters"] == ["03", "07"]
    assert meta["seconds"]["seed0-threadsdefault"] == {"07_facernet": 120.0, "03_facechannel": 99.0}
    assert meta["status"]["seed0-threadsdefault"] == {"07_facernet": "ok", "03_facechannel": "ok"}
    assert meta["measured"]["07"] == {"command": "python -m affectlab.spread --only 07", "jobs": 1, "date": "2026-12-07"}
    assert meta["measured"]["03"]["command"] == "python -m affectlab.spread --jobs 2"
