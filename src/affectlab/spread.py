"""The seed spread: run the training chapters under several seeds and thread counts, and summarise every
recorded figure as min / mean / max over the runs.

    python -m affectlab.spread --jobs 2               # chapters 03-08, seeds 0 1 2, default threads and 1
    python -m affectlab.spread --only 07 --seeds 0 1  # a part of it
    python -m affectlab.spread --summarise-only       # rebuild the summary from runs/spread/

Why: another CPU (another BLAS kernel, another summation order) trains the same seed to other numbers, so one
run's figure is one draw. A chapter's assertion must clear the worst run by at least the spread between runs;
this file is where that spread is measured. Each chapter of each (seed, threads) run is a normal course
run into ``runs/spread/seed<N>-threads<T>/<chapter>/``; the summary goes to ``benchmarks/seed_spread.json``
and ``.md``. Threaded runs go one at a time; ``--jobs`` runs that many one-thread chapters at once.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import pandas as pd

from affectlab.checks import FLOORS
from affectlab.course import load_metrics
from affectlab.paths import project_root

TRAINING_CHAPTERS = ("03", "04", "05", "06", "07", "08")
KEY = ["notebook", "model", "variant", "task", "metric"]
# The figures chapters assert a floor on: (notebook, model, variant, metric) -> floor.
ASSERTED = {
    **{("03_facechannel", model, variant, m): v for model, variant, floors in
       (("FaceChannel", "FC", "facechannel_frame"), ("FaceChannelS", "FC-S", "facechannel"))
       for m, v in FLOORS[floors].items()},
    ("07_facernet", "FaceRNet", "full", "pearson"): FLOORS["facernet"]["pearson"],
    ("08_gradcam", "REC", "gradcam", "f1"): FLOORS["gradcam"]["f1"],
    ("08_gradcam", "SCANCCI", "gradcam", "f1"): FLOORS["gradcam"]["f1"],
}


def spread_of(notebook: str, this_run: dict | None = None, path: str | Path | None = None) -> pd.DataFrame:
    """The measured spread of ``notebook``'s figures (from ``benchmarks/seed_spread.json``), one row per
    figure with min / mean / max / n, and this run's value beside it when ``this_run`` maps
    ``(model, variant, metric)`` to a number. Empty (with a note) if the file has not been made yet."""
    path = Path(path) if path else project_root() / "benchmarks" / "seed_spread.json"
    cols = ["model", "variant", "metric", "min", "mean", "max", "n"]
    if not path.is_file():
        print(f"no seed spread measured yet ({path.name}): run `python -m affectlab.spread`")
        return pd.DataFrame(columns=cols)
    doc = json.loads(path.read_text())
    rows = [{k: f.get(k) for k in cols} for f in doc["figures"] if f["notebook"] == notebook]
    table = pd.DataFrame(rows, columns=cols)
    if this_run:
        keys = list(zip(table.model, table.variant, table.metric))
        table = table[[k in this_run for k in keys]].copy()
        table["this run"] = [this_run[k] for k in zip(table.model, table.variant, table.metric)]
    return table.set_index(["model", "variant", "metric"])


# The README's results table: (chapter, model as the README names it, [(notebook, model, variant, metric)], paper).
HEADLINES = [
    ("03", "FaceChannel, joint (FC)", [("03_facechannel", "FaceChannel", "FC", "f1"),
                                       ("03_facechannel", "FaceChannel", "FC", "ccc_arousal")], "0.49 / 0.50"),
    ("03", "FaceChannelS, joint (FC-S)", [("03_facechannel", "FaceChannelS", "FC-S", "f1"),
                                          ("03_facechannel", "FaceChannelS", "FC-S", "ccc_valence")], "0.52 / 0.27"),
    ("04", "SE-ResNet-50 recipe (quick: the course's narrow ResNet-18 face model)",
     [("04_senet50_finetune", "SENet-50", "paper", "f1"), ("04_senet50_finetune", "SENet-50", "paper", "expr_score")],
     "0.33 / 0.43"),
    ("05", "TemporalStatNet 6 (VA frame + LSTM)",
     [("05_multitask_temporal", "TemporalStatNet", "6 Emotion VA Frame with LSTM", "expr_score"),
      ("05_multitask_temporal", "TemporalStatNet", "6 Emotion VA Frame with LSTM", "va_score")], "0.432 / 0.514"),
    ("05", "TemporalStatNet 1 (image only)",
     [("05_multitask_temporal", "TemporalStatNet", "1 Emotion Image", "expr_score")], "0.409"),
    ("06", "SCAN+CCI / plain ResNet", [("06_scan_cci", "SCANCCI", "pretrained", "expr_score"),
                                       ("06_scan_cci", "PlainResNet", "pretrained", "expr_score")], "0.465 / 0.422"),
    ("07", "FaceRNet (GRU + Mask, VA+expr+AU)", [("07_facernet", "FaceRNet", "full", "pearson")], "0.494"),
    ("08", "REC / SCAN+CCI trained for Grad-CAM", [("08_gradcam", "REC", "gradcam", "f1"),
                                                   ("08_gradcam", "SCANCCI", "gradcam", "f1")], "—"),
]


def headline_markdown(path: str | Path | None = None) -> str:
    """The README's results table from ``seed_spread.json``: each figure as mean ± sd [min, max]."""
    path = Path(path) if path else project_root() / "benchmarks" / "seed_spread.json"
    doc = json.loads(Path(path).read_text())
    figs = {(f["notebook"], f["model"], f["variant"], f["metric"]): f for f in doc["figures"]}
    lines = ["| chapter | model (variant) | metric | ours: mean ± sd [min, max] | paper |",
             "|---|---|---|---|---:|"]
    for chapter, label, keys, paper in HEADLINES:
        cells, metrics = [], []
        for key in keys:
            f = figs.get(tuple(key))
            metrics.append(key[3])
            cells.append("—" if f is None else
                         f"{f['mean']:.3f} ± {f.get('sd', 0):.3f} [{f['min']:.3f}, {f['max']:.3f}]")
        lines.append(f"| {chapter} | {label} | {' / '.join(metrics)} | {' / '.join(cells)} | {paper} |")
    return "\n".join(lines)


