"""The results page (docs/results.md) and the README's results table, written from the committed measurements.

    python -m affectlab.results                                          # rewrite both from benchmarks/
    python -m affectlab.results --directions runs/quick/directions.json  # first take a claims run's verdicts
    python -m affectlab.results --check                                  # exit 1 if either is out of date

The inputs are ``benchmarks/seed_spread.json`` (written by ``make spread``), ``benchmarks/directions.json`` (a
copy of the ``directions.json`` a claims run writes: ``--directions`` copies one in, or run
``python -m affectlab.course claims --out benchmarks``) and the papers' own figures in
``affectlab/paper_results/*.csv``. Every number on the page is read from them. The prose between the numbers
lives here; wherever it says which way a result went, the words are chosen from the data, so a new
measurement can never leave a sentence that contradicts its table.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from affectlab.claims import ALPHA, load_directions
from affectlab.course import paper_results
from affectlab.paths import project_root

COMMAND = "python -m affectlab.results"
PAGE = Path("docs") / "results.md"
README = Path("README.md")
SPREAD = Path("benchmarks") / "seed_spread.json"
DIRECTIONS = Path("benchmarks") / "directions.json"
# The README's table sits between these two lines; the command rewrites what is between them.
README_START = f"<!-- written by `{COMMAND}`, not by hand -->"
README_END = "<!-- end of results table -->"
CHAPTER_BUDGET_S = 240   # the quick profile's promise: every chapter in at most 4 minutes on a 2-core CPU
NOTEBOOKS = {"03": "03_facechannel", "04": "04_senet50_finetune", "05": "05_multitask_temporal",
             "06": "06_scan_cci", "07": "07_facernet", "08": "08_gradcam"}
METRIC_NAMES = {"f1": "macro-F1", "accuracy": "accuracy", "expr_score": "expression score",
                "va_score": "VA score", "ccc_valence": "CCC valence", "ccc_arousal": "CCC arousal",
                "pearson": "Pearson ρ", "inconsistency": "AU-expression inconsistency"}
Key = tuple[str, str, str, str]   # (notebook, model, variant, metric)


@dataclass(frozen=True)
class Inputs:
    spread: dict              # benchmarks/seed_spread.json
    claims: list[dict]        # benchmarks/directions.json
    papers: pd.DataFrame      # affectlab/paper_results/*.csv

    def figure(self, key: Key) -> dict | None:
        """One figure of the spread: min, mean, max, sd, n and each run's value."""
        for f in self.spread["figures"]:
            if (f["notebook"], f["model"], f["variant"], f["metric"]) == key:
                return f
        return None

    def paper(self, model: str, variant: str, metric: str) -> tuple[float, str] | None:
        """The paper's figure of the same model, variant and metric, with its table, as the report joins them."""
        hit = self.papers[(self.papers.model == model) & (self.papers.variant == variant)
                          & (self.papers.metric == metric)]
        return None if hit.empty else (float(hit.iloc[0]["value"]), str(hit.iloc[0]["table"]))


def load_inputs(root: Path | None = None) -> Inputs:
    root = root or project_root()
    for path in (SPREAD, DIRECTIONS):
        if not (root / path).is_file():
            raise FileNotFoundError(f"{path} is missing: `make spread` writes seed_spread.json; "
                                    f"`{COMMAND} --directions runs/quick/directions.json` copies a claims run's verdicts")
    return Inputs(json.loads((root / SPREAD).read_text()), load_directions(root / DIRECTIONS), paper_results())


# --- small formatters: every number goes through one of these ------------------------------------------

def num(x: float) -> str:
    return f"{x:.3f}"


def signed(x: float) -> str:
    return f"{x:+.3f}"


def paper_num(x: float) -> str:
    """A paper's figure as printed: two decimals, or three where it has them."""
    return f"{x:.2f}" if round(x, 2) == x else f"{x:.3f}"


