"""Run every benchmark and write benchmarks/results.json and benchmarks/RESULTS.md.

    python -m benchmarks.run [--only data models ...]

Each topic module exposes ``run() -> dict`` of named figures; every figure stands beside a reference
measured in the same run (the matmul peak, the plain loop, the model's own consumption). Every timing goes
through ``benchmarks.timing`` (warm-up, then measure); the matmul peak is measured once per run
(``benchmarks.reference.run_peak_flops``) and shared by every topic. Timings live here, never in the tests.
"""
from __future__ import annotations

import argparse
import importlib
import json
import traceback
from pathlib import Path

from benchmarks.reference import machine, run_peak_flops
from benchmarks.timing import stopwatch

TOPICS = {
    "data": "benchmarks.bench_data",
    "models": "benchmarks.bench_models",
    "temporal_scan": "benchmarks.bench_temporal_scan",
    "facernet": "benchmarks.bench_facernet",
    "video": "benchmarks.bench_video",
    "frames": "benchmarks.bench_frames",
    "steps": "benchmarks.bench_steps",
}
HERE = Path(__file__).parent


def _markdown(results: dict) -> str:
    lines = ["# Benchmarks", "", f"Machine: {results['machine']}", "",
             f"Reference: float32 matmul peak {results['matmul_peak_gflops']:.1f} GFLOP/s (same run).", ""]
    for topic, figures in results["topics"].items():
        lines += [f"## {topic}", "", "| figure | value |", "| --- | --- |"]
        if isinstance(figures, dict):
            for k, v in figures.items():
                lines.append(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |")
        lines.append("")
    return "\n".join(lines)


def run_topic_alone(topic: str, run) -> int:
    """``python -m benchmarks.bench_<topic>``: run one topic's ``run()`` and merge its figures into
    results.json / RESULTS.md beside the other topics, with a matmul peak measured in this run as its reference
    (the file's header keeps its own)."""
    from benchmarks.reference import matmul_peak_flops

    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"topics": {}}
    results.setdefault("machine", machine())
    peak = matmul_peak_flops() / 1e9
    results.setdefault("matmul_peak_gflops", peak)
    with stopwatch() as sw:
        figures = run()
    figures["matmul_peak_gflops"] = round(peak, 1)
    figures["threads"] = machine()["threads"]
    figures["wall_s"] = round(sw.s, 1)
    results.setdefault("topics", {})[topic] = figures
    path.write_text(json.dumps(results, indent=1, default=str))
    (HERE / "RESULTS.md").write_text(_markdown(results))
    print(json.dumps(figures, indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=sorted(TOPICS), help="run only these topics")
    args = p.parse_args(argv)
    results = {"machine": machine(), "matmul_peak_gflops": run_peak_flops() / 1e9, "topics": {}}
    if args.only and (HERE / "results.json").is_file():  # a partial run keeps the other topics' figures
        previous = json.loads((HERE / "results.json").read_text()).get("topics", {})
        results["topics"] = {k: v for k, v in previous.items() if k not in args.only}
    failed = []
    for topic in args.only or TOPICS:
        print(f"[bench] {topic} ...", flush=True)
        with stopwatch() as sw:
            try:
                figures = importlib.import_module(TOPICS[topic]).run()
            except Exception:  # one broken benchmark must not lose the others' figures
                figures = {"error": traceback.format_exc(limit=3).strip().splitlines()[-1]}
                failed.append(topic)
        figures["wall_s"] = round(sw.s, 1)
        results["topics"][topic] = figures
        (HERE / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (HERE / "RESULTS.md").write_text(_markdown(results))
    print(_markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
