"""The papers' claims, decided over paired seeds: ``python -m affectlab.course claims``.

A chapter trains each model once, under one seed, and the spread between seeds (benchmarks/seed_spread.md) is
as large as most of the papers' effects, so no chapter decides "A beats B" from its own run. Here each claim
compares A (the paper's side) with B trained under the *same* training seed — same data order, augmentation and
initialisation of the parts they share — on the course's world and face model, over several seeds, and one
documented rule turns the paired differences d = A - B into a verdict:

    holds         a one-sided paired t-test in the paper's direction gives p < 0.1 (H1: mean d > 0)
    opposite      the same test the other way gives p < 0.1 (H1: mean d < 0)
    within noise  neither (no bootstrap: fewer than 10 seeds)

Each recipe that has claims provides ``paired_claims(seed, profile, data_root, device)`` returning
``{claim id: (A, B)}`` — the same recipe functions its chapter calls. The per-seed results are cached under
data/cache/claims (keyed by the data, the settings and the package's source), so a second ``make course`` only
decides. The verdicts go to ``runs/<profile>/directions.json``; chapters show theirs with ``show_verdicts``
and the report (chapter 09) opens with all of them.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from affectlab.cache import atomic_write_text

ALPHA = 0.1          # the one-sided level of both tests
VERDICTS = ("holds", "opposite", "within noise")
NOT_MEASURED = "not measured"   # the data cannot give the claim's metric (e.g. no occlusion ground truth)


@dataclass(frozen=True)
class Claim:
    id: str
    chapter: str
    claim: str          # the paper's direction, A beats B
    paper: str          # the paper's own figures, with the table
    metric: str         # what A and B are (the paper's metric)
    recipe: str         # the recipe whose paired_claims computes it
    seeds: int          # how many seeds (5 where a run is cheap)


CLAIMS: tuple[Claim, ...] = (
    Claim("fc_joint", "03", "joint training (expression + valence/arousal) beats single-task training",
          "FaceChannelS Table I: FC vs FC_E / FC_A / FC_V: F1 0.49 vs 0.31, CCC-A 0.50 vs 0.38, CCC-V 0.25 vs 0.12",
          "mean of macro-F1, CCC arousal and CCC valence (joint FC vs the single-task FC of each)",
          "facechannel", 3),
    Claim("fc_sequence", "03", "FaceChannelS (10-frame sequences) beats the frame model FaceChannel",
          "FaceChannelS Table I: FC-S vs FC: F1 0.52 vs 0.49, CCC-A 0.53 vs 0.50, CCC-V 0.27 vs 0.25",
          "mean of macro-F1, CCC arousal and CCC valence (FC-S vs FC)", "facechannel", 3),
    Claim("senet_weighted_rare", "04", "the class-weighted loss raises the rare classes' F1 (Anger, Disgust, Fear)",
          "SE-ResNet-50 §3 (weights against the imbalance) and Table 2: F1 Anger 0.09, Disgust 0.02, Fear 0.22 "
          "with the weights (the paper shows no unweighted run)",
          "mean F1 of Anger, Disgust and Fear (weighted vs unweighted cross-entropy, same head, same features)",
          "senet50", 5),
    Claim("scan_pretraining", "06", "a pre-trained face model is necessary: without it the score drops far",
          "SCAN+CCI Table 4: expression score 0.465 pre-trained vs 0.329 without pre-training",
          "macro-F1 (SCAN+CCI on the pre-trained face model vs on a randomly initialised one)", "scan", 3),
    Claim("temporal_multitask", "05", "multi-task training (expression + valence/arousal) beats expression-only",
          "Do et al. Table II, model 2 vs model 1: expression score 0.501 vs 0.409",
          "ABAW expression score (model 2 vs model 1)", "temporal", 5),
    Claim("temporal_stat_va", "05", "the STAT module over past frames raises the valence/arousal score",
          "Do et al. Table II, model 4 vs model 2: VA score 0.534 vs 0.484",
          "mean CCC of valence and arousal (model 4 vs model 2)", "temporal", 5),
    Claim("scan_vs_plain", "06", "SCAN+CCI beats the plain pre-trained backbone",
          "SCAN+CCI Table 2: F1 0.370 vs 0.335, expression score 0.465 vs 0.422",
          "macro-F1 (SCAN+CCI vs the plain ResNet; both on the same frozen stages)", "scan", 3),
    Claim("scan_occlusion", "06", "SCAN+CCI loses less than the plain backbone on occluded frames",
          "SCAN+CCI §1, §4: local attention is meant to be robust to occlusion (no table of it)",
          "minus the accuracy drop from unoccluded to occluded validation frames", "scan", 3),
    Claim("facernet_mask", "07", "FaceRNET's Mask beats cutting/looping the videos to a fixed length",
          "FaceRNET Table 3: Pearson ρ 0.494 with the Mask vs 0.469 without",
          "mean Pearson ρ over the 7 reactions", "facernet", 5),
    Claim("facernet_pearson", "07", "the Pearson loss beats MSE on Pearson ρ",
          "FaceRNET Table 3: ρ 0.494 with the Pearson loss vs 0.481 with MSE",
          "mean Pearson ρ over the 7 reactions (the Pearson loss at the rate tuned for it; MSE at its best of "
          "that rate ×1/3, ×1, ×3)",
          "facernet", 5),
    # Beyond the ten the course set out with: two more of FaceRNET's ablations, cheap on cached features.
    Claim("facernet_all_reps", "07", "all three REC representations together beat the best single one",
          "FaceRNET Table 2: Pearson ρ 0.494 with VA, expressions and AUs vs 0.480 with the best single one (AUs)",
          "mean Pearson ρ over the 7 reactions (all three vs the best of VA, expressions, AUs on that seed)",
          "facernet", 5),
    Claim("facernet_gru", "07", "a GRU beats an LSTM of the same width",
          "FaceRNET Table 3: Pearson ρ 0.494 with REC + GRU + FC (32) vs 0.482 with REC + LSTM + FC (32)",
          "mean Pearson ρ over the 7 reactions", "facernet", 5),
)
BY_ID = {c.id: c for c in CLAIMS}


def verdict(diffs: Sequence[float], alpha: float = ALPHA) -> tuple[str, float, float]:
    """(verdict, p of the test in the paper's direction, p of the test the other way) of paired differences.

    A one-sample t-test of the differences against 0 is exactly the paired t-test of A against B."""
    from scipy.stats import ttest_1samp

    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or not np.isfinite(d).all():
        raise ValueError(f"a verdict needs at least 2 finite paired differences, got {list(d)}")
    if np.ptp(d) == 0:   # no spread: the t statistic is undefined, the sign is all there is
        p_up = 0.0 if d[0] > 0 else 1.0
        p_down = 0.0 if d[0] < 0 else 1.0
    else:
        p_up = float(ttest_1samp(d, 0.0, alternative="greater").pvalue)
        p_down = float(ttest_1samp(d, 0.0, alternative="less").pvalue)
    v = "holds" if p_up < alpha else "opposite" if p_down < alpha else "within noise"
    return v, p_up, p_down


def decide(claim: Claim, pairs: dict[int, tuple[float, float]]) -> dict:
    """The record of one claim from ``{seed: (A, B)}``: the fields of directions.json."""
    seeds = sorted(pairs)
    a = np.array([pairs[s][0] for s in seeds], dtype=float)
    b = np.array([pairs[s][1] for s in seeds], dtype=float)
    d = a - b
    v, p_up, p_down = verdict(d)
    return {"id": claim.id, "chapter": claim.chapter, "claim": claim.claim, "paper": claim.paper,
            "metric": claim.metric, "ours_mean_diff": float(d.mean()),
            "ours_spread": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "seeds": seeds, "diffs": d.tolist(), "a": a.tolist(), "b": b.tolist(),
            "p_holds": p_up, "p_opposite": p_down, "verdict": v}


def paired_results(recipe_name: str, seed: int, profile: str, data_root=None, device="auto",
                   overrides: dict | None = None, cache: bool = True) -> dict[str, tuple[float, float]]:
    """``{claim id: (A, B)}`` of one recipe under one training seed (``overrides``: settings of that recipe,
    e.g. fewer epochs for a test of the machinery), from data/cache/claims when the same data, settings and
    source made it before."""
    from affectlab.cache import cached_json, code_key, data_key, key
    from affectlab.data.roots import resolve_data_root
    from affectlab.recipes import RECIPES, recipe, settings

    S = settings(recipe_name, profile, **(overrides or {}))
    root = resolve_data_root(data_root, S["preset"], 0)

    def compute() -> dict:
        out = recipe(recipe_name).paired_claims(seed, profile, data_root, device, **(overrides or {}))
        return {k: (float(a), float(b)) for k, (a, b) in out.items()}

    if not cache:
        return compute()
    # one invalidation rule (affectlab.cache): the data, the settings and the code that trains this recipe
    k = key(recipe_name, profile, seed, data_key(root), S, code_key(RECIPES[recipe_name][0]))
    return {c: tuple(v) for c, v in cached_json(f"claims/{recipe_name}-{profile}-seed{seed}", k, compute).items()}


def _one_thread() -> None:
    """A claims worker's start: one thread, set before torch starts its pool (the seed spread's one-thread
    setting)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _timed_pair(name: str, seed: int, profile: str, data_root, device, overrides, cache) -> tuple:
    t0 = time.time()
    return name, seed, paired_results(name, seed, profile, data_root, device, overrides, cache), time.time() - t0


