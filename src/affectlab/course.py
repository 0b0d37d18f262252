"""Run the whole course with papermill and gather every chapter's headline numbers into one report.

    python -m affectlab.course run --profile quick --out runs/quick [-p NAME VALUE ...] [--only 03 05]
    python -m affectlab.course report runs/quick

An interrupted run resumes where it stopped when the same command is run again: every chapter's trainings
are checkpointed under ``<out>/checkpoints/<chapter>/`` (``affectlab.checkpoint``); delete that folder to
train from scratch.

Chapters report through ``record_metrics`` into ``<out>/metrics/<notebook>.json`` — one schema, defined
here and validated both when written and when read, so a report never silently mixes malformed rows.
"""
from __future__ import annotations

import argparse
import ast
import base64
import contextlib
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

from affectlab.claims import load_directions, verdict_table
from affectlab.paths import project_root, runs_dir

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


LIBRARIES = ("torch", "torchvision", "fastai", "timm", "pytorch_grad_cam", "cv2", "sklearn", "pandas", "papermill",
             "nbval")


def library_versions(libraries: Sequence[str] = LIBRARIES) -> pd.Series:
    """Python's, affectlab's and each library's version ("MISSING" when it cannot be imported): chapter 00's
    first check that the install is complete."""
    import importlib
    import platform

    import affectlab

    versions = {"python": platform.python_version(), "affectlab": affectlab.__version__}
    for name in libraries:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "installed")
        except ImportError:
            versions[name] = "MISSING"
    return pd.Series(versions, name="version")


def default_metrics_dir(profile: str) -> Path:
    return runs_dir() / profile / "metrics"


def record_metrics(notebook: str, rows: Iterable[dict], *, profile: str, seed: int, data: str,
                   metrics_dir: str | Path | None = None, labels: dict | None = None) -> Path:
    """Validate ``rows`` (dicts with model, variant, task, metric, value) and write them as
    ``<metrics_dir>/<notebook>.json``; returns the file's path. ``labels``: the run's label space (its
    settings' ``labels``: the ABAW edition read, the expression classes trained, the head's output count)."""
    records = [MetricRecord(**{**r, "value": float(r["value"])}, profile=profile, seed=int(seed), data=data)
               for r in rows]
    if not records:
        raise ValueError(f"{notebook}: no metrics to record")
    out = Path(metrics_dir) if metrics_dir else default_metrics_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{notebook}.json"
    doc = {"schema": SCHEMA_VERSION, "notebook": notebook, "records": [asdict(r) for r in records]}
    if labels:
        doc["labels"] = dict(labels)
    path.write_text(json.dumps(doc, indent=1))
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
        if path.name in ("directions.json", "status.json"):   # the claims' verdicts and the run's status
            continue
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


_TYPE_WORDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
               list: "a list", tuple: "a tuple", dict: "a dict"}


def declared_parameters(notebooks: Sequence[Path]) -> dict[str, dict[str, str]]:
    """{chapter stem: {parameter: default source}} of each chapter's cell tagged ``parameters``."""
    import papermill as pm

    out = {}
    for nb in notebooks:
        try:
            out[nb.stem] = {k: v.get("default", "None") for k, v in pm.inspect_notebook(str(nb)).items()}
        except Exception as e:
            raise ValueError(f"{nb}: cannot read its parameters cell ({type(e).__name__}: {e})") from None
    return out


def _coerce(name: str, value, default_src: str, chapter: str):
    """``value`` for a chapter parameter whose default is ``default_src``: a string from the command line is
    read as a Python literal unless the default is a string (then it stays text, e.g. ``-p run 007``); the
    result must have the default's type (an int where a float is expected is fine; a None default takes
    anything). A ValueError names the parameter, the chapter and what it expects."""
    try:
        default = ast.literal_eval(default_src)
    except (ValueError, SyntaxError):
        default = None          # an expression as default: its type is unknown, anything goes
    want = type(default)
    if default is None or want not in _TYPE_WORDS:
        return _parse_value(value) if isinstance(value, str) else value
    if want is str:
        if isinstance(value, str):
            return value
    else:
        if isinstance(value, str):
            text = value
            value = {"true": True, "false": False}.get(text.lower(), None) if want is bool else None
            if value is None:
                value = _parse_value(text)
        ok = (isinstance(value, bool) if want is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
              isinstance(value, want) and not (want is int and isinstance(value, bool)))
        if ok:
            return float(value) if want is float else value
    raise ValueError(f"parameter {name!r} of {chapter} must be {_TYPE_WORDS[want]} (its default is "
                     f"{default_src}), got {value!r}")