def mean_sd_range(f: dict) -> str:
    return f"{num(f['mean'])} ± {num(f.get('sd', 0.0))} [{num(f['min'])}, {num(f['max'])}]"


def mean_range(f: dict) -> str:
    return f"{num(f['mean'])} [{num(f['min'])}, {num(f['max'])}]"


def out_of(k: int, n: int) -> str:
    return f"all {n}" if k == n else f"none of {n}" if k == 0 else f"{k} of {n}"


def above(a: float, b: float) -> str:
    """How ``a`` stands to ``b``, in words, as the rounded figures beside it show."""
    a, b = round(a, 3), round(b, 3)
    return "above" if a > b else "below" if a < b else "level with"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def machine_words(spread: dict) -> str:
    """What the data say of the machine, without naming it: the cores and torch's version."""
    m = spread.get("machine", {})
    cores = f"a {m['cores']}-core CPU" if m.get("cores") else "a CPU"
    return f"{cores} (torch {m['torch'].split('+')[0]})" if m.get("torch") else cores


def threads_words(threads: str) -> str:
    return ("torch's default threads" if threads == "default" else
            f"one thread (`OMP_NUM_THREADS=1`)" if threads == "1" else f"{threads} threads (`OMP_NUM_THREADS={threads}`)")


def run_words(run: str) -> str:
    """``seed1-threadsdefault`` -> ``seed 1, torch's default threads``."""
    s, t = re.fullmatch(r"seed(\d+)-threads(\w+)", run).groups()
    return f"seed {s}, " + ("default threads" if t == "default" else "one thread" if t == "1" else f"{t} threads")


def run_settings(spread: dict) -> tuple[list[int], list[str]]:
    """The seeds and thread settings of the spread's runs (named ``seed<N>-threads<T>``)."""
    seeds, threads = [], []
    for name in spread["runs"]:
        s, t = re.fullmatch(r"seed(\d+)-threads(\w+)", name).groups()
        seeds += [int(s)] if int(s) not in seeds else []
        threads += [t] if t not in threads else []
    return seeds, threads


# --- the headline table (README and page) --------------------------------------------------------------

# (chapter, the model as a newcomer reads it, (model, variant, metric) as the chapter records it)
HEADLINES = [
    ("03", "FaceChannel, joint (FC)", ("FaceChannel", "FC", "f1")),
    ("03", "FaceChannelS, joint (FC-S)", ("FaceChannelS", "FC-S", "f1")),
    ("04", "SE-ResNet-50 recipe", ("SENet-50", "paper", "f1")),
    ("05", "TemporalStatNet 6 (STAT + LSTM)", ("TemporalStatNet", "6 Emotion VA Frame with LSTM", "expr_score")),
    ("05", "TemporalStatNet 6 (STAT + LSTM)", ("TemporalStatNet", "6 Emotion VA Frame with LSTM", "va_score")),
    ("06", "SCAN+CCI", ("SCANCCI", "pretrained", "expr_score")),
    ("07", "FaceRNet (REC + GRU + Mask)", ("FaceRNet", "full", "pearson")),
]


def headline_rows(inputs: Inputs, cell: Callable[[dict], str]) -> list[list[str]]:
    rows = []
    for chapter, label, (model, variant, metric) in HEADLINES:
        f = inputs.figure((NOTEBOOKS[chapter], model, variant, metric))
        paper = inputs.paper(model, variant, metric)
        rows.append([chapter, label, METRIC_NAMES.get(metric, metric), "—" if f is None else cell(f),
                     "—" if paper is None else paper_num(paper[0])])
    return rows


def verdict_count(claims: list[dict]) -> str:
    held = sum(r["verdict"] == "holds" for r in claims)
    return f"of the {len(claims)} claims from the papers that the course tests, {held} hold over paired seeds"


def readme_table(inputs: Inputs) -> str:
    n = len(inputs.spread["runs"])
    rows = headline_rows(inputs, mean_range)
    return "\n".join([
        README_START,
        table(["ch.", "model", "metric", f"ours: mean [min, max] of {n} runs", "paper"], rows, right=(4,)),
        "",
        f"{verdict_count(inputs.claims).capitalize()}.",
        README_END])


