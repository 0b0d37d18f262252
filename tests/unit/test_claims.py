"""The claims' verdict rule, their records, directions.json and the report that opens with them."""
import json

import pytest

from affectlab import claims as C
from affectlab.course import build_report


@pytest.mark.parametrize("diffs,expected", [
    ([0.05, 0.04, 0.06], "holds"),                  # consistent in the paper's direction
    ([-0.05, -0.04, -0.06], "opposite"),
    ([0.05, -0.04, 0.01], "within noise"),          # signs disagree
    ([0.2, 0.01, -0.15, 0.1, -0.05], "within noise"),
    ([0.01, 0.01, 0.01], "holds"),                  # no spread: the sign decides
])
def test_the_verdict_follows_the_one_sided_paired_t_test(diffs, expected):
    v, p_up, p_down = C.verdict(diffs)
    assert v == expected
    assert 0 <= p_up <= 1 and 0 <= p_down <= 1


def test_the_verdict_matches_scipys_paired_test():
    from scipy.stats import ttest_rel

    a, b = [0.31, 0.28, 0.35, 0.30], [0.29, 0.27, 0.30, 0.31]
    _, p_up, _ = C.verdict([x - y for x, y in zip(a, b)])
    assert p_up == pytest.approx(ttest_rel(a, b, alternative="greater").pvalue)


def test_one_seed_or_a_missing_value_decides_nothing():
    with pytest.raises(ValueError, match="at least 2"):
        C.verdict([0.1])
    with pytest.raises(ValueError, match="finite"):
        C.verdict([0.1, float("nan")])


def test_a_record_holds_what_directions_json_promises():
    claim = C.BY_ID["scan_vs_plain"]
    r = C.decide(claim, {0: (0.30, 0.25), 2: (0.28, 0.26), 1: (0.33, 0.27)})
    assert r["seeds"] == [0, 1, 2]
    assert r["diffs"] == pytest.approx([0.05, 0.06, 0.02])
    assert r["ours_mean_diff"] == pytest.approx(0.04333, abs=1e-4)
    assert r["verdict"] == "holds" and r["chapter"] == "06" and r["paper"] == claim.paper


def test_the_registry_has_the_ten_claims_each_with_a_recipe_that_computes_it():
    from affectlab.recipes import recipe

    assert len(C.CLAIMS) >= 10 and len(C.BY_ID) == len(C.CLAIMS)
    for c in C.CLAIMS:
        assert c.seeds >= 3, c.id
        assert callable(recipe(c.recipe).paired_claims), c.recipe


def test_unknown_claims_and_single_seeds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown claim"):
        C.run_claims(only=["fc_jiont"], out=tmp_path)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        C.run_claims(seeds=[0], out=tmp_path)


def test_a_malformed_directions_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "directions.json"
    path.write_text(json.dumps([{"id": "x", "verdict": "maybe"}]))
    with pytest.raises(ValueError, match="directions.json"):
        C.load_directions(path)
    assert C.load_directions(tmp_path / "none.json") is None


def test_the_report_opens_with_the_verdicts(tmp_path):
    records = [C.decide(C.BY_ID["fc_joint"], {0: (0.3, 0.2), 1: (0.31, 0.22), 2: (0.33, 0.2)}),
               C.decide(C.BY_ID["scan_vs_plain"], {0: (0.2, 0.3), 1: (0.21, 0.33), 2: (0.2, 0.31)})]
    (tmp_path / "directions.json").write_text(json.dumps(records))
    md, html = build_report(tmp_path)
    text = md.read_text()
    assert text.index("claims, decided over paired seeds") < text.index("No metrics recorded")
    assert "1 of 2 hold" in text and "opposite" in text
    assert "paired differences" in html.read_text()


def test_the_mse_side_gets_its_best_of_three_learning_rates(monkeypatch):
    from affectlab.recipes import facernet

    calls = []

    def fake_rho(S, dls, device, seed, *, loss, **kw):
        calls.append((loss, S["lr"]))
        return {"mse": {1e-3: 0.12, 3e-3: 0.01, 9e-3: -0.03}}[loss][round(S["lr"], 6)]

    monkeypatch.setattr(facernet, "variant_rho", fake_rho)
    S = {"lr": 3e-3}
    assert facernet.best_lr_rho(S, None, loss="mse") == pytest.approx(0.12)   # MSE's best rate, not the Pearson one
    assert sorted(lr for _, lr in calls) == pytest.approx([1e-3, 3e-3, 9e-3])
    calls.clear()
    # A rate already measured (the chapter's own fit) is not trained again.
    assert facernet.best_lr_rho(S, None, loss="mse", known={3e-3: 0.5}) == 0.5
    assert sorted(lr for _, lr in calls) == pytest.approx([1e-3, 9e-3])


def test_a_run_of_some_claims_keeps_the_others_earlier_records(monkeypatch, tmp_path):
    """``--only fc_joint`` re-decides that claim; the chapters still find every other verdict."""
    pairs = {"fc_joint": (0.3, 0.2), "fc_sequence": (0.25, 0.3)}

    def fake_pair(name, seed, *args):
        return name, seed, {cid: (a + seed / 100, b) for cid, (a, b) in pairs.items()}, 0.0

    monkeypatch.setattr(C, "_timed_pair", fake_pair)
    first = C.run_claims(only=["fc_joint", "fc_sequence"], out=tmp_path, log=lambda *_: None)
    assert [r["id"] for r in first] == ["fc_joint", "fc_sequence"]
    pairs = {"fc_joint": (0.1, 0.2), "fc_sequence": (0.25, 0.3)}
    lines = []
    again = C.run_claims(only=["fc_joint"], out=tmp_path, log=lines.append)
    assert [r["id"] for r in again] == ["fc_joint"]
    written = {r["id"]: r for r in C.load_directions(tmp_path / "directions.json")}
    assert list(written) == ["fc_joint", "fc_sequence"]                  # the registry's order
    assert written["fc_joint"]["verdict"] == "opposite"                   # this run's
    assert written["fc_sequence"] == first[1]                             # the earlier record, as it was
    assert any("fc_sequence keep their earlier records" in line for line in lines)
