"""The seed spread: run the training chapters under several seeds and thread counts, and summarise every
recorded figure as min / mean / max over the runs.

    python -m affectlab.spread                        # chapters 03-08, seeds 0 1 2, default threads and 1
    python -m affectlab.spread --only 07 --seeds 0 1  # a part of it
    python -m affectlab.spread --summarise-only       # rebuild the summary from runs/spread/

Why: another CPU (another BLAS kernel, another summation order) trains the same seed to other numbers, so one
run's figure is one draw. A chapter's assertion must clear the worst run by at least the spread between runs;
this file is where that spread is measured. Each (seed, threads) run is a normal course run into
``runs/spread/seed<N>-threads<T>/``; the summary goes to ``benchmarks/seed_spread.json`` and ``.md``.
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

from affectlab.course import load_metrics
from affectlab.paths import project_root

TRAINING_CHAPTERS = ("03", "04", "05", "06", "07", "08")
KEY = ["notebook", "model", "variant", "task", "metric"]


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


def run_one(seed: int, threads: str, only: Sequence[str], runs_dir: Path) -> dict:
    """One course run (a subprocess, so OMP_NUM_THREADS takes effect before torch starts)."""
    env = dict(os.environ)
    if threads != "default":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    out = runs_dir / run_name(seed, threads)
    cmd = [sys.executable, "-m", "affectlab.course", "run", "--no-report", "--out", str(out),
           "--only", *only, "-p", "seed", str(seed)]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=project_root(), capture_output=True, text=True)
    (out / "runner.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "runner.log").write_text(proc.stdout + proc.stderr)
    return {"run": out.name, "seed": seed, "threads": threads, "seconds": round(time.time() - t0, 1),
            "returncode": proc.returncode}


def summarise(runs_dir: Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """Every recorded figure of every run under ``runs_dir``: one row per figure with min, mean, max, sd,
    spread (= max - min), n and each run's value."""
    frames = []
    for d in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir() and (p / "metrics").is_dir()):
        if runs is not None and d.name not in runs:
            continue
        m = load_metrics(d)
        if not m.empty:
            frames.append(m.assign(run=d.name))
    if not frames:
        raise FileNotFoundError(f"no runs with metrics under {runs_dir}")
    allm = pd.concat(frames, ignore_index=True)
    wide = allm.pivot_table(index=KEY, columns="run", values="value", aggfunc="first")
    stats = pd.DataFrame({"min": wide.min(axis=1), "mean": wide.mean(axis=1), "max": wide.max(axis=1),
                          "sd": wide.std(axis=1, ddof=1),
                          "n": wide.count(axis=1)})
    stats["spread"] = stats["max"] - stats["min"]
    return stats.join(wide).reset_index()


def write_summary(table: pd.DataFrame, meta: dict, out: Path) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    run_cols = [c for c in table.columns if c.startswith("seed")]
    figures = [{**{k: r[k] for k in KEY}, **{k: round(float(r[k]), 4) for k in ("min", "mean", "max", "sd", "spread")
                                              if pd.notna(r[k])},
                "n": int(r["n"]), "runs": {c: round(float(r[c]), 4) for c in run_cols if pd.notna(r[c])}}
               for _, r in table.iterrows()]
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({**meta, "figures": figures}, indent=1))
    md = [f"# Seed spread of the training chapters", "",
          f"Measured by `python -m affectlab.spread` on {meta['machine']['cpu']} ({meta['machine']['cores']} cores, "
          f"torch {meta['machine']['torch']}), runs: {', '.join(meta['runs'])}. "
          "Threads `default` = torch's default (one per core); `1` = `OMP_NUM_THREADS=1`.", "",
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
                   help="runs at once (runs of different seeds only; e.g. 2 with --threads 1 on 2 cores)")
    p.add_argument("--runs-dir", type=Path, default=None, help="default: runs/spread")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/seed_spread(.json/.md)")
    p.add_argument("--summarise-only", action="store_true", help="summarise the runs already in --runs-dir")
    args = p.parse_args(argv)
    for t in args.threads:
        if t != "default" and not t.isdigit():
            p.error(f"--threads takes 'default' or a number, got {t!r}")
    runs_dir = args.runs_dir or project_root() / "runs" / "spread"
    out = args.out or project_root() / "benchmarks" / "seed_spread"
    configs = [(s, t) for t in args.threads for s in args.seeds]
    log = []
    if not args.summarise_only:
        # Worlds and face models are built before any parallel run, so two runs never build the same one.
        from affectlab.models.pretrain import face_feature_model
        for s in args.seeds:
            face_feature_model("quick", None, "auto", s)
        # With jobs > 1, runs of one thread setting go together and differ in seed (never share a world).
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for res in pool.map(lambda c: run_one(c[0], c[1], args.only, runs_dir), configs):
                print(f"{res['run']}: {'ok' if res['returncode'] == 0 else 'FAILED'} in {res['seconds']:.0f} s",
                      flush=True)
                log.append(res)
    names = [run_name(s, t) for s, t in configs]
    table = summarise(runs_dir, names)
    status = {n: json.loads((runs_dir / n / "status.json").read_text())["status"]
              for n in names if (runs_dir / n / "status.json").is_file()}
    meta = {"command": "python -m affectlab.spread " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(), "runs": names, "chapters": list(args.only), "status": status,
            "timings": log or None}
    json_path, md_path = write_summary(table, meta, out)
    failed = {n: {k: v for k, v in st.items() if v != "ok"} for n, st in status.items()}
    failed = {n: f for n, f in failed.items() if f}
    print(f"wrote {json_path} and {md_path}; chapters failing their assertions: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