def run_name(seed: int, threads: str) -> str:
    return f"seed{seed}-threads{threads}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "default_threads": torch.get_num_threads(), "python": platform.python_version()}


def run_one(seed: int, threads: str, chapter: str, runs_dir: Path) -> dict:
    """One chapter under one seed and thread setting, as a course run into
    ``runs_dir/seed<N>-threads<T>/<chapter>/`` (a subprocess, so OMP_NUM_THREADS takes effect before torch
    starts)."""
    env = dict(os.environ)
    if threads != "default":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    out = runs_dir / run_name(seed, threads) / chapter
    cmd = [sys.executable, "-m", "affectlab.course", "run", "--no-report", "--out", str(out),
           "--only", chapter, "-p", "seed", str(seed)]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=project_root(), capture_output=True, text=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runner.log").write_text(proc.stdout + proc.stderr)
    return {"run": run_name(seed, threads), "chapter": chapter, "seconds": round(time.time() - t0, 1),
            "returncode": proc.returncode}


def _run_folders(run_dir: Path) -> list[Path]:
    """The course-run folders of one (seed, threads) run: one per chapter, or the run folder itself."""
    return [d for d in [run_dir, *sorted(p for p in run_dir.iterdir() if p.is_dir())]
            if (d / "metrics").is_dir() or (d / "status.json").is_file()]


def run_status(run_dir: Path) -> dict[str, str]:
    """{chapter: "ok" | error} over every course run under ``run_dir``."""
    status = {}
    for d in _run_folders(run_dir):
        if (d / "status.json").is_file():
            status.update(json.loads((d / "status.json").read_text())["status"])
    return status


def run_seconds(run_dir: Path) -> dict[str, float]:
    """{chapter: seconds} from the executed notebooks' papermill records."""
    out = {}
    for d in _run_folders(run_dir):
        for nb in sorted(d.glob("[0-9][0-9]_*.ipynb")):
            meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
            if meta.get("duration") is not None:
                out[nb.stem] = round(float(meta["duration"]), 1)
    return out