def chapter_parameters(notebooks: Sequence[Path], given: dict, user: Iterable[str] = ()) -> dict[str, dict]:
    """The parameters each chapter receives: ``given`` restricted to what the chapter declares, each value
    checked against (and, from text, converted to) the type of the chapter's default. Every name in ``user``
    (the ones a person passed with -p) must be declared by at least one of ``notebooks`` — a typo such as
    ``sede`` for ``seed`` is an error naming it and listing the declared names, raised before any chapter
    runs."""
    import difflib

    declared = declared_parameters(notebooks)
    known = sorted({k for d in declared.values() for k in d})
    user = list(user)
    unknown = [k for k in user if k not in known]
    if unknown:
        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else repr(k)
                 for k in unknown]
        raise ValueError(f"parameter {', '.join(hints)} is not declared by any selected chapter "
                         f"({', '.join(declared)}); they declare: {', '.join(known) or 'nothing'}")
    user = set(user)
    return {stem: {k: _coerce(k, v, params[k], stem) if k in user else v for k, v in given.items() if k in params}
            for stem, params in declared.items()}


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


# Rough throughputs for the plan printed before a ``--profile paper`` run, measured on the 2-core CPU of
# benchmarks/RESULTS.md: the generator writes ~1,000 images/s with its 2 workers, and SE-ResNet-50 infers
# ~57 images/s at 112 px — training (forward + backward) about a third of that. A GPU trains ~100x faster.
GEN_IMAGES_PER_S = 1000
RESNET50_TRAIN_IMAGES_PER_S_CPU = 20
RESNET50_TRAIN_IMAGES_PER_S_GPU = 1500
BYTES_PER_SYNTHETIC_IMAGE = 4700   # data/synthetic (quick): 189 MB for ~40,000 images


def _mean(lo_hi) -> float:
    return (lo_hi[0] + lo_hi[1]) / 2


