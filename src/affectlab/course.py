"""Run the whole course with papermill and gather every chapter's headline numbers into one report.

    python -m affectlab.course run --profile quick --out runs/quick [-p NAME VALUE ...] [--only 03 05]
    python -m affectlab.course report runs/quick

Chapters report through ``record_metrics`` into ``<out>/metrics/<notebook>.json`` — one schema, defined
here and validated both when written and when read, so a report never silently mixes malformed rows.
"""
from __future__ import annotations

import argparse
import ast
import base64
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from affectlab.paths import project_root

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MetricRecord:
    """One headline number of one chapter (the metrics-JSON schema)."""

    model: str
    variant: str
    task: str      # e.g. "EXPR", "VA", "AU", "REACTION"
    metric: str    # e.g. "f1", "accuracy", "ccc_valence", "pearson"
    value: float
    profile: str
    seed: int
    data: str      # "synthetic" or the real dataset's name

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "str" and (not isinstance(v, str) or not v):
                raise ValueError(f"metric record field {f.name!r} must be a non-empty string, got {v!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise ValueError(f"metric record value must be a finite number, got {self.value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"metric record seed must be an integer, got {self.seed!r}")


def default_metrics_dir(profile: str) -> Path:
    return project_root() / "runs" / profile / "metrics"


def record_metrics(notebook: str, rows: Iterable[dict], *, profile: str, seed: int, data: str,
                   metrics_dir: str | Path | None = None) -> Path:
    """Validate ``rows`` (dicts with model, variant, task, metric, value) and write them as
    ``<metrics_dir>/<notebook>.json``; returns the file's path."""
    records = [MetricRecord(**{**r, "value": float(r["value"])}, profile=profile, seed=int(seed), data=data)
               for r in rows]
    if not records:
        raise ValueError(f"{notebook}: no metrics to record")
    out = Path(metrics_dir) if metrics_dir else default_metrics_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{notebook}.json"
    path.write_text(json.dumps({"schema": SCHEMA_VERSION, "notebook": notebook,
                                "records": [asdict(r) for r in records]}, indent=1))
    return path


def read_metrics_file(path: Path) -> list[MetricRecord]:
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION or not isinstance(doc.get("records"), list):
        raise ValueError(f"{path}: not an affectlab metrics file (schema {SCHEMA_VERSION} with a 'records' list)")
    try:
        return [MetricRecord(**r) for r in doc["records"]]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed record: {e}") from None


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Every chapter's records under ``<run_dir>/metrics`` (or ``run_dir`` itself if it holds the JSON files)."""
    run_dir = Path(run_dir)
    mdir = run_dir / "metrics" if (run_dir / "metrics").is_dir() else run_dir
    rows = []
    for path in sorted(mdir.glob("*.json")):
        rows += [{"notebook": path.stem, **asdict(r)} for r in read_metrics_file(path)]
    cols = ["notebook"] + [f.name for f in fields(MetricRecord)]
    return pd.DataFrame(rows, columns=cols)


PAPER_COLUMNS = ["paper", "table", "model", "variant", "task", "metric", "value"]


def paper_results() -> pd.DataFrame:
    """The papers' own numbers, transcribed into ``affectlab/paper_results/*.csv``."""
    frames = []
    for entry in resources.files("affectlab").joinpath("paper_results").iterdir():
        if entry.name.endswith(".csv"):
            df = pd.read_csv(io.StringIO(entry.read_text()), dtype={"table": str, "variant": str, "model": str})
            missing = set(PAPER_COLUMNS) - set(df.columns)
            if missing:
                raise ValueError(f"paper_results/{entry.name}: missing columns {sorted(missing)}")
            frames.append(df[PAPER_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAPER_COLUMNS)


# --- running the chapters --------------------------------------------------------------------------------

def _parse_value(text: str):
    """A -p value as Python would read it (numbers, True/None, lists), else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def select_notebooks(nb_dir: Path, only: Sequence[str] | None = None) -> list[Path]:
    """The chapters in order; ``only`` picks them by number prefix or name (an unknown one is an error)."""
    nbs = sorted(p for p in Path(nb_dir).glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return nbs
    chosen = []
    for key in only:
        hits = [p for p in nbs if p.stem == key or p.stem.split("_", 1)[0] == key or p.name == key]
        if not hits:
            raise FileNotFoundError(f"no chapter {key!r} in {nb_dir} (have: {', '.join(p.stem for p in nbs)})")
        chosen += [h for h in hits if h not in chosen]
    return sorted(chosen)


def _relative_paths(path: Path, nb_dir: Path, strip_injected: bool = False) -> None:
    """papermill records absolute input/output paths; keep executed chapters free of machine paths. With
    ``strip_injected`` (refreshing the sources) drop papermill's injected-parameters cell too: in JupyterLab
    a second parameters cell would silently undo a student's edit of the first."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if strip_injected:
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = os.path.relpath(meta[key], nb_dir)
    nbformat.write(nb, path)


def run_course(out: str | Path, profile: str = "quick", params: dict | None = None,
               only: Sequence[str] | None = None, nb_dir: str | Path | None = None,
               inplace: bool = False, kernel: str = "python3", log=print) -> dict[str, str]:
    """Execute the chapters with papermill into ``out`` (sources untouched unless ``inplace``), keep going
    past a failing chapter; returns {notebook: "ok" | error summary} and writes ``out/status.json``."""
    import papermill as pm

    nb_dir = Path(nb_dir) if nb_dir else project_root() / "notebooks"
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"notebook folder {nb_dir} does not exist")
    out = Path(out).resolve()
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    notebooks = select_notebooks(nb_dir, only)
    if not notebooks:
        raise FileNotFoundError(f"no chapters (NN_name.ipynb) in {nb_dir}")
    # Paths relative to the notebooks' folder (their working directory), so executed chapters — committed
    # ones included — hold no absolute path.
    given = {"profile": profile, "metrics_dir": os.path.relpath(out / "metrics", nb_dir),
             "run_dir": os.path.relpath(out, nb_dir), **(params or {})}
    status: dict[str, str] = {}
    for i, nb in enumerate(notebooks, 1):
        target = nb if inplace else out / nb.name
        log(f"[{i}/{len(notebooks)}] {nb.stem} ...", end=" ", flush=True) if log is print else log(nb.stem)
        t0 = time.time()
        try:
            declared = pm.inspect_notebook(str(nb))
            passed = {k: v for k, v in given.items() if k in declared}
            pm.execute_notebook(str(nb), str(target), parameters=passed, cwd=str(nb_dir), kernel_name=kernel,
                                progress_bar=False)
            _relative_paths(target, nb_dir, strip_injected=inplace)
            status[nb.stem] = "ok"
        except Exception as e:  # keep going: one broken chapter must not cost the others
            first = str(e).strip().splitlines()
            status[nb.stem] = f"{type(e).__name__}: {first[-1] if first else ''}"[:300]
        log(f"{status[nb.stem]} ({time.time() - t0:.0f} s)")
    (out / "status.json").write_text(json.dumps({"profile": profile, "status": status}, indent=1))
    return status


# --- the report ------------------------------------------------------------------------------------------

def results_table(run_dir: str | Path) -> pd.DataFrame:
    """Our numbers with the paper's beside them where the paper reports the same model/variant/task/metric."""
    ours = load_metrics(run_dir)
    paper = paper_results().rename(columns={"value": "paper_value"})
    if ours.empty:
        return ours.assign(paper_value=pd.Series(dtype=float))
    keys = ["model", "variant", "task", "metric"]
    merged = ours.merge(paper.drop_duplicates(keys)[keys + ["paper_value", "table"]], on=keys, how="left")
    return merged.sort_values(["notebook", "task", "model", "variant", "metric"]).reset_index(drop=True)


def _figure_html(table: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        return ""
    t = table.assign(label=table["model"] + " / " + table["variant"] + " · " + table["metric"])
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(t) + 1))
    ax.barh(t["label"], t["value"], color="tab:blue", label="course (ours)")
    have = t["paper_value"].notna()
    ax.scatter(t.loc[have, "paper_value"], t.loc[have, "label"], color="tab:red", zorder=3, label="paper")
    ax.invert_yaxis()
    ax.set_xlabel("value")
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="results" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``: a table per task, ours beside the papers'."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist (run the course first)")
    table = results_table(run_dir)
    status_path = run_dir / "status.json"
    status = json.loads(status_path.read_text())["status"] if status_path.is_file() else {}
    cols = ["notebook", "model", "variant", "metric", "value", "paper_value", "table"]
    md = [f"# affectlab results — {run_dir.name}", ""]
    if status:
        failed = [k for k, v in status.items() if v != "ok"]
        md += [f"Chapters run: {len(status)}; failed: {', '.join(failed) if failed else 'none'}.", ""]
    if table.empty:
        md += ["No metrics recorded yet: run the course first (`make course`)."]
    for task, part in table.groupby("task", sort=True):
        md += [f"## {task}", "", part[cols].to_markdown(index=False, floatfmt=".3f"), ""]
    md += ["`paper_value` is the paper's own figure for the same model, variant and metric (on real data, at "
           "full scale); `value` is this run's, on the data and profile it names. Each chapter explains the gap."]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    html = ["<html><head><meta charset='utf-8'><title>affectlab results</title></head><body>",
            f"<h1>affectlab results — {run_dir.name}</h1>"]
    if status:
        html.append(pd.DataFrame(status.items(), columns=["chapter", "status"]).to_html(index=False))
    for task, part in table.groupby("task", sort=True):
        html += [f"<h2>{task}</h2>", part[cols].to_html(index=False, float_format="%.3f", na_rep="")]
    html += [_figure_html(table), "</body></html>"]
    html_path = run_dir / "report.html"
    html_path.write_text("\n".join(html))
    return md_path, html_path