def summarise(runs_dir: Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """Every recorded figure of every run under ``runs_dir``: one row per figure with min, mean, max, sd,
    spread (= max - min), n and each run's value."""
    frames = []
    for d in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        if runs is not None and d.name not in runs:
            continue
        for f in _run_folders(d):
            m = load_metrics(f) if (f / "metrics").is_dir() else pd.DataFrame()
            if not m.empty:
                frames.append(m.assign(run=d.name))
    if not frames:
        raise FileNotFoundError(f"no runs with metrics under {runs_dir}")
    allm = pd.concat(frames, ignore_index=True)
    wide = allm.pivot_table(index=KEY, columns="run", values="value", aggfunc="first")
    stats = pd.DataFrame({"min": wide.min(axis=1), "mean": wide.mean(axis=1), "max": wide.max(axis=1),
                          "sd": wide.std(axis=1, ddof=1), "n": wide.count(axis=1)})
    stats["spread"] = stats["max"] - stats["min"]
    return stats.join(wide).reset_index()


def floor_margins(table: pd.DataFrame) -> pd.DataFrame:
    """Each asserted figure's floor beside its worst run: margin = worst - floor, to compare with the spread
    (max - min) between runs. A floor holds with a margin when margin >= spread."""
    rows = []
    for (nb, model, variant, metric), floor in ASSERTED.items():
        hit = table[(table.notebook == nb) & (table.model == model) & (table.variant == variant)
                    & (table.metric == metric)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        rows.append({"notebook": nb, "model": model, "variant": variant, "metric": metric, "floor": floor,
                     "worst": r["min"], "mean": r["mean"], "sd": r["sd"], "spread": r["spread"],
                     "margin": r["min"] - floor, "margin >= sd": bool(r["min"] - floor >= r["sd"]),
                     "margin >= spread": bool(r["min"] - floor >= r["spread"])})
    return pd.DataFrame(rows)


def carry_over(table: pd.DataFrame, meta: dict, earlier: dict, ran: Sequence[str] = ()) -> tuple[pd.DataFrame, dict]:
    """``table`` and ``meta`` with what an ``earlier`` summary measured of the chapters ``table`` does not hold
    (``--only 07`` re-measures chapter 07 and keeps the rest): their figures, statuses and seconds under the same
    run names, and in ``meta["measured"]`` which command last ran each chapter (``ran``: this one's) when."""
    have = {nb[:2] for nb in table["notebook"]}
    runs = list(meta["runs"])
    kept = [f for f in earlier.get("figures", []) if f["notebook"][:2] not in have]
    rows = [{**{k: f[k] for k in KEY}, **{k: f.get(k) for k in ("min", "mean", "max", "sd", "spread", "n")},
             **{r: v for r, v in f.get("runs", {}).items() if r in runs}} for f in kept]
    merged = pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if rows else table
    meta = {**meta, "chapters": sorted(set(meta["chapters"]) | {f["notebook"][:2] for f in kept})}
    before = earlier.get("measured") or {ch: {k: earlier.get(k) for k in ("command", "jobs")}
                                         for ch in earlier.get("chapters", [])}
    this = {k: meta.get(k) for k in ("command", "jobs", "date")}
    meta["measured"] = {ch: this if ch in ran or ch not in before else before[ch]
                        for ch in sorted(set(before) | set(meta["chapters"]))}
    for part in ("status", "seconds"):
        for run in runs:
            old = {nb: v for nb, v in earlier.get(part, {}).get(run, {}).items() if nb[:2] not in have}
            if old:
                meta[part] = {**meta.get(part, {}), run: {**meta.get(part, {}).get(run, {}), **old}}
    return merged.sort_values(KEY, kind="stable").reset_index(drop=True), meta


def write_summary(table: pd.DataFrame, meta: dict, out: Path) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    run_cols = [c for c in table.columns if c.startswith("seed")]
    figures = [{**{k: r[k] for k in KEY}, **{k: round(float(r[k]), 4) for k in ("min", "mean", "max", "sd", "spread")
                                              if pd.notna(r[k])},
                "n": int(r["n"]), "runs": {c: round(float(r[c]), 4) for c in run_cols if pd.notna(r[c])}}
               for _, r in table.iterrows()]
    margins = floor_margins(table)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({**meta, "floors": json.loads(margins.round(4).to_json(orient="records")),
                                     "figures": figures}, indent=1))
    md = ["# Seed spread of the training chapters", "",
          f"Measured by `python -m affectlab.spread` on {meta['machine']['cpu']} ({meta['machine']['cores']} cores, "
          f"torch {meta['machine']['torch']}), runs: {', '.join(meta['runs'])}. "
          "Threads `default` = torch's default (one per core); `1` = `OMP_NUM_THREADS=1`.", "",
          *([f"Chapter {ch}: `{m.get('command')}`" + (f" on {m['date']}" if m.get("date") else "")
             + f", one-thread runs {m.get('jobs') or 1} at a time." for ch, m in sorted(meta["measured"].items())]
            + [""] if meta.get("measured") else []),
          "## The floors chapters assert", "",
          "margin = worst run - floor; sd = standard deviation and spread = max - min over the runs.", "",
          margins.to_markdown(index=False, floatfmt=".3f") if not margins.empty else "(none of these runs)", "",
          "## Every recorded figure", "",
          table[KEY + ["min", "mean", "max", "spread", "n"]].to_markdown(index=False, floatfmt=".3f"), ""]
    md_path = out.with_suffix(".md")
    md_path.write_text("\n".join(md))
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m affectlab.spread", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", default=list(TRAINING_CHAPTERS), metavar="CHAPTER")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", nargs="+", default=["default", "1"],
                   help="thread settings: 'default' (torch's own) or a number for OMP_NUM_THREADS")
    p.add_argument("--jobs", type=int, default=1,
                   help="one-thread chapter runs at once (e.g. 2 on 2 cores); threaded runs always go one by one")
    p.add_argument("--runs-dir", type=Path, default=None, help="default: runs/spread")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/seed_spread(.json/.md)")
    p.add_argument("--summarise-only", action="store_true", help="summarise the runs already in --runs-dir")
    p.add_argument("--readme", action="store_true", help="print the README's results table from the summary")
    args = p.parse_args(argv)
    for t in args.threads:
        if t != "default" and not t.isdigit():
            p.error(f"--threads takes 'default' or a number, got {t!r}")
    runs_dir = args.runs_dir or project_root() / "runs" / "spread"
    out = args.out or project_root() / "benchmarks" / "seed_spread"
    if args.readme:
        print(headline_markdown(out.with_suffix(".json")))
        return 0
    configs = [(s, t) for t in args.threads for s in args.seeds]
    if not args.summarise_only:
        # The world and the course's face model (every chapter uses the seed-0 one) are built first, so no two
        # runs build them at once and no chapter's time includes them.
        from affectlab.recipes.pretrain import face_feature_model
        face_feature_model("quick")
        tasks = [(s, t, c) for s, t in configs for c in args.only]
        # Threaded runs go one at a time: two of them at once oversubscribe the cores (measured here: one
        # chapter ten times slower). One-thread runs go --jobs at a time.
        serial = [x for x in tasks if x[1] != "1" or args.jobs <= 1]
        parallel = [x for x in tasks if x not in serial]
        report = lambda r: print(f"{r['run']} {r['chapter']}: {'ok' if r['returncode'] == 0 else 'FAILED'} "
                                 f"in {r['seconds']:.0f} s", flush=True)
        for x in serial:
            report(run_one(*x, runs_dir))
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for r in pool.map(lambda x: run_one(*x, runs_dir), parallel):
                report(r)
    earlier_path = out.with_suffix(".json")
    earlier = json.loads(earlier_path.read_text()) if earlier_path.is_file() else {}
    # this run's settings and the earlier summary's: a part (--seeds 2) joins the runs already on disk
    names = list(dict.fromkeys([*earlier.get("runs", []), *(run_name(s, t) for s, t in configs)]))
    table = summarise(runs_dir, names)
    status = {n: run_status(runs_dir / n) for n in names if (runs_dir / n).is_dir()}
    meta = {"command": "python -m affectlab.spread " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "machine": machine(), "runs": names,
            "chapters": sorted({nb[:2] for nb in table["notebook"]}), "status": status,
            "seconds": {n: run_seconds(runs_dir / n) for n in names if (runs_dir / n).is_dir()},
            "jobs": args.jobs}
    if earlier:   # the chapters this run did not measure keep their earlier figures, and say so
        table, meta = carry_over(table, meta, earlier, ran=() if args.summarise_only else args.only)
    json_path, md_path = write_summary(table, meta, out)
    failed = {n: {k: v for k, v in st.items() if v != "ok"} for n, st in status.items()}
    failed = {n: f for n, f in failed.items() if f}
    print(f"wrote {json_path} and {md_path}; chapters failing their assertions: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