def duration(seconds: float) -> str:
    """A rough duration for a person: "45 s", "12 min", "3 h", "2 days"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def paper_plan(notebooks: Sequence[Path], given: dict, cuda: bool | None = None) -> str:
    """What a ``--profile paper`` run of ``notebooks`` will generate and train, how big and roughly how long
    (expected sizes of the synthetic ``full`` preset; throughputs above), with a warning when no GPU is
    found. Printed by ``run_course`` before the first chapter starts."""
    from affectlab.data.synth import PRESETS, mean_hume_length

    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    device = str(given.get("device", "auto"))
    on_gpu = cuda and not device.startswith("cpu")
    chapters = {nb.stem.split("_", 1)[0]: nb.stem for nb in notebooks}
    lines = [f"--profile paper: {len(notebooks)} chapter(s) ({', '.join(chapters.values())}) with the papers' "
             "own settings (full-size backbones and images, 10-30 epochs), meant for a GPU."]
    if not on_gpu:
        why = "device='cpu' was asked for" if cuda else "no GPU found (torch.cuda.is_available() is False)"
        lines.append(f"WARNING: {why}: everything below runs on the CPU ({os.cpu_count()} core(s)); expect "
                     "days, not hours. Use --profile quick on a CPU.")
    p = PRESETS["full"]
    aw_train = (p["subjects"] - p["val_subjects"]) * _mean(p["frames"])
    aw_frames = p["subjects"] * _mean(p["frames"])
    hume_frames = sum(p["hume"]) * mean_hume_length(*p["hume_frames"])   # log-uniform clip lengths
    static = sum(p["affectnet"]) + sum(p["rafdb"]) + p["expw"]
    static_train = p["affectnet"][0] + p["rafdb"][0] + p["expw"]
    total = aw_frames + hume_frames + static
    if given.get("data_root") is None:
        lines.append(f"- generate the synthetic world's 'full' preset (unless already there, in data/synthetic-full): "
                     f"~{total / 1e3:,.0f}k images ({aw_frames / 1e3:,.0f}k Aff-Wild2 frames in {p['subjects']} "
                     f"videos, {hume_frames / 1e3:,.0f}k Hume-Reaction frames in {sum(p['hume'])} videos, "
                     f"{static / 1e3:,.0f}k static faces), ~{total * BYTES_PER_SYNTHETIC_IMAGE / 1e9:.1f} GB on "
                     f"disk, ~{duration(total / GEN_IMAGES_PER_S)} at ~{GEN_IMAGES_PER_S:,} images/s")
    else:
        lines.append(f"- read your data at {given['data_root']} (sizes below assume the synthetic 'full' preset; "
                     "yours scale them)")
    # (chapter, what, training images seen = epochs x images) — each recipe's paper settings.
    from affectlab.recipes import settings

    work = []
    users = sorted(chapters.keys() & {"04", "05", "06", "07", "08"})
    if users:
        s = settings("pretrain", "paper")
        work.append((", ".join(users), f"pre-train the face feature model ({s['arch']}, {s['image_size']} px, "
                     f"{s['epochs']} epochs over ~{static_train / 1e3:.0f}k static faces)", s["epochs"] * static_train))
    table = {
        "03": (settings("facechannel", "paper"), "FaceChannel", "image_size"),
        "04": (settings("senet50", "paper"), "SE-ResNet-50 fine-tuning", "image_size"),
        "05": (settings("temporal", "paper"), "ResNet-50 + LSTM, end to end", "image_size"),
        "06": (settings("scan", "paper"), "SCAN-CCI (ResNet-50)", "image_size"),
        "07": (settings("facernet", "paper"), "FaceRNet's REC (frames)", "image_size"),
    }
    for ch, (s, what, size_key) in table.items():
        if ch in chapters:
            epochs = s.get("rec_epochs", s.get("epochs"))
            work.append((ch, f"train {what} at {s[size_key]} px for {epochs} epochs over up to "
                         f"~{aw_train / 1e3:.0f}k Aff-Wild2 training frames", epochs * aw_train))
    for ch, text, _ in work:
        lines.append(f"- {ch}: {text}")
    passes = sum(n for _, _, n in work)
    if passes:
        rate = RESNET50_TRAIN_IMAGES_PER_S_GPU if on_gpu else RESNET50_TRAIN_IMAGES_PER_S_CPU
        lines.append(f"Roughly {passes / 1e6:,.0f} M training images in all; at ~{rate:,} images/s "
                     f"({'one GPU' if on_gpu else 'a CPU'}, ResNet-50 at 112 px; 224 px is ~4x slower) that is "
                     f"~{duration(passes / rate)} of training.")
    return "\n".join(lines)


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


def chapter_checkpoint_env(out: Path, nb: Path, profile: str, params: dict) -> dict[str, str]:
    """The environment a chapter's kernel gets so that its Learners checkpoint under
    ``<out>/checkpoints/<chapter>/`` with the chapter's key (``affectlab.checkpoint.chapter_key``)."""
    from affectlab.checkpoint import ENV, ENV_KEY, chapter_key

    key = chapter_key(nb, profile, params)
    return {ENV: str(Path(out) / "checkpoints" / nb.stem), ENV_KEY: json.dumps(key, sort_keys=True, default=str)}


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables for the block (the kernels papermill starts inherit them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_course(out: str | Path, profile: str = "quick", params: dict | None = None,
               only: Sequence[str] | None = None, nb_dir: str | Path | None = None,
               inplace: bool = False, kernel: str = "python3", log=print) -> dict[str, str]:
    """Execute the chapters with papermill into ``out`` (sources untouched unless ``inplace``), keep going
    past a failing chapter; returns {notebook: "ok" | error summary} and writes ``out/status.json``."""
    nb_dir = Path(nb_dir) if nb_dir else project_root() / "notebooks"
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"notebook folder {nb_dir} does not exist")
    out = Path(out).resolve()
    notebooks = select_notebooks(nb_dir, only)
    if not notebooks:
        raise FileNotFoundError(f"no chapters (NN_name.ipynb) in {nb_dir}")
    # Paths relative to the notebooks' folder (their working directory), so executed chapters — committed
    # ones included — hold no absolute path.
    given = {"profile": profile, "metrics_dir": os.path.relpath(out / "metrics", nb_dir),
             "run_dir": os.path.relpath(out, nb_dir), **(params or {})}
    # Checked for every chapter before the first one runs: a misspelt or mistyped -p stops the run here.
    passed = chapter_parameters(notebooks, given, user=list(params or {}))
    if profile == "paper":
        log(paper_plan(notebooks, given))
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    with _sigterm_as_interrupt():
        _run_chapters(notebooks, out, nb_dir, passed, profile, inplace, kernel, log, status)
    (out / "status.json").write_text(json.dumps({"profile": profile, "status": status}, indent=1))
    return status


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM unwinds like Ctrl-C while chapters run, so papermill shuts the chapter's kernel down (and the
    kernel's own workers, e.g. the world generator's, end with it) instead of leaving them orphaned."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_chapters(notebooks, out, nb_dir, passed, profile, inplace, kernel, log, status) -> None:
    import papermill as pm

    for i, nb in enumerate(notebooks, 1):
        target = nb if inplace else out / nb.name
        log(f"[{i}/{len(notebooks)}] {nb.stem} ...", end=" ", flush=True) if log is print else log(nb.stem)
        t0 = time.time()
        try:
            # Each chapter's trainings are checkpointed under <out>/checkpoints/<chapter>/, keyed by what
            # determines them: re-running the same command resumes an interrupted run (affectlab.checkpoint).
            with _environ(chapter_checkpoint_env(out, nb, profile, passed[nb.stem])):
                pm.execute_notebook(str(nb), str(target), parameters=passed[nb.stem], cwd=str(nb_dir),
                                    kernel_name=kernel, progress_bar=False)
            _relative_paths(target, nb_dir, strip_injected=inplace)
            status[nb.stem] = "ok"
        except Exception as e:  # keep going: one broken chapter must not cost the others
            first = str(e).strip().splitlines()
            status[nb.stem] = f"{type(e).__name__}: {first[-1] if first else ''}"[:300]
        log(f"{status[nb.stem]} ({time.time() - t0:.0f} s)")


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