def run_claims(profile: str = "quick", data_root=None, device="auto", seeds: Sequence[int] | None = None,
               only: Sequence[str] | None = None, out: str | Path | None = None, log=print,
               overrides: dict[str, dict] | None = None, cache: bool = True, jobs: int = 1) -> list[dict]:
    """Decide every claim (or ``only`` those ids: the others keep their records there) and write
    ``<out>/directions.json`` (default runs/<profile>); ``seeds`` overrides each claim's own number of seeds 0..n-1; ``overrides`` maps a recipe
    name to settings of its own (e.g. ``{"facechannel": {"epochs": 1}}``; a test of the machinery).

    ``jobs`` > 1 (CPU): seed 0 of every recipe trains here, on the default threads, as the chapters do (so a
    chapter at seed 0 finds its models cached, e.g. chapter 03's FaceChannels); the other seeds train ``jobs``
    at a time, each in its own process on one thread. The quick models are too small for two threads to help
    much, so on the course's 2-core machine two one-thread processes finished two seeds in 0.55x the time of
    one after the other on two threads for FaceRNET, 0.68x for SCAN+CCI and about 1.0x for the FaceChannels
    (``make course``). Each seed's two sides train in the same process, so every pair stays paired; a seed on
    one thread sums in another order, as another seed draws other numbers (FaceRNET's pairs came out the same
    to three decimals on one thread as on two; the FaceChannels' did not)."""
    from affectlab.paths import runs_dir

    unknown = sorted(set(only or ()) - set(BY_ID))
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {list(BY_ID)}")
    chosen = [c for c in CLAIMS if not only or c.id in only]
    if seeds is not None and len(set(seeds)) < 2:
        raise ValueError("a paired test needs at least 2 seeds")
    per_recipe: dict[str, list[int]] = {}
    for c in chosen:
        want = list(seeds) if seeds is not None else list(range(c.seeds))
        per_recipe[c.recipe] = sorted(set(per_recipe.get(c.recipe, [])) | set(want))
    results: dict[str, dict[int, tuple[float, float]]] = {}
    tasks = [(name, s) for name, rseeds in per_recipe.items() for s in rseeds]
    from affectlab.train import resolve_device

    if jobs > 1 and resolve_device(device).type != "cpu":
        log(f"claims: --jobs {jobs} is for the CPU; on {resolve_device(device)} the seeds train one at a time")
        jobs = 1
    here = [t for t in tasks if jobs <= 1 or t[1] == 0]
    elsewhere = [t for t in tasks if t not in here]

    def collect(name, s, pairs, seconds, how=""):
        for cid, pair in pairs.items():
            results.setdefault(cid, {})[s] = pair
        log(f"claims: {name} seed {s} in {seconds:.0f} s{how}")

    for name, s in here:
        collect(*_timed_pair(name, s, profile, data_root, device, (overrides or {}).get(name), cache))
    if elsewhere:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter, so the one-thread setting precedes torch (a fork would inherit its pool)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_one_thread) as pool:
            futures = [pool.submit(_timed_pair, name, s, profile, data_root, device, (overrides or {}).get(name),
                                   cache) for name, s in elsewhere]
            for f in as_completed(futures):   # a failure raises here; the seeds already done stay cached
                collect(*f.result(), how=f" (one thread, {jobs} at a time)")
    records = []
    for c in chosen:
        want = list(seeds) if seeds is not None else list(range(c.seeds))
        got = {s: results.get(c.id, {})[s] for s in want if s in results.get(c.id, {})}
        if len(got) < len(want):   # e.g. occlusion on a data root without occlusion ground truth
            log(f"claims: {c.id} not measured: recipe {c.recipe!r} gave it for seeds {sorted(got)} of {want}")
            records.append({**decide(c, {0: (0.0, 0.0), 1: (0.0, 0.0)}), "seeds": sorted(got), "diffs": [], "a": [],
                            "b": [], "ours_mean_diff": None, "ours_spread": None, "verdict": NOT_MEASURED,
                            "p_holds": None, "p_opposite": None,
                            "reason": f"the data gave no value for {len(want) - len(got)} of {len(want)} seeds"})
            continue
        records.append(decide(c, got))
    out_dir = Path(out) if out is not None else runs_dir() / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "directions.json"
    written = records
    if only and path.is_file():   # the claims not run keep their earlier records (in the registry's order)
        decided = {r["id"]: r for r in load_directions(path)} | {r["id"]: r for r in records}
        kept = sorted(set(decided) - {r["id"] for r in records})
        if kept:
            log(f"claims: {', '.join(kept)} keep their earlier records in {path}")
        written = [decided[c.id] for c in CLAIMS if c.id in decided]
    atomic_write_text(path, json.dumps(written, indent=1))
    n_hold = sum(r["verdict"] == "holds" for r in records)
    log(f"claims: {n_hold} of {len(records)} hold -> {path}")
    return records


