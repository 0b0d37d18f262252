"""The synthetic in-the-wild face-video world: ``make_world`` and ``python -m affectlab.data.synth``.

It writes exactly the real datasets' on-disk formats, so the readers that load a researcher's Aff-Wild2 are
the readers every chapter runs:

    out/affwild2/  ABAW 2020 layout (cropped_aligned/, annotations/{EXPR,VA,AU}_Set/...) + meta/ (ground truth)
    out/affectnet/ Manually_Annotated_file_lists/{training,validation}.csv + Manually_Annotated_Images/
    out/rafdb/     EmoLabel/list_patition_label.txt + Image/aligned/
    out/expw/      label/label.lst + image/origin/
    out/hume/      data_info.csv + one frame folder per video
    out/manifest.json

``affwild2/meta/<video>.csv`` exists only in this world: per-frame truth (category, all 17 AUs, VA, pose,
occluder, episode phase) that chapters use to show what a real dataset cannot (e.g. occluded vs not).

Determinism: every video or image batch draws from its own ``SeedSequence((seed, corpus, index))``, so the
files are byte-identical whatever the number of worker processes. A call whose manifest matches is a no-op;
a different preset, seed or knob set regenerates the directory (only if it holds a world made by this
generator — anything else is refused). Generation goes to a temporary sibling that is renamed at the end,
so an interrupted run never leaves a half world behind, and holds a file lock, so processes that start
together (tests, chapters, the CLI) generate once: the others wait and find the world made.

Stopping a run: Ctrl-C (SIGINT) or SIGTERM stops the worker processes at once (they ignore SIGINT: the
parent decides), deletes the temporary folder and only then ends the process (SIGTERM is re-delivered
afterwards, so the process still dies of it). On Linux the workers also die with a parent killed outright
(SIGKILL, out of memory); that run's temporary folder, which never holds a manifest, is deleted by the next.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm  # text bar: no widget state in notebooks

from affectlab.labels import AUS_17, AUS_ABAW, EXPRESSIONS, REACTIONS

from . import static_synth
from .faces_draw import AU_INDEX, OCCLUDERS, camera, draw_face, noise_bank, random_background, random_identity
from .timeline import PHASES, Episode, annotate, labelled_frames, layout, random_episode, simulate

# 1.1: the quick preset holds 200 + 100 Hume-Reaction videos (was 56 + 24).
# 1.2: Hume-Reaction only (every other corpus byte-identical): labels are peak-end self-reports (were means
# normalised by length), clip lengths log-uniform over tens to hundreds of frames, reactions of fixed duration
# placed anywhere (more of them in longer clips), Fear split by arousal into Fear and Anxiety; quick preset
# 300 + 150 videos of 20-320 frames.
# 1.3: every video corpus (Aff-Wild2, Hume-Reaction) holds twice as many occluder stretches; the quick Aff-Wild2
# holds 48 subjects (16 in validation) with 150-320 frames each and at least 6 episodes of every expression per
# split (the episodes beyond a class's share are brief), so that each rare class (Anger, Disgust, Fear) comes
# from 5-6 people in each split, not 2, at about its share of Aff-Wild2's frames.
GENERATOR_VERSION = "1.3"
# Aff-Wild2's expression frequencies, implied by the SE-ResNet paper's class weights.
AFFWILD2_PROPORTIONS = dict(zip(EXPRESSIONS, (0.615, 0.027, 0.016, 0.012, 0.177, 0.106, 0.045)))

PRESETS: dict[str, dict] = {
    "tiny": dict(subjects=6, pairs=1, frames=(50, 90), val_subjects=2, affectnet=(40, 20), rafdb=(30, 15),
                 expw=30, hume=(6, 3), hume_frames=(20, 80), episode_scale=0.3, min_episodes=1),
    "quick": dict(subjects=48, pairs=3, frames=(150, 320), val_subjects=16, affectnet=(1000, 300),
                  rafdb=(500, 150), expw=400, hume=(300, 150), hume_frames=(20, 320), episode_scale=1.0, min_episodes=6),
    "full": dict(subjects=300, pairs=20, frames=(600, 3000), val_subjects=80, affectnet=(20000, 3000),
                 rafdb=(10000, 3000), expw=10000, hume=(1500, 500), hume_frames=(20, 480), episode_scale=1.5, min_episodes=3),
}
KNOBS: dict = dict(
    image_size=112, threshold=0.3, proportions=AFFWILD2_PROPORTIONS, pose=1.0, jitter=1.0, occlusion=1.0,
    blur=1.0, lost=1.0, noise=(1.0, 9.0), jpeg=(45, 95), light=0.7, lag=(2, 6), va_smooth=7, va_noise=0.03,
    wrong_labels=0.02, va_flip=0.06, min_episodes=None, workers=2,
)


IMAGE_KB = 4.8   # disk per image of the world, annotations included (measured on the quick preset: 290 MB)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def _rng(seed: int, corpus: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, corpus, index]))


def _jpeg(path: Path, img_rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    path.write_bytes(buf.tobytes())


def render_video(rng, ident, sim, frame_dir: Path, knobs: dict, skip=None) -> None:
    """Draw and write every frame of a simulated video (frames in ``skip`` get no image)."""
    size = knobs["image_size"]
    frame_dir.mkdir(parents=True, exist_ok=True)
    bg = random_background(rng, size)
    bank = noise_bank(rng, size)
    noise = rng.uniform(*knobs["noise"])
    quality = int(rng.integers(*knobs["jpeg"]))
    gain0, strength, angle = rng.uniform(0.65, 1.25), rng.uniform(0, knobs["light"]), rng.uniform(0, 2 * np.pi)
    for i in range(len(sim["env"])):
        if skip is not None and skip[i]:
            continue
        occ = int(sim["occluder"][i])
        img = draw_face(bg.copy(), ident, sim["aus"][i], tuple(sim["pose"][i]), tuple(sim["align"][i]),
                        OCCLUDERS[occ] if occ >= 0 else None, float(sim["occ_pos"][i]))
        light = (gain0 + 0.1 * np.sin(i / 40.0), strength, angle + i / 200.0)
        _jpeg(frame_dir / f"{i + 1:05d}.jpg", camera(img, rng, light, int(sim["blur"][i]), noise, bank), quality)


def _affwild_video(job: dict) -> dict:
    """Worker: simulate, draw and annotate one Aff-Wild2 video; writes frames, annotation and meta files."""
    knobs, root = job["knobs"], Path(job["root"])
    rng = _rng(job["seed"], 1, job["index"])
    ident = random_identity(_rng(job["seed"], 0, job["subject"]))
    n = job["length"]
    placed = layout(rng, [Episode(*e) for e in job["episodes"]], n)
    sim = simulate(rng, n, placed, ident.gain, ident.va_bias, knobs)
    expr, va, au, lag = annotate(rng, sim, knobs)
    lost = sim["lost"]
    invalid = (lost == 2)[:, None] & (rng.uniform(size=(n, 3)) < 0.7)   # which tasks lose the label
    render_video(rng, ident, sim, root / "cropped_aligned" / job["video"], knobs, skip=lost == 1)
    split_dir = {"train": "Training_Set", "val": "Validation_Set"}[job["split"]]
    ann = root / "annotations"
    rows_e = np.where(invalid[:, 0], -1, expr)
    rows_va = np.where(invalid[:, 1:2], -5, va)
    rows_au = np.where(invalid[:, 2:3], -1, au[:, [AUS_17.index(a) for a in AUS_ABAW]])
    (ann / "EXPR_Set" / split_dir / f"{job['video']}.txt").write_text(
        ",".join(EXPRESSIONS) + "\n" + "".join(f"{v}\n" for v in rows_e))
    (ann / "VA_Set" / split_dir / f"{job['video']}.txt").write_text(
        "valence,arousal\n" + "".join(f"{v:g},{a:g}\n" for v, a in rows_va))
    (ann / "AU_Set" / split_dir / f"{job['video']}.txt").write_text(
        ",".join(AUS_ABAW) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows_au))
    meta = pd.DataFrame({"frame": np.arange(1, n + 1), "split": job["split"], "subject": job["subject_name"],
                         "expr_true": sim["true_expr"], "episode_expr": sim["cls"], "phase": np.array(PHASES)[sim["phase"]],
                         "intensity": sim["env"].round(3), "valence_true": sim["va"][:, 0].round(3),
                         "arousal_true": sim["va"][:, 1].round(3),
                         "occluder": [OCCLUDERS[o] if o >= 0 else "" for o in sim["occluder"]],
                         "occluded": (sim["occluder"] >= 0).astype(int), "yaw": sim["pose"][:, 0].round(3),
                         "pitch": sim["pose"][:, 1].round(3), "roll": sim["pose"][:, 2].round(3),
                         "has_image": (lost != 1).astype(int), "label_lag": lag})
    for j, name in enumerate(AUS_17):
        meta[name] = sim["aus"][:, j].round(3)
    meta.to_csv(root / "meta" / f"{job['video']}.csv", index=False)
    return {"frames": int((lost != 1).sum())}


def _plan_affwild(rng, preset: dict, knobs: dict, seed: int, root: Path) -> list[dict]:
    """Subject-disjoint splits, then expression episodes per split so that each split's labelled frames
    follow ``proportions`` (and every class has at least ``min_episodes`` episodes)."""
    n_sub = preset["subjects"]
    order = rng.permutation(n_sub)
    val = set(order[: preset["val_subjects"]].tolist())
    # Two-person videos: consecutive subjects of one split share a video name with _left / _right.
    videos = []   # (video name, subject index, split)
    by_split = {s: [i for i in range(n_sub) if (i in val) == (s == "val")] for s in ("train", "val")}
    k = 0
    for split, subs in by_split.items():
        n_pairs = max(1, round(preset["pairs"] * len(subs) / n_sub)) if preset["pairs"] else 0
        for j, sub in enumerate(subs):
            base = f"{100 + k}-30-{rng.choice(['1280x720', '640x360', '1920x1080'])}"
            if j < 2 * n_pairs:
                base = f"{100 + k - (j % 2)}-30-1280x720"
                videos.append((base + ("_left" if j % 2 == 0 else "_right"), sub, split))
            else:
                videos.append((base, sub, split))
            k += 1
    jobs = []
    props = knobs["proportions"]
    # At least this many episodes of every class in each split, so rare classes reach validation too.
    min_episodes = preset["min_episodes"] if knobs["min_episodes"] is None else knobs["min_episodes"]
    for split in ("train", "val"):
        vids = [v for v in videos if v[2] == split]
        lengths = rng.integers(*preset["frames"], len(vids))
        total = int(lengths.sum())
        episodes: list[Episode] = []
        for c, name in enumerate(EXPRESSIONS[1:], start=1):
            need, got = props[name] / sum(props.values()) * total, 0.0
            while got < need or sum(e.cls == c for e in episodes) < min_episodes:
                # Episodes there only to reach the minimum count are brief (half the scale, about a second),
                # as a flash of fear or disgust is: the rare classes come from more people, near their share.
                brief = got >= need
                ep = random_episode(rng, c, preset["episode_scale"] * (0.5 if brief else 1.0))
                episodes.append(ep)
                got += labelled_frames(ep, knobs["threshold"])
        rng.shuffle(episodes)
        per_video: list[list[Episode]] = [[] for _ in vids]
        load = np.zeros(len(vids))
        for ep in episodes:  # the video with the most room left takes the next episode
            i = int(np.argmax(lengths - load))
            per_video[i].append(ep)
            load[i] += ep.length
        # Lengthen the videos if the episodes (e.g. the minimum per class) leave too little Neutral time.
        p_neutral = props["Neutral"] / sum(props.values())
        emotive = sum(labelled_frames(e, knobs["threshold"]) for e in episodes)
        lengths = np.maximum(lengths, load + 10)
        if lengths.sum() < emotive / (1 - p_neutral):
            lengths = np.ceil(lengths * emotive / (1 - p_neutral) / lengths.sum()).astype(int)
        for i, (name, sub, _) in enumerate(vids):
            length = int(lengths[i])
            jobs.append(dict(video=name, subject=int(sub), subject_name=name, split=split, length=length,
                             episodes=[(e.cls, e.onset, e.apex, e.offset, e.peak) for e in per_video[i]],
                             seed=seed, index=len(jobs), knobs=knobs, root=str(root)))
    return jobs


# Hume-Reaction's labels are self-reports: after the clip, each participant rates how strongly they felt
# each of the 7 reactions. Retrospective ratings of an experience follow its most intense moment and how it
# ended, not its duration (the peak-end rule; Fredrickson & Kahneman 1993, "duration neglect"), so a reaction's
# label is the mean of its peak over the clip and its recency-weighted peak (the end).
HUME_RECALL_HALF_LIFE = 60     # frames (2 s at 30 fps): how fast a moment's weight in the "end" term fades
HUME_EPISODE_SCALE = 0.6       # a reaction lasts what it lasts (0.5-2 s), whatever the clip's length
HUME_FRAMES_PER_REACTION = 60  # one more reaction, on average, per 60 frames of clip
HUME_SELF_REPORT_NOISE = 0.04


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reaction_signals(sim: dict) -> dict[str, np.ndarray]:
    """Per-frame strength of each of the 7 reactions in a simulated video (``simulate``'s arrays): the
    intensity of the expression episode that carries it, split by arousal where two reactions share one
    (calm vs excited joy: Adoration vs Amusement; apprehensive vs alarmed fear: Anxiety vs Fear), and for
    Empathic-Pain the sadness that shows a frown (AU4)."""
    inten, cls, arousal = sim["env"], sim["cls"], sim["va"][:, 1]

    def of(name):
        return np.where(cls == EXPRESSIONS.index(name), inten, 0.0)

    excited = _sigmoid(8 * (arousal - 0.3))
    alarmed = _sigmoid(8 * (arousal - 0.45))
    return {"Adoration": of("Happiness") * (1 - excited), "Amusement": of("Happiness") * excited,
            "Anxiety": of("Fear") * (1 - alarmed), "Disgust": of("Disgust"),
            "Empathic-Pain": of("Sadness") * sim["aus"][:, AU_INDEX["AU4"]], "Fear": of("Fear") * alarmed,
            "Surprise": of("Surprise")}


def peak_end(signal: np.ndarray, half_life: float = HUME_RECALL_HALF_LIFE) -> float:
    """A retrospective rating of a per-frame ``signal``: the mean of its peak and of its peak weighted by
    recency (a moment ``half_life`` frames before the end counts half). Independent of the clip's length:
    the same moment rates the same in a short clip and in a long one that ends with it."""
    if len(signal) == 0:
        raise ValueError("peak_end: empty signal (a video with no frame)")
    recency = 0.5 ** ((len(signal) - 1 - np.arange(len(signal))) / half_life)
    return 0.5 * (float(signal.max()) + float((signal * recency).max()))


def _hume_sim(job: dict):
    """What happens in one Hume-Reaction video (nothing drawn): ``(rng, identity, simulate's arrays)``."""
    rng = _rng(job["seed"], 2, job["index"])
    ident = random_identity(_rng(job["seed"], 3, job["subject"]))
    n = job["length"]
    # A longer clip offers more moments to react to: 1 + Poisson(length / 60) reactions, fewer if they do not fit.
    classes = rng.choice(np.arange(1, 7), size=1 + int(rng.poisson(n / HUME_FRAMES_PER_REACTION)))
    episodes = [random_episode(rng, int(c), HUME_EPISODE_SCALE) for c in classes]
    while len(episodes) > 1 and sum(e.length for e in episodes) > n:   # a short clip holds fewer reactions
        episodes.pop()
    placed = layout(rng, episodes, n)                                  # anywhere in the clip, late ones too
    return rng, ident, simulate(rng, n, placed, ident.gain, ident.va_bias, job["knobs"])


def _hume_video(job: dict) -> dict:
    """Worker: one Hume-Reaction-format video and its 7 reaction intensities, rated from its content."""
    rng, ident, sim = _hume_sim(job)
    render_video(rng, ident, sim, Path(job["root"]) / job["video"], job["knobs"])
    signals = reaction_signals(sim)
    values = [round(float(np.clip(peak_end(signals[r]) + rng.normal(0, HUME_SELF_REPORT_NOISE), 0, 1)), 4)
              for r in REACTIONS]
    return {"values": values, "frames": job["length"]}


def _hume_length(rng, lo: int, hi: int) -> int:
    """Clip lengths spread over tens to hundreds of frames: log-uniform on [lo, hi], so short and long clips
    are both common (uniform lengths would make nearly every clip long)."""
    return int(np.clip(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))), lo, hi))