# --- command line ----------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """Bad options end in one line naming the problem (and how to get help), not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m affectlab.course", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="execute the chapters with papermill")
    r.add_argument("--profile", default="quick", choices=["quick", "paper"],
                   help="settings every chapter takes (default: quick, the CPU profile)")
    r.add_argument("--out", type=Path, default=None,
                   help="folder for executed notebooks, metrics/ and status.json (default: runs/<profile>)")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="a chapter parameter, e.g. -p data_root /data/affwild2 -p seed 1 (repeatable)")
    r.add_argument("--only", nargs="+", metavar="CHAPTER", help="run only these chapters (by number or name)")
    r.add_argument("--notebooks", type=Path, default=None, help="the chapters' folder (default: notebooks/)")
    r.add_argument("--inplace", action="store_true",
                   help="write outputs back into the sources (to refresh the committed outputs)")
    r.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    r.add_argument("--no-report", action="store_true", help="skip building the report at the end")
    rep = sub.add_parser("report", help="gather <run>/metrics/*.json into report.md and report.html")
    rep.add_argument("run_dir", type=Path, help="a course run folder, e.g. runs/quick")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            md, html = build_report(args.run_dir)
            print(md.read_text())
            print(f"wrote {md} and {html}")
            return 0
        out = args.out or project_root() / "runs" / args.profile
        params = {name: _parse_value(value) for name, value in args.param}
        status = run_course(out, profile=args.profile, params=params, only=args.only,
                            nb_dir=args.notebooks, inplace=args.inplace, kernel=args.kernel)
        if not args.no_report:
            md, _ = build_report(out)
            print(f"report: {md}")
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = {k: v for k, v in status.items() if v != "ok"}
    if failed:
        print(f"{len(failed)} chapter(s) failed: " + "; ".join(f"{k} ({v})" for k, v in failed.items()),
              file=sys.stderr)
        return 1
    print(f"all {len(status)} chapter(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