def _directions(run_dir: Path) -> list[dict] | None:
    return load_directions(run_dir / "directions.json")


def _directions_figure_html(records: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from affectlab.claims import plot_differences

    ax = plot_differences(records)
    ax.figure.tight_layout()
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=90)
    plt.close(ax.figure)
    return f'<img alt="paired differences" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


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
    directions = _directions(run_dir)
    if directions is not None:
        md += ["## The papers' claims, decided over paired seeds", "",
               verdict_table(directions).drop(columns=["paper"]).to_markdown(floatfmt=".3f"), "",
               f"{sum(r['verdict'] == 'holds' for r in directions)} of {len(directions)} hold: a one-sided paired "
               "t-test of A - B over the seeds, p < 0.1 (`opposite`: the same test the other way; `within noise`: "
               "neither). Each chapter explains a claim that does not hold.", ""]
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
    if directions is not None:   # the verdicts first: a teacher reads them in one screen
        html += ["<h2>The papers' claims, decided over paired seeds</h2>",
                 verdict_table(directions).to_html(float_format="%.3f"), _directions_figure_html(directions)]
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
    c = sub.add_parser("claims", help="decide the papers' claims over paired seeds -> <out>/directions.json")
    c.add_argument("--profile", default="quick", choices=["quick", "paper"])
    c.add_argument("--out", type=Path, default=None, help="folder for directions.json (default: runs/<profile>)")
    c.add_argument("--data-root", default=None, help="a real data root (default: the synthetic world)")
    c.add_argument("--device", default="auto")
    c.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="training seeds for every claim (default: each claim's own, 3 or 5 from 0)")
    c.add_argument("--only", nargs="+", metavar="CLAIM", help="decide only these claim ids (the others keep their records in directions.json)")
    c.add_argument("--jobs", type=int, default=1,
                   help="seeds after 0 trained this many at a time, one thread each (e.g. 2 on a 2-core CPU)")
    return p


def _claims(args) -> int:
    from affectlab.claims import run_claims

    records = run_claims(args.profile, args.data_root, args.device, args.seeds, args.only, args.out,
                         jobs=args.jobs)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(verdict_table(records).drop(columns=["paper"]).to_string())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "claims":
            return _claims(args)
        if args.command == "report":
            md, html = build_report(args.run_dir)
            print(md.read_text())
            print(f"wrote {md} and {html}")
            return 0
        out = args.out or runs_dir() / args.profile
        names = [name for name, _ in args.param]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"parameter {', '.join(map(repr, twice))} given more than once with -p")
        # Text as typed: each chapter converts it to the type of its own default (chapter_parameters).
        params = dict(args.param)
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