def with_readme_table(readme: str, block: str) -> str:
    """``readme`` with its results table replaced by ``block``."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no results table between {README_START!r} and {README_END!r}")
    return readme[:start] + block + readme[end + len(README_END):]


# --- the claims ----------------------------------------------------------------------------------------

def claim_line(r: dict) -> str:
    if r["ours_mean_diff"] is None:
        return f"**{r['verdict']}**: {r['claim']} ({r.get('reason', 'no value')})."
    d = r["diffs"]
    wins = sum(x > 0 for x in d)
    return (f"**{r['verdict']}**: {r['claim']}. A − B = {signed(r['ours_mean_diff'])} ± {num(r['ours_spread'])} "
            f"over {len(d)} seeds (A ahead on {out_of(wins, len(d))}; p = {num(r['p_holds'])})"
            f"{' in ' + r['metric'] if r.get('metric') else ''}. "
            f"*Paper:* {r['paper']}.")


def paper_gap(inputs: Inputs, a: tuple[str, str], b: Sequence[tuple[str, str]]) -> tuple[float, float, float, str]:
    """(the paper's A, its best B, A - B, table) for FaceRNet Pearson ρ figures (model, variant)."""
    fa = inputs.paper(*a, "pearson")
    fb = max((inputs.paper(*x, "pearson") for x in b), key=lambda p: p[0])
    return fa[0], fb[0], fa[0] - fb[0], fa[1]


def why_not(r: dict, inputs: Inputs) -> str:
    """What the course can say about a claim that does not hold: the measured pattern, then what differs from
    the paper's setting. Facts about the setting only; the direction of every comparison comes from the data."""
    d, cid = r["diffs"], r["id"]
    if r["ours_mean_diff"] is None:
        return "The data cannot give its metric."
    losses = sum(x < 0 for x in d)
    if cid == "fc_joint":
        return (f"The single-task models win on {out_of(losses, len(d))} seeds. The quick FaceChannel is a narrow "
                "network trained for a few short epochs on a small balanced sample, its three heads sharing one "
                "dense layer; the paper's joint gain came from full-width networks trained on all of Aff-Wild2.")
    if cid == "temporal_multitask":
        return ("In the quick profile the face model's features are frozen and cached, so the valence/arousal "
                "branches can shape only the small layers over them; the paper fine-tunes the face model's last "
                "stage end to end (the `paper` profile does), which is where shared supervision would act.")
    if cid == "scan_vs_plain":
        s = {m: inputs.figure(("06_scan_cci", "SCANCCI", "pretrained", m))["mean"]
             for m in ("f1_unoccluded", "f1_occluded")}
        p = {m: inputs.figure(("06_scan_cci", "PlainResNet", "pretrained", m))["mean"]
             for m in ("f1_unoccluded", "f1_occluded")}
        s["f1"] = inputs.figure(("06_scan_cci", "SCANCCI", "pretrained", "f1"))["mean"]
        p["f1"] = inputs.figure(("06_scan_cci", "PlainResNet", "pretrained", "f1"))["mean"]
        return (f"Over the seed spread's runs of chapter 06, SCAN+CCI's macro-F1 is {above(s['f1'], p['f1'])} the "
                f"plain model's on all frames ({num(s['f1'])} vs {num(p['f1'])}): "
                f"{above(s['f1_occluded'], p['f1_occluded'])} it on occluded frames "
                f"({num(s['f1_occluded'])} vs {num(p['f1_occluded'])}) and "
                f"{above(s['f1_unoccluded'], p['f1_unoccluded'])} it on unoccluded ones ({num(s['f1_unoccluded'])} "
                f"vs {num(p['f1_unoccluded'])}). One way the quick profile differs from the paper: it trains only "
                "the heads over frozen, cached conv3_x and conv4_x maps of small faces, where one conv3_x cell already sees much of the face, so "
                "SCAN's \"local\" patches are less local than in the paper's large images. Rendering larger faces "
                "would retrain the face model and slow every image chapter; the course does not.")
    if cid in ("facernet_all_reps", "facernet_gru"):
        if cid == "facernet_all_reps":
            pa, pb, gap, tab = paper_gap(inputs, ("FaceRNet", "repr=va+expr+au"),
                                         [("FaceRNet", f"repr={x}") for x in ("va", "expr", "au")])
            who = "the best single representation"
            likely = ("A likely reason, not measured apart: the synthetic faces move by action units that carry "
                      "the expression, so the AU representation alone holds most of what the others add.")
        else:
            pa, pb, gap, tab = paper_gap(inputs, ("FaceRNet", "full"), [("FaceRNet", "lstm")])
            who = "the LSTM"
            likely = ""
        sd = r["ours_spread"]
        return (f"{who[0].upper() + who[1:]} wins on {out_of(losses, len(d))} seeds. The paper's own gap is "
                f"{num(gap)} ρ ({num(pa)} vs {num(pb)}, Table {tab}), {'smaller' if gap < sd else 'larger'} than "
                f"the sd of our paired differences ({num(sd)}). {likely}").strip()
    return f"Chapter {r['chapter']} shows it seed by seed."


# --- per chapter: what the course reproduces, and what it does not ----------------------------------------

@dataclass(frozen=True)
class Chapter:
    number: str
    title: str
    reproduces: str      # what the quick profile keeps of the paper
    differs: str         # what it changes, and why


CHAPTERS = [
    Chapter("03", "FaceChannel and FaceChannelS (Barros & Sciutti, ABAW 2020)",
            "the network and its heads, Table I's single-task and joint variants, and FaceChannelS over "
            "frame sequences, trained from scratch on coherent, balanced frames",
            "the quick FaceChannel is narrower, sees small faces and trains for a few short epochs on a sample "
            "of the balanced frames; the paper trains the full network on all of Aff-Wild2"),
    Chapter("04", "SE-ResNet-50 fine-tuning (Cafarelli et al., ABAW 2020)",
            "the recipe: two learning rates, accumulated micro-batches, colour jitter, the class-weighted loss, "
            "Aff-Wild2 with ExpW merged in",
            "the quick profile fine-tunes the course's own narrow ResNet-18 face model (pre-trained on the "
            "synthetic still-face corpora) briefly; the paper fine-tunes an SE-ResNet-50 pre-trained "
            "on VGGFace2 (the `paper` profile builds it)"),
    Chapter("05", "The multi-task temporal statistical model (Do et al., ABAW 2020)",
            "all six variants of Table I (image or frame features, with or without valence/arousal, STAT, "
            "LSTM) and their fusion",
            "the quick profile trains small heads on the frozen face model's cached features; the paper uses a "
            "VGGFace2 ResNet-50 with its last stage fine-tuned and a wide bidirectional LSTM"),
    Chapter("06", "SCAN + CCI (Gera & Balasubramanian, ABAW 2020)",
            "spatio-channel attention over conv3_x patches, complementary context over conv4_x, the plain "
            "backbone beside it, the pre-training and data-size ablations, and occlusion (which only a "
            "synthetic world labels)",
            "the quick profile freezes the face model through conv4_x, caches its maps and trains SCAN + CCI "
            "(one SCAN shared by all patches) on them; the paper trains a whole ResNet-50 on large faces"),
    Chapter("07", "FaceRNET (Kollias et al., 2023)",
            "REC with distribution matching, the GRU over whole videos, the Mask for variable lengths, the "
            "Pearson loss, and the ablations of Tables 2 and 3",
            "the quick REC is narrow, sees small faces on a subset of frames, and FaceRNet trains on REC's cached "
            "embeddings of shorter videos; the paper trains for days on a GPU"),
]


def chapter_figures(inputs: Inputs, notebook: str) -> list[list[str]]:
    """Every figure of the chapter that the paper also reports, ours beside the paper's."""
    rows = []
    for f in inputs.spread["figures"]:
        if f["notebook"] != notebook:
            continue
        paper = inputs.paper(f["model"], f["variant"], f["metric"])
        if paper is not None:
            rows.append([f["model"], f["variant"], METRIC_NAMES.get(f["metric"], f["metric"]), mean_sd_range(f),
                         f"{paper_num(paper[0])} ({paper[1]})"])
    return rows


def chapter_section(ch: Chapter, inputs: Inputs) -> str:
    notebook = NOTEBOOKS[ch.number]
    out = [f"### {ch.number} · {ch.title}", "",
           f"**Reproduced:** {ch.reproduces}. **Not reproduced:** {ch.differs}.", ""]
    rows = chapter_figures(inputs, notebook)
    if rows:
        out += [table(["model", "variant", "metric", "ours: mean ± sd [min, max]", "paper (table)"], rows), ""]
    if ch.number == "04":
        w = inputs.figure((notebook, "SENet-50", "paper", "f1"))
        u = inputs.figure((notebook, "SENet-50", "unweighted", "f1"))
        out += [f"The paper shows no unweighted run. Ours: the weighted loss's macro-F1 over all seven classes is "
                f"{above(w['mean'], u['mean'])} the unweighted loss's ({num(w['mean'])} vs {num(u['mean'])}); "
                "its claim is about the rare classes, below.", ""]
    for r in (r for r in inputs.claims if r["chapter"] == ch.number):
        out.append(f"- {claim_line(r)}")
        if r["verdict"] != "holds":
            out.append(f"  {why_not(r, inputs)}")
    return "\n".join(out + [""])


# --- the seed spread -----------------------------------------------------------------------------------

# Unpaired comparisons the chapters show: (what, notebook, A, B, metric, True when lower is better)
EFFECTS = [
    ("SE-ResNet recipe: pre-trained face model vs from scratch", "04_senet50_finetune",
     ("SENet-50", "paper"), ("SENet-50", "scratch"), "f1", False),
    ("SCAN+CCI: pre-trained face model vs none", "06_scan_cci",
     ("SCANCCI", "pretrained"), ("SCANCCI", "no pretraining"), "f1", False),
    ("SCAN+CCI: every frame vs at most 200 faces per class", "06_scan_cci",
     ("SCANCCI", "pretrained"), ("SCANCCI", "synthetic max 200/class"), "f1", False),
    ("SCAN+CCI: 200 vs 50 faces per class", "06_scan_cci",
     ("SCANCCI", "synthetic max 200/class"), ("SCANCCI", "synthetic max 50/class"), "f1", False),
    ("FaceRNet: the Mask vs cutting/looping to a fixed length", "07_facernet",
     ("FaceRNet", "full"), ("FaceRNet", "no_mask"), "pearson", False),
    ("FaceRNet: REC's three representations vs VA alone", "07_facernet",
     ("FaceRNet", "full"), ("FaceRNet", "repr=va"), "pearson", False),
    ("REC: with vs without distribution matching (L_DM)", "07_facernet",
     ("REC", "with_dm"), ("REC", "without_dm"), "inconsistency", True),
]


def effect_rows(inputs: Inputs) -> list[list[str]]:
    rows = []
    for what, nb, a, b, metric, lower in EFFECTS:
        fa, fb = inputs.figure((nb, *a, metric)), inputs.figure((nb, *b, metric))
        if fa is None or fb is None:
            continue
        runs = sorted(set(fa["runs"]) & set(fb["runs"]))
        better = sum((fa["runs"][x] < fb["runs"][x]) if lower else (fa["runs"][x] > fb["runs"][x]) for x in runs)
        rows.append([what, METRIC_NAMES.get(metric, metric) + (" (lower is better)" if lower else ""),
                     num(fa["mean"]), num(fb["mean"]), out_of(better, len(runs))])
    return rows


def floor_rows(spread: dict) -> list[list[str]]:
    return [[f["notebook"][:2], f"{f['model']} ({f['variant']})", METRIC_NAMES.get(f["metric"], f["metric"]),
             num(f["floor"]), num(f["worst"]), num(f["spread"]), signed(f["margin"]),
             "yes" if f["margin >= spread"] else "no"] for f in spread.get("floors", [])]


def timing_rows(spread: dict, threads: list[str]) -> list[list[str]]:
    rows = []
    for ch in spread["chapters"]:
        nb = NOTEBOOKS.get(ch, ch)
        cells = []
        for t in threads:
            s = [v[nb] for run, v in spread["seconds"].items() if run.endswith(f"-threads{t}") and nb in v]
            cells.append(f"{min(s):.0f}-{max(s):.0f}" if s else "—")
        rows.append([ch, *cells])
    return rows


def jobs_words(spread: dict) -> str:
    """How many one-thread runs went at once, per chapter when chapters were measured by different runs
    (``python -m affectlab.spread --only``): two at once share the cores, so each takes longer than alone."""
    measured = spread.get("measured")
    if not measured:
        return f"one-thread runs went {spread.get('jobs', 1)} at a time."
    groups: dict[tuple, list[str]] = {}
    for ch, m in sorted(measured.items()):
        groups.setdefault((m.get("jobs") or 1, m.get("date")), []).append(ch)
    return "; ".join(f"chapter{'s' if len(chs) > 1 else ''} {', '.join(chs)}: one-thread runs {jobs} at a time"
                     f" ({'measured ' + date if date else 'an earlier run'})"
                     for (jobs, date), chs in groups.items()) + "."


def spread_section(inputs: Inputs) -> str:
    sp = inputs.spread
    seeds, threads = run_settings(sp)
    n_runs = len(sp["runs"])
    statuses = [v for per_run in sp.get("status", {}).values() for v in per_run.values()]
    passed = sum(v == "ok" for v in statuses)
    thread_words = [threads_words(t) for t in threads]
    floors = sp.get("floors", [])
    thin = min(floors, key=lambda f: f["margin"]) if floors else None
    over = [(run, nb, s) for run, per in sp["seconds"].items() for nb, s in per.items() if s > CHAPTER_BUDGET_S]
    guesses = [f for f in sp["figures"] if f["model"] in ("Chance", "PriorGuess", "AlwaysNeutral")
               and f["metric"] == "f1"]
    out = ["## The seed spread", "",
           "The same seed trains to other numbers on another CPU or with another thread count, so one run's "
           f"figure is one draw. `make spread` (`python -m affectlab.spread`) ran chapters "
           f"{', '.join(sp['chapters'])} under training seeds {', '.join(map(str, seeds))}, each with "
           f"{' and with '.join(thread_words)}: {n_runs} runs per figure, on {machine_words(sp)}. "
           "Every seed trains and validates on the course's one synthetic world, as a real dataset stays the "
           "same whatever the seed. Every figure of every run is in "
           "[benchmarks/seed_spread.md](../benchmarks/seed_spread.md).", "",
           f"**{passed} of {len(statuses)}** chapter runs pass their assertions.", "",
           "### Headline figures", "",
           table(["ch.", "model", "metric", "ours: mean ± sd [min, max]", "paper"],
                 headline_rows(inputs, mean_sd_range), right=(4,)), ""]
    if guesses:
        lo, hi = min(f["mean"] for f in guesses), max(f["mean"] for f in guesses)
        out += [f"A face-blind guess (the class prior, the best constant) scores macro-F1 {num(lo)}-{num(hi)} on "
                "these validation sets: that is what learning nothing looks like.", ""]
    out += ["### Effects, run by run", "",
            "Unpaired chapter figures (means over the runs) and in how many runs A came out ahead of B. A "
            "comparison the chapters cannot settle this way is decided by the paired claims above.", "",
            table(["comparison", "metric", "A", "B", "A ahead in"], effect_rows(inputs), right=(2, 3)), "",
            "### The floors the chapters assert", "",
            "A chapter asserts only floors (`affectlab.checks.FLOORS`): the least a model that learnt the faces "
            "reaches. margin = worst run − floor; spread = best − worst run.", "",
            table(["ch.", "model", "metric", "floor", "worst run", "spread", "margin", "margin ≥ spread"],
                  floor_rows(sp), right=(3, 4, 5, 6)), ""]
    if thin:
        out += [f"The thinnest margin is {thin['model']} ({thin['variant']}) {METRIC_NAMES.get(thin['metric'])}: "
                f"its worst run clears the floor {num(thin['floor'])} by {num(thin['margin'])}, "
                f"{'less' if thin['margin'] < thin['spread'] else 'no less'} than the {num(thin['spread'])} "
                "between its best and worst runs.", ""]
    over_words = ("none" if not over else
                  "; ".join(f"chapter {nb[:2]} under {run_words(run)} ({s:.0f} s)" for run, nb, s in over))
    out += ["### Time per chapter", "",
            f"Seconds per chapter as papermill timed them, min-max over the seeds; {jobs_words(sp)}", "",
            table(["ch.", *thread_words], timing_rows(sp, threads), right=(1, 2)), "",
            f"Over the {CHAPTER_BUDGET_S // 60}-minute budget of a quick chapter: {over_words}.", ""]
    return "\n".join(out)


# --- the page ------------------------------------------------------------------------------------------

def results_page(inputs: Inputs) -> str:
    claims = inputs.claims
    decided = [r for r in claims if r["ours_mean_diff"] is not None]
    rows = [[r["chapter"], r["claim"], ", ".join(signed(x) for x in r["diffs"]),
             f"{signed(r['ours_mean_diff'])} ± {num(r['ours_spread'])}", num(r["p_holds"]), f"**{r['verdict']}**"]
            for r in decided]
    parts = [
        "# Results of the quick profile", "",
        f"<!-- Written by `{COMMAND}` from benchmarks/seed_spread.json, benchmarks/directions.json and "
        "src/affectlab/paper_results/; edit src/affectlab/results.py, not this page. -->", "",
        "Every number here comes from the course's **quick** profile: small models trained for minutes on a "
        "CPU, on the synthetic in-the-wild world that ships with the course. The papers' figures are on real "
        "Aff-Wild2 or Hume-Reaction data, with large networks trained at full scale on GPUs. So the "
        "course does not reproduce the papers' numbers, and does not try to: it reproduces their **models and "
        "recipes**, and tests their **directions** (\"A beats B\") over paired seeds. Beside each paper's table "
        "below is what the course keeps of it and what it changes.", "",
        "- [The papers' claims](#the-papers-claims-decided-over-paired-seeds)",
        "- [Chapter by chapter](#chapter-by-chapter-ours-beside-the-papers)",
        "- [The seed spread](#the-seed-spread)",
        "- [How this page is made](#how-this-page-is-made)", "",
        "## The papers' claims, decided over paired seeds", "",
        "Each claim's two sides, A and B, are trained by the chapter's own recipe functions under the **same** "
        "training seed (same data order, augmentation and initial weights), on the course's world and face "
        "model, over several seeds. A claim **holds** when a one-sided paired t-test of A − B in the paper's "
        f"direction gives p < {ALPHA:g}, is **opposite** when the test the other way does, and is **within "
        "noise** otherwise (`affectlab.claims`).", "",
        f"**{verdict_count(claims).capitalize()}.**", "",
        table(["ch.", "claim (A beats B)", "A − B per seed", "mean ± sd", "p", "verdict"], rows, right=(4,)), "",
        "## Chapter by chapter: ours beside the papers", "",
        "Each table lists the figures a chapter records that its paper also reports (the paper's table in "
        "brackets): ours as mean ± sd [min, max] over the seed spread's runs. Below it, the chapter's claims "
        "and, for those that do not hold, what was measured and what differs from the paper.", ""]
    parts += [chapter_section(ch, inputs) for ch in CHAPTERS]
    parts += [spread_section(inputs),
              "## How this page is made", "",
              f"`{COMMAND}` (or `make results`) writes this page and the README's results table from three "
              "committed inputs, and `tests/unit/test_results_page.py` fails when either differs from what "
              "they give:", "",
              "- `benchmarks/seed_spread.json`: `make spread` measures it and then rewrites this page;",
              "- `benchmarks/directions.json`: the verdicts of a claims run. `make course` writes "
              "`runs/quick/directions.json`; `make results DIRECTIONS=runs/quick/directions.json` copies it "
              "here and rewrites the page (or `python -m affectlab.course claims --out benchmarks`, from the "
              "claims cache);",
              "- `src/affectlab/paper_results/*.csv`: the papers' own figures, as transcribed.", "",
              "The prose lives in `src/affectlab/results.py`; every sentence that says which way a result went "
              "is chosen there from the data.", ""]
    return "\n".join(parts)


# --- writing and checking ------------------------------------------------------------------------------

def expected_files(root: Path | None = None) -> dict[Path, str]:
    """{path: the text the committed inputs give} for the page and the README."""
    root = root or project_root()
    inputs = load_inputs(root)
    readme = (root / README).read_text()
    return {root / PAGE: results_page(inputs), root / README: with_readme_table(readme, readme_table(inputs))}


def stale_files(root: Path | None = None) -> list[Path]:
    return [p for p, text in expected_files(root).items() if not p.is_file() or p.read_text() != text]


def take_directions(source: Path, root: Path | None = None) -> Path:
    """Copy a claims run's directions.json to benchmarks/ after checking it reads as one."""
    from affectlab.cache import atomic_write_text

    if load_directions(source) is None:
        raise FileNotFoundError(f"{source}: no such file (a claims run writes runs/<profile>/directions.json)")
    dest = (root or project_root()) / DIRECTIONS
    atomic_write_text(dest, Path(source).read_text())
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--directions", type=Path, default=None,
                   help="first copy this claims run's directions.json to benchmarks/directions.json")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page or README is stale")
    args = p.parse_args(argv)
    try:
        if args.check:
            stale = stale_files()
            for path in stale:
                print(f"{path} is out of date: run `{COMMAND}` (or `make results`)")
            return 1 if stale else 0
        if args.directions is not None:
            print(f"copied {args.directions} -> {take_directions(args.directions)}")
        from affectlab.cache import atomic_write_text

        for path, text in expected_files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            print(f"wrote {path}")
        return 0
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


# --- in a chapter: this run's verdicts, read and explained -------------------------------------------------

def explain_verdicts(chapter: str, profile: str = "quick", metrics_dir: str | Path | None = None) -> list[str]:
    """A chapter's claims as this run's ``directions.json`` decided them (the file ``claims.show_verdicts``
    reads), one line each; for a claim that does not hold, what in the world and the models makes it so
    (``why_not``, its figures from the committed seed spread). Without a ``directions.json``, the command that
    writes one. Prints the lines and returns them."""
    records = load_directions(Path(metrics_dir).parent / "directions.json" if metrics_dir else None, profile)
    mine = [r for r in records or () if r["chapter"] == chapter]
    if not mine:
        lines = [f"This run has no verdicts for chapter {chapter}: `python -m affectlab.course claims --profile "
                 f"{profile}` (part of `make course`) decides its claims over paired seeds and writes "
                 f"runs/{profile}/directions.json; run this cell again afterwards."]
    else:
        inputs = load_inputs()
        lines = []
        for r in mine:
            lines.append(claim_line(r).replace("**", ""))
            if r["verdict"] != "holds":
                lines.append("  Why, here: " + why_not(r, inputs))
    print("\n".join(lines))
    return lines