# --- reading and showing ---------------------------------------------------------------------------------

def load_directions(path: str | Path | None = None, profile: str = "quick") -> list[dict] | None:
    """The records of directions.json (default runs/<profile>/directions.json), or None when none was written."""
    from affectlab.paths import runs_dir

    p = Path(path) if path is not None else runs_dir() / profile / "directions.json"
    if not p.is_file():
        return None
    records = json.loads(p.read_text())
    need = {"id", "chapter", "claim", "paper", "ours_mean_diff", "ours_spread", "seeds", "verdict"}
    for r in records:
        missing = need - set(r)
        if missing or r["verdict"] not in (*VERDICTS, NOT_MEASURED):
            raise ValueError(f"{p}: record {r.get('id', '?')!r} is malformed (missing {sorted(missing)} or "
                             f"verdict {r.get('verdict')!r} not one of {VERDICTS})")
    return records


def verdict_table(records: list[dict]):
    """One row per claim: chapter, claim, the paper's figures, our mean paired difference ± sd, seeds, verdict."""
    import pandas as pd

    def num(x):
        return math.nan if x is None else round(x, 3)

    return pd.DataFrame([{"chapter": r["chapter"], "claim": r["claim"], "verdict": r["verdict"],
                          "ours: mean A-B": num(r["ours_mean_diff"]), "sd": num(r["ours_spread"]),
                          "p": num(r.get("p_holds")), "seeds": len(r["seeds"]),
                          "paper": r["paper"]} for r in records]).set_index("claim")


