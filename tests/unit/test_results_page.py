"""docs/results.md and the README's results table are what `python -m affectlab.results` writes from the
committed measurements; the README stays short; the prose follows the data, not the other way round."""
import copy
import json
import shutil

import pytest

from affectlab import results
from affectlab.paths import project_root

ROOT = project_root()
REWRITE = "run `python -m affectlab.results` (or `make results`) and commit docs/results.md and README.md"


@pytest.fixture(scope="module")
def inputs():
    return results.load_inputs(ROOT)


def test_committed_page_and_readme_table_are_what_the_inputs_give():
    for path, text in results.expected_files(ROOT).items():
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing: {REWRITE}"
        assert path.read_text() == text, (f"{path.relative_to(ROOT)} differs from what benchmarks/seed_spread.json, "
                                          f"benchmarks/directions.json and paper_results/ give: {REWRITE}")


def test_readme_is_short_and_links_the_results_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.split()) <= 1200, f"README.md has {len(text.split())} words; at most 1,200 (move detail to docs/)"
    assert "(docs/results.md)" in text


def test_no_machine_is_named(inputs):
    cpu = inputs.spread["machine"]["cpu"]
    for path in (ROOT / "README.md", ROOT / "docs" / "results.md"):
        text = path.read_text()
        for name in {cpu, "EPYC", "Xeon", "Intel", "AMD"}:
            assert name not in text, f"{path.name} names a machine ({name!r})"


def test_every_claim_and_headline_figure_is_on_the_page(inputs):
    page = results.results_page(inputs)
    for r in inputs.claims:
        assert r["claim"] in page
        assert f"{r['ours_mean_diff']:+.3f} ± {r['ours_spread']:.3f}" in page
    f = inputs.figure(("07_facernet", "FaceRNet", "full", "pearson"))
    assert results.mean_sd_range(f) in page


def _flip(inputs, claim_id, diffs, verdict):
    """The same inputs with one claim decided otherwise."""
    claims = copy.deepcopy(inputs.claims)
    r = next(r for r in claims if r["id"] == claim_id)
    r.update(diffs=diffs, ours_mean_diff=sum(diffs) / len(diffs), ours_spread=0.01, p_holds=0.01, verdict=verdict)
    return results.Inputs(inputs.spread, claims, inputs.papers)


def test_verdicts_and_their_explanations_are_chosen_from_the_data(inputs):
    held = sum(r["verdict"] == "holds" for r in inputs.claims)
    fc_joint = next(r for r in inputs.claims if r["id"] == "fc_joint")
    flipped = _flip(inputs, "fc_joint", [0.05, 0.06, 0.04], "holds" if fc_joint["verdict"] != "holds" else "opposite")
    page, new = results.results_page(inputs), results.results_page(flipped)
    now_held = held + (1 if fc_joint["verdict"] != "holds" else -1)
    assert f"tests, {now_held} hold" in new and f"tests, {held} hold" in page
    # the explanation of a claim that does not hold appears exactly when it does not
    why = "The single-task models win on"
    assert (why in page) == (fc_joint["verdict"] != "holds")
    assert (why in new) == (fc_joint["verdict"] == "holds")


def test_comparisons_in_prose_follow_the_numbers(inputs):
    assert results.above(0.3, 0.2) == "above" and results.above(0.2, 0.3) == "below"
    assert results.above(0.2001, 0.2002) == "level with"
    spread = copy.deepcopy(inputs.spread)
    for f in spread["figures"]:   # swap the two models' occluded F1: the sentence must turn round
        if f["notebook"] == "06_scan_cci" and f["metric"] == "f1_occluded" and f["variant"] == "pretrained":
            f["mean"] = {"SCANCCI": 0.1, "PlainResNet": 0.2}[f["model"]]
    r = next(r for r in inputs.claims if r["id"] == "scan_vs_plain")
    text = results.why_not(r, results.Inputs(spread, inputs.claims, inputs.papers))
    assert "below it on occluded frames (0.100 vs 0.200)" in text


def test_directions_are_taken_from_a_claims_run_only_when_they_read_as_one(tmp_path, inputs):
    (tmp_path / "benchmarks").mkdir()
    run = tmp_path / "directions.json"
    run.write_text(json.dumps(inputs.claims[:2]))
    assert results.take_directions(run, tmp_path).read_text() == run.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(ValueError, match="malformed"):
        results.take_directions(bad, tmp_path)
    with pytest.raises(FileNotFoundError):
        results.take_directions(tmp_path / "missing.json", tmp_path)


def test_check_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    for rel in (results.SPREAD, results.DIRECTIONS, results.README):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    monkeypatch.setenv("AFFECTLAB_HOME", str(tmp_path))
    assert results.main(["--check"]) == 1
    assert "results.md is out of date" in capsys.readouterr().out
    assert results.main([]) == 0 and results.main(["--check"]) == 0
    assert (tmp_path / results.PAGE).read_text() == (ROOT / results.PAGE).read_text()