def mean_hume_length(lo: int, hi: int) -> float:
    """The mean of ``_hume_length``'s log-uniform lengths on [lo, hi] (size estimates before generating)."""
    return (hi - lo) / np.log(hi / lo) if hi > lo else float(lo)


def _plan_hume(rng, preset, knobs, seed, root) -> list[dict]:
    n_train, n_val = preset["hume"]
    jobs = []
    for i in range(n_train + n_val):
        # Subjects never cross splits: train videos use subjects 0..n_train-1, val the rest.
        jobs.append(dict(video=f"{i + 1:05d}", split="Train" if i < n_train else "Val", subject=i,
                         length=_hume_length(rng, *preset["hume_frames"]), seed=seed, index=i, knobs=knobs,
                         root=str(root)))
    return jobs


def _worker_init(parent: int | None) -> None:
    """Pool workers: SIGINT is ignored (Ctrl-C reaches the whole process group; the parent stops the pool),
    SIGTERM ends them at once, and on Linux the kernel sends them SIGTERM when the process that started
    them dies, however it died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent is not None and os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: queued jobs cancelled, running workers ended (SIGTERM, then SIGKILL after 5 s) and
    reaped, so none writes into a folder the caller is about to delete."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _run(fn, jobs, workers, bar, weight):
    """Run jobs (in order of results, whatever the pool's timing) and advance the progress bar. Any exception
    here (a job's error, KeyboardInterrupt, SIGTERM via ``_sigterm_unwinds``) stops the pool's workers first."""
    if workers <= 1 or len(jobs) < 4:
        results = []
        for j in jobs:
            results.append(fn(j))
            bar.update(weight(j))
        return results
    ctx = multiprocessing.get_context()
    parent = os.getpid() if ctx.get_start_method() in ("fork", "spawn") else None   # forkserver: not us
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(parent,))
    try:
        futures = [pool.submit(fn, j) for j in jobs]
        results = []
        for j, f in zip(jobs, futures):
            results.append(f.result())
            bar.update(weight(j))
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return results


def content_hash(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes (the manifest excluded)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _settings(preset: str, seed: int, knobs: dict) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knob(s) {sorted(unknown)}; known: {sorted(KNOBS)}")
    merged = {**KNOBS, **knobs}
    # The preset's own table is part of the key: editing a preset regenerates the worlds made with it.
    return {"generator_version": GENERATOR_VERSION, "preset": preset, "seed": int(seed),
            "preset_settings": json.loads(json.dumps(PRESETS[preset])),
            "knobs": json.loads(json.dumps({k: v for k, v in merged.items() if k != "workers"}))}


def _matches(manifest: Path, settings: dict) -> dict | None:
    """The manifest's content when it exists; ``{"match": True}`` added when it records ``settings``."""
    if not manifest.is_file():
        return None
    try:
        old = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return {}
    old["match"] = all(old.get(k) == v for k, v in settings.items())
    return old


@contextmanager
def _exclusive(out: Path):
    """One generator per output folder at a time (chapters, tests and the CLI may start together): the
    others wait here and then find the world made. POSIX file lock; no lock where fcntl is missing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent runs expected
        yield
        return
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Terminated(BaseException):
    """SIGTERM arrived while generating: unwinds (stopping the pool, deleting the temporary folder) like
    KeyboardInterrupt, then ``_sigterm_unwinds`` re-delivers the signal."""


@contextmanager
def _sigterm_unwinds():
    """While generating, SIGTERM raises ``_Terminated`` in the main thread so that every ``finally`` and
    ``except BaseException`` runs; afterwards the signal is re-delivered under the previous handler (the
    default one ends the process, as SIGTERM would have). Other threads, or SIGTERM ignored or handled
    outside Python: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        yield
        return
    owner = os.getpid()

    def on_sigterm(signum, frame):
        if os.getpid() != owner:   # a forked pool worker before its initializer ran: just end
            os._exit(128 + signum)
        raise _Terminated(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)
        # Reached only when the previous handler returned (the process chose to go on): generation stopped.
        raise KeyboardInterrupt("synthetic-world generation stopped by SIGTERM") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait (blocked) until the block ends: for the two renames that swap a world in."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _remove_stale_tmp(out: Path) -> None:
    """Delete temporary (and swapped-out old) folders left by generator runs whose process is gone (an
    interrupted run): they never hold a manifest, so nothing takes them for a world."""
    for tmp in [*out.parent.glob(f"{out.name}.tmp-*"), *out.parent.glob(f"{out.name}.old-*")]:
        pid = tmp.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass


def make_world(out: str | os.PathLike, preset: str = "quick", seed: int = 0, progress: bool = True, **knobs) -> Path:
    """Generate the synthetic world into ``out`` (see the module docstring) and return its path.

    A no-op when ``out/manifest.json`` records the same generator version, preset, seed and knobs.
    """
    out = Path(out).expanduser().resolve()
    settings = _settings(preset, seed, knobs)
    old = _matches(out / "manifest.json", settings)
    if old and old["match"]:
        return out                                  # the common case: no lock, no work
    with _sigterm_unwinds(), _exclusive(out):
        old = _matches(out / "manifest.json", settings)
        if old and old["match"]:
            return out                              # another process made it while we waited
        if old is not None:
            warnings.warn(f"{out}: holds a world with preset={old.get('preset')} seed={old.get('seed')} "
                          f"(or other knobs); regenerating it with preset={preset} seed={seed}", stacklevel=2)
        elif out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty and holds no synthetic-world manifest.json; "
                                  "refusing to write into it (choose an empty or new directory)")
        _remove_stale_tmp(out)
        tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _generate(tmp, preset, seed, settings, {**KNOBS, **knobs}, progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # Swap in the new world with two renames, so readers never see a half-deleted folder for long (and a
        # signal waits until both are done: never a missing world with the old and new ones set aside).
        old_dir = out.with_name(out.name + f".old-{os.getpid()}")
        with _signals_held():
            if out.exists():
                out.rename(old_dir)
            tmp.rename(out)
        shutil.rmtree(old_dir, ignore_errors=True)
    return out


def _generate(tmp: Path, preset: str, seed: int, settings: dict, k: dict, progress: bool) -> None:
    workers = max(1, min(int(k["workers"]), os.cpu_count() or 1))
    p = PRESETS[preset]
    rng = _rng(seed, 99, 0)
    aw = tmp / "affwild2"
    for task in ("EXPR_Set", "VA_Set", "AU_Set"):
        for split in ("Training_Set", "Validation_Set"):
            (aw / "annotations" / task / split).mkdir(parents=True)
    (aw / "meta").mkdir()
    (tmp / "hume").mkdir()
    aw_jobs = _plan_affwild(rng, p, k, seed, aw)
    hume_jobs = _plan_hume(rng, p, k, seed + 10_000, tmp / "hume")
    static_jobs = static_synth.plan(p, k, seed, tmp)
    total = (sum(j["length"] for j in aw_jobs) + sum(j["length"] for j in hume_jobs)
             + sum(j["count"] for j in static_jobs))
    if progress:   # the size first: the full preset is hundreds of thousands of images
        print(f"synthetic world ({preset}, seed {seed}): {total:,} images — {len(aw_jobs)} Aff-Wild2 videos, "
              f"{len(hume_jobs)} Hume-Reaction videos, {sum(j['count'] for j in static_jobs):,} static faces; "
              f"~{_size(total * IMAGE_KB * 1e3)} on disk, {workers} worker(s)", file=sys.stderr, flush=True)
    with tqdm(total=total, desc=f"synthetic world ({preset})", unit="img", disable=not progress) as bar:
        aw_res = _run(_affwild_video, aw_jobs, workers, bar, lambda j: j["length"])
        hume_res = _run(_hume_video, hume_jobs, workers, bar, lambda j: j["length"])
        static_res = _run(static_synth.render_batch, static_jobs, workers, bar, lambda j: j["count"])
    info = pd.DataFrame({"File_ID": [f"[{j['video']}]" for j in hume_jobs], "Split": [j["split"] for j in hume_jobs]})
    info[list(REACTIONS)] = np.array([r["values"] for r in hume_res])
    info.to_csv(tmp / "hume" / "data_info.csv", index=False)
    static_synth.write_labels(static_jobs, static_res, tmp)
    counts = {"affwild2_frames": sum(r["frames"] for r in aw_res), "affwild2_videos": len(aw_jobs),
              "hume_videos": len(hume_jobs), "hume_frames": sum(r["frames"] for r in hume_res),
              "static_images": sum(j["count"] for j in static_jobs)}
    meta = {**settings, "counts": counts, "content_hash": content_hash(tmp)}
    (tmp / "manifest.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def read_ground_truth(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """The synthetic world's per-frame truth for ``split`` ("train"/"val"), one row per (video, frame):
    true category, all 17 AU intensities (``AUS_17``), true VA, occluder, pose, episode phase."""
    root = Path(root)
    meta_dir = root / "affwild2" / "meta" if (root / "affwild2" / "meta").is_dir() else root / "meta"
    files = sorted(meta_dir.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"{meta_dir}: no ground-truth files (only the synthetic world has them)")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    frames = []
    for f in files:
        df = pd.read_csv(f, keep_default_na=False)
        if df["split"].iloc[0] == split:
            df.insert(0, "video", f.stem)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Generate the synthetic in-the-wild face-video world.")
    ap.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    ap.add_argument("--out", default=None, help="output directory (default: data/synthetic for quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=KNOBS["workers"])
    args = ap.parse_args(argv)
    from affectlab.paths import synthetic_root

    try:
        out = make_world(args.out or synthetic_root(args.preset), preset=args.preset, seed=args.seed,
                         workers=args.workers)
    except KeyboardInterrupt:
        print("synthetic world: interrupted; nothing of this run was kept (the next run makes it anew)",
              file=sys.stderr)
        raise SystemExit(130) from None
    print(json.loads((out / "manifest.json").read_text())["counts"])


if __name__ == "__main__":
    main()