def plot_differences(records: list[dict], ax=None):
    """A dot per seed of each claim's paired difference A - B (right of 0 = the paper's direction), with
    the mean; coloured by verdict."""
    import matplotlib.pyplot as plt

    colour = {"holds": "tab:green", "opposite": "tab:red", "within noise": "tab:grey", NOT_MEASURED: "w"}
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * len(records) + 1))
    for i, r in enumerate(records):
        d = r.get("diffs", [])
        ax.scatter(d, [i] * len(d), s=18, color=colour[r["verdict"]], alpha=0.7)
        if r["ours_mean_diff"] is not None:
            ax.scatter([r["ours_mean_diff"]], [i], marker="|", s=300, color="k")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(records)), [f"{r['chapter']} {r['id']} ({r['verdict']})" for r in records], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="paired difference A - B per seed (> 0: the paper's direction)")
    return ax


def show_verdicts(chapter: str, profile: str = "quick", metrics_dir: str | Path | None = None):
    """In a chapter: its claims' verdicts over paired seeds, read from the run's directions.json when it
    exists (``<metrics_dir>/../directions.json`` when the course runner gave the chapter its ``metrics_dir``,
    else runs/<profile>/; the claims step writes it: ``python -m affectlab.course claims``). Returns the
    table, or None."""
    import matplotlib.pyplot as plt

    records = load_directions(Path(metrics_dir).parent / "directions.json" if metrics_dir else None, profile)
    mine = [r for r in records or () if r["chapter"] == chapter]
    if not mine:
        print(f"No verdicts for chapter {chapter} yet: `python -m affectlab.course claims --profile {profile}` "
              "decides the claims over paired seeds and writes runs/<profile>/directions.json.")
        return None
    plot_differences(mine)
    plt.tight_layout()
    plt.show()
    return verdict_table(mine)
