"""The synthetic in-the-wild face-video world: ``make_world`` and ``python -m affectlab.data.synth``.

It writes exactly the real datasets' on-disk formats, so the readers that load a researcher's Aff-Wild2 are
the readers every chapter runs:

    out/affwild2/  ABAW 2020 folders, 12 AUs (cropped_aligned/, annotations/{EXPR,VA,AU}_Set/...) + meta/ (truth)
    out/affectnet/ Manually_Annotated_file_lists/{training,validation}.csv + Manually_Annotated_Images/
    out/rafdb/     EmoLabel/list_patition_label.txt + Image/aligned/
    out/expw/      label/label.lst + image/origin/
    out/hume/      data_info.csv + one frame folder per video
    out/manifest.json

``corpora`` adding ``"vidmimic"`` (``--corpora vidmimic``; never part of the course world) also writes Hume-Reaction's
successor, the emotional-mimicry data set of the 6th and 8th ABAW, as its release and the public repositories lay it
out (``affectlab.data.mimicry``): ``out/vidmimic/{train_split,valid_split}.csv`` (``Filename`` and the six
intensities of ``MIMICRY_EMOTIONS``) + ``face_images/<id>/`` frames. Its clips are Hume-Reaction's simulation with
other people and draws (:func:`mimicry_signals`: six emotions rated peak-end from the clip), sized by
``MIMICRY_PRESETS``.

``affwild2/meta/<video>.csv`` exists only in this world: per-frame truth (category, all 17 AUs, VA, pose,
occluder, episode phase) that chapters use to show what a real dataset cannot (e.g. occluded vs not).

Editions: ``edition=`` (``--edition``: a year, the first ABAW of that year, or an ABAW number, ``9th`` / ``9``)
writes ``affwild2/`` as that edition's release unzips (:data:`affectlab.data.editions.EDITIONS`): its top
folder, task and split folders, headers, classes and AUs (the 1st ABAW's 8 of ``AUS_ABAW2020``, 12 from the
2nd), the 3rd ABAW's ``MTL_Challenge`` files, the 5th ABAW's two image folders (every third video in
``cropped_aligned_new_50_vids``), or for the multi-task-only releases (4th, 7th ABAW: s-Aff-Wild2) only the
``training_set_annotations.txt`` / ``validation_set_annotations.txt`` files over every ``MTL_SAMPLE_EVERY``-th
frame, and only those frames' images. Every draw of the world is the one of the course world (same faces,
same labels); an edition only lays them out differently, and from the 3rd ABAW on relabels some Neutral
frames ``Other`` (:func:`other_frames`: a visible face movement, no named expression; 7.5 % of the labelled
EXPR frames of the tiny preset, 9.2 % of the quick one's: 8.0 % of training, 11.0 % of validation; real
Aff-Wild2 has about a quarter). Without ``edition`` the course world above is written, byte for byte as
before editions existed. ``corpora=("affwild2",)`` (``--corpora affwild2``) writes Aff-Wild2 alone.

Determinism: every video or image batch draws from its own ``SeedSequence((seed, corpus, index))``, so the
files are byte-identical whatever the number of worker processes. A call whose manifest matches is a no-op;
a different preset, seed, knob set, edition or set of corpora regenerates the directory (only if it holds a world made by this
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
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
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

from affectlab.labels import AUS_17, AUS_ABAW, EXPRESSIONS, MIMICRY_EMOTIONS, REACTIONS

from . import static_synth
from .editions import EDITIONS, Edition, for_year, ordinal
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


# The course world's Aff-Wild2: the 1st ABAW's folders with the 2nd ABAW's 12 AUs and 7 classes (what every
# chapter was written on; ``edition=`` writes a real edition's release instead).
COURSE_RELEASE = Edition(0, 2020, "2020", "annotations", {"EXPR": "EXPR_Set", "VA": "VA_Set", "AU": "AU_Set"},
                         {"train": "Training_Set", "val": "Validation_Set"}, EXPRESSIONS, AUS_ABAW)
# Other (3rd ABAW on): a Neutral-labelled frame whose face moves visibly (some AU at least this intense: five
# standard deviations of the AU noise |N(0, 0.03)|) without a named expression at category intensity.
OTHER_AU_MIN = 0.15
# The multi-task files (s-Aff-Wild2 of the 3rd, 4th and 7th ABAW) list sampled frames, never consecutive ones.
MTL_SAMPLE_EVERY = 5

# What a world holds: Aff-Wild2, Hume-Reaction, the static corpora (AffectNet, RAF-DB, ExpW).
CORPORA = ("affwild2", "hume", "static")
# Written only when asked for (``corpora=``): Hume-Vidmimic2. Not in the course world, whose files stay as they were.
OPTIONAL_CORPORA = ("vidmimic",)
# Hume-Vidmimic2's size per preset: (training, validation) videos and the clip lengths (log-uniform, as
# Hume-Reaction's). Kept out of ``PRESETS``: a world without it records the same settings as before it existed.
MIMICRY_PRESETS: dict[str, dict] = {
    "tiny": dict(videos=(8, 4), frames=(20, 60)),
    "quick": dict(videos=(80, 40), frames=(20, 120)),
    "full": dict(videos=(1500, 500), frames=(20, 480)),
}

IMAGE_KB = 4.8   # disk per image of the world, annotations included (measured on the quick preset: 290 MB)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def _rng(seed: int, corpus: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, corpus, index]))


def _jpeg(path: Path, img_rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    path.write_bytes(buf.tobytes())


def render_video(rng, ident, sim, frame_dir: Path, knobs: dict, skip=None, keep=None) -> None:
    """Draw and write every frame of a simulated video (frames in ``skip`` get no image; with ``keep``, only
    those frames are written, the others drawn all the same so that every image is the course world's)."""
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
        shot = camera(img, rng, light, int(sim["blur"][i]), noise, bank)
        if keep is None or keep[i]:
            _jpeg(frame_dir / f"{i + 1:05d}.jpg", shot, quality)


def _affwild_labels(job: dict):
    """What happens in one Aff-Wild2 video and how it is labelled (nothing drawn): ``(rng, identity, simulate's
    arrays, expr, va, au, lag, invalid)``, ``invalid`` (n x 3): which frames lose the EXPR / VA / AU label."""
    knobs = job["knobs"]
    rng = _rng(job["seed"], 1, job["index"])
    ident = random_identity(_rng(job["seed"], 0, job["subject"]))
    n = job["length"]
    placed = layout(rng, [Episode(*e) for e in job["episodes"]], n)
    sim = simulate(rng, n, placed, ident.gain, ident.va_bias, knobs)
    expr, va, au, lag = annotate(rng, sim, knobs)
    invalid = (sim["lost"] == 2)[:, None] & (rng.uniform(size=(n, 3)) < 0.7)   # which tasks lose the label
    return rng, ident, sim, expr, va, au, lag, invalid


def other_frames(sim: dict, expr: np.ndarray, lag: int, threshold: float) -> np.ndarray:
    """Which frames the annotators of the 3rd ABAW and later label ``Other`` (an affect none of the 7 names):
    those labelled Neutral whose face, at the moment the (lagged) label describes, visibly moves — some AU at
    ``OTHER_AU_MIN`` or more: a spontaneous single-AU blip (a brief frown, a polite smile) or the onset or
    offset of an expression below the category threshold — with no named expression at category intensity.
    A function of the simulation alone: no random draw, so every other label is the course world's."""
    src = np.maximum(np.arange(len(expr)) - lag, 0)          # the frame the annotator saw (as in ``annotate``)
    moves = sim["aus"][src].max(axis=1) >= OTHER_AU_MIN
    return (expr == 0) & (sim["env"][src] < threshold) & moves


def _mtl_sample(rows_e, rows_va, rows_au, has_image) -> np.ndarray:
    """The frames of one video that a multi-task file lists: every ``MTL_SAMPLE_EVERY``-th frame (1, 6, 11,
    ...) that has an image and at least one valid label."""
    labelled = (rows_e != -1) | (rows_va[:, 0] != -5) | (rows_au[:, 0] != -1)
    return (np.arange(len(rows_e)) % MTL_SAMPLE_EVERY == 0) & has_image & labelled


def _mtl_rows(video: str, sampled, rows_e, rows_va, rows_au) -> list[str]:
    """``<video>/<frame>.jpg,valence,arousal,expression,AU...`` per sampled frame (sentinels as written)."""
    return [f"{video}/{i + 1:05d}.jpg,{rows_va[i, 0]:g},{rows_va[i, 1]:g},{rows_e[i]},"
            + ",".join(map(str, rows_au[i])) for i in np.flatnonzero(sampled)]


def _affwild_video(job: dict) -> dict:
    """Worker: simulate, draw and annotate one Aff-Wild2 video; writes frames, annotation and meta files (and
    returns the multi-task rows of an edition that has a multi-task file)."""
    knobs, root = job["knobs"], Path(job["root"])
    release: Edition = job.get("edition") or COURSE_RELEASE
    rng, ident, sim, expr, va, au, lag, invalid = _affwild_labels(job)
    n, lost = job["length"], sim["lost"]
    if "Other" in release.classes:
        expr = np.where(other_frames(sim, expr, lag, knobs["threshold"]), release.classes.index("Other"), expr)
    rows_e = np.where(invalid[:, 0], -1, expr)
    rows_va = np.where(invalid[:, 1:2], -5, va)
    rows_au = np.where(invalid[:, 2:3], -1, au[:, [AUS_17.index(a) for a in release.aus]])
    has_image = lost != 1
    mtl = []
    if release.multitask:
        sampled = _mtl_sample(rows_e, rows_va, rows_au, has_image)
        mtl = _mtl_rows(job["video"], sampled, rows_e, rows_va, rows_au)
        if not release.tasks:      # a multi-task-only release holds the images of its sampled frames alone
            has_image = sampled
    image_root = root / release.images[job.get("image_folder", 0)]
    render_video(rng, ident, sim, image_root / job["video"], knobs, skip=lost == 1,
                 keep=None if release.tasks else has_image)
    headers = {"EXPR": ",".join(release.classes), "VA": "valence,arousal", "AU": ",".join(release.aus)}
    bodies = {"EXPR": lambda: "".join(f"{v}\n" for v in rows_e),
              "VA": lambda: "".join(f"{v:g},{a:g}\n" for v, a in rows_va),
              "AU": lambda: "".join(",".join(map(str, r)) + "\n" for r in rows_au)}
    for task, folder in release.tasks.items():
        (root / release.annotations / folder / release.splits[job["split"]] / f"{job['video']}.txt").write_text(
            headers[task] + "\n" + bodies[task]())
    meta = pd.DataFrame({"frame": np.arange(1, n + 1), "split": job["split"], "subject": job["subject_name"],
                         "expr_true": sim["true_expr"], "episode_expr": sim["cls"], "phase": np.array(PHASES)[sim["phase"]],
                         "intensity": sim["env"].round(3), "valence_true": sim["va"][:, 0].round(3),
                         "arousal_true": sim["va"][:, 1].round(3),
                         "occluder": [OCCLUDERS[o] if o >= 0 else "" for o in sim["occluder"]],
                         "occluded": (sim["occluder"] >= 0).astype(int), "yaw": sim["pose"][:, 0].round(3),
                         "pitch": sim["pose"][:, 1].round(3), "roll": sim["pose"][:, 2].round(3),
                         "has_image": has_image.astype(int), "label_lag": lag})
    for j, name in enumerate(AUS_17):
        meta[name] = sim["aus"][:, j].round(3)
    meta.to_csv(root / "meta" / f"{job['video']}.csv", index=False)
    return {"frames": int(has_image.sum()), "mtl": mtl}


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
    """What happens in one Hume-Reaction video (nothing drawn): ``(rng, identity, simulate's arrays)``. A job's
    ``streams`` (default Hume-Reaction's 2, 3) name the random streams of its clip and of its person."""
    clip_stream, person_stream = job.get("streams", (2, 3))
    rng = _rng(job["seed"], clip_stream, job["index"])
    ident = random_identity(_rng(job["seed"], person_stream, job["subject"]))
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


# Hume-Vidmimic2: a person mimics a seed clip, then rates six emotions. The simulated clip is Hume-Reaction's
# (expression episodes placed anywhere), each emotion carried by the expression that shows it: joy by any smile,
# split by arousal into admiration (calm) and amusement (laughing); determination by the anger configuration
# (lowered brows, pressed lips: AU4, AU7, AU24); empathic pain by a sad frown (AU4); excitement by surprise (raised
# brows, open mouth, high arousal). Fear and disgust episodes carry none of the six, as a real clip holds other
# emotions than those rated.
def mimicry_signals(sim: dict) -> dict[str, np.ndarray]:
    """Per-frame strength of each of the 6 ``MIMICRY_EMOTIONS`` in a simulated clip (``simulate``'s arrays)."""
    inten, cls, arousal = sim["env"], sim["cls"], sim["va"][:, 1]

    def of(name):
        return np.where(cls == EXPRESSIONS.index(name), inten, 0.0)

    excited = _sigmoid(8 * (arousal - 0.3))
    smile = of("Happiness")
    return {"Admiration": smile * (1 - excited), "Amusement": smile * excited, "Determination": of("Anger"),
            "Empathic Pain": of("Sadness") * sim["aus"][:, AU_INDEX["AU4"]], "Excitement": of("Surprise"),
            "Joy": smile}


def _mimicry_video(job: dict) -> dict:
    """Worker: one Hume-Vidmimic2-format clip (``face_images/<id>/``) and its 6 intensities, rated peak-end
    from its content with Hume-Reaction's self-report noise."""
    rng, ident, sim = _hume_sim(job)
    render_video(rng, ident, sim, Path(job["root"]) / "face_images" / job["video"], job["knobs"])
    signals = mimicry_signals(sim)
    values = [round(float(np.clip(peak_end(signals[e]) + rng.normal(0, HUME_SELF_REPORT_NOISE), 0, 1)), 4)
              for e in MIMICRY_EMOTIONS]
    return {"values": values, "frames": job["length"]}


def _plan_mimicry(sizes: dict, knobs: dict, seed: int, root: Path) -> list[dict]:
    """Hume-Vidmimic2's clips: its own plan stream (Aff-Wild2's and Hume-Reaction's draws are untouched), its own
    people (streams 4, 5), subjects never crossing the splits."""
    rng = _rng(seed, 98, 0)
    n_train, n_val = sizes["videos"]
    return [dict(video=f"{i + 1:05d}", split="train" if i < n_train else "val", subject=i,
                 length=_hume_length(rng, *sizes["frames"]), seed=seed, index=i, knobs=knobs, root=str(root),
                 streams=(4, 5)) for i in range(n_train + n_val)]


def _write_mimicry_splits(root: Path, jobs: list[dict], results: list[dict]) -> None:
    """``train_split.csv`` and ``valid_split.csv``: ``Filename`` (an integer, the folder its five-digit form, as
    the public repositories read it) and the six intensities."""
    for split, name in (("train", "train_split.csv"), ("val", "valid_split.csv")):
        rows = [(int(j["video"]), *r["values"]) for j, r in zip(jobs, results) if j["split"] == split]
        pd.DataFrame(rows, columns=["Filename", *MIMICRY_EMOTIONS]).to_csv(root / name, index=False)


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


def resolve_edition(edition) -> Edition | None:
    """The :class:`~affectlab.data.editions.Edition` that ``edition`` names: None (the course world), an
    ``Edition``, a year (2020-2026: that year's first ABAW) or an ABAW number (``9``, ``"9th"``,
    ``"9th ABAW"``). Anything else is a ValueError listing the editions known."""
    if edition is None or isinstance(edition, Edition):
        return edition
    m = re.fullmatch(r"(\d+)(st|nd|rd|th)?([ _-]*abaw)?", str(edition).strip(), re.I)
    if m:
        n = int(m.group(1))
        if m.group(2) is None and m.group(3) is None and n >= 1000:
            try:
                return for_year(n)
            except ValueError:
                pass
        elif n in EDITIONS:
            return EDITIONS[n]
    known = ", ".join(f"{ordinal(e.number)} ({e.year})" for e in EDITIONS.values())
    years = sorted({e.year for e in EDITIONS.values()})
    raise ValueError(f"unknown ABAW edition {edition!r}: give a year {years[0]}-{years[-1]} (that year's first "
                     f"ABAW) or an ABAW number; known editions: {known}")


def _settings(preset: str, seed: int, knobs: dict, edition: Edition | None = None, corpora=CORPORA) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knob(s) {sorted(unknown)}; known: {sorted(KNOBS)}")
    merged = {**KNOBS, **knobs}
    # The preset's own table is part of the key: editing a preset regenerates the worlds made with it.
    settings = {"generator_version": GENERATOR_VERSION, "preset": preset, "seed": int(seed),
                "preset_settings": json.loads(json.dumps(PRESETS[preset])),
                "knobs": json.loads(json.dumps({k: v for k, v in merged.items() if k != "workers"}))}
    # The course world's manifest has neither key: its bytes are as before editions and corpora existed.
    if edition is not None:
        settings["edition"] = {"name": edition.name, **json.loads(json.dumps(dataclasses.asdict(edition)))}
    if tuple(corpora) != CORPORA:
        known = CORPORA + OPTIONAL_CORPORA
        if isinstance(corpora, str) or not set(corpora) or set(corpora) - set(known):
            raise ValueError(f"corpora {list(corpora) if not isinstance(corpora, str) else corpora!r}: name one "
                             f"or more of {', '.join(known)}")
        settings["corpora"] = [c for c in known if c in corpora]
        if "vidmimic" in corpora:
            settings["vidmimic_settings"] = json.loads(json.dumps(MIMICRY_PRESETS[preset]))
    return settings


def _matches(manifest: Path, settings: dict) -> dict | None:
    """The manifest's content when it exists; ``{"match": True}`` added when it records ``settings``."""
    if not manifest.is_file():
        return None
    try:
        old = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return {}
    old["match"] = (all(old.get(k) == v for k, v in settings.items())   # keys absent from the course world's:
                    and all(old.get(k) == settings.get(k) for k in ("edition", "corpora")))
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


def make_world(out: str | os.PathLike, preset: str = "quick", seed: int = 0, progress: bool = True,
               edition=None, corpora=CORPORA, **knobs) -> Path:
    """Generate the synthetic world into ``out`` (see the module docstring) and return its path.

    ``edition``: write Aff-Wild2 as that ABAW edition's release (a year, ``"9th"``, ``9`` or an ``Edition``;
    see :func:`resolve_edition`); None writes the course world. A no-op when ``out/manifest.json`` records the
    same generator version, preset, seed, knobs, edition and corpora. ``corpora``: the parts to write (of
    ``CORPORA``): ``("affwild2",)`` writes an edition's Aff-Wild2 alone, skipping the other corpora's images
    (40 % of the tiny preset's, most of the quick one's); a corpus written is the same files whatever the others.
    ``"vidmimic"`` (of ``OPTIONAL_CORPORA``) adds Hume-Vidmimic2: ``("vidmimic",)`` writes it alone (the tiny
    preset's in about a second, the quick one's in tens of seconds).
    """
    out = Path(out).expanduser().resolve()
    release = resolve_edition(edition)
    settings = _settings(preset, seed, knobs, release, corpora)
    old = _matches(out / "manifest.json", settings)
    if old and old["match"]:
        return out                                  # the common case: no lock, no work
    with _sigterm_unwinds(), _exclusive(out):
        old = _matches(out / "manifest.json", settings)
        if old and old["match"]:
            return out                              # another process made it while we waited
        if old is not None:
            was = (old.get("edition") or {}).get("name", "the course world")
            warnings.warn(f"{out}: holds a world with preset={old.get('preset')} seed={old.get('seed')} ({was}; "
                          f"or other knobs); regenerating it with preset={preset} seed={seed} "
                          f"({release.name if release else 'the course world'})", stacklevel=2)
        elif out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty and holds no synthetic-world manifest.json; "
                                  "refusing to write into it (choose an empty or new directory)")
        _remove_stale_tmp(out)
        tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _generate(tmp, preset, seed, settings, {**KNOBS, **knobs}, progress, release,
                      settings.get("corpora", CORPORA))
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


def _generate(tmp: Path, preset: str, seed: int, settings: dict, k: dict, progress: bool,
              edition: Edition | None = None, corpora=CORPORA) -> None:
    workers = max(1, min(int(k["workers"]), os.cpu_count() or 1))
    p = PRESETS[preset]
    rng = _rng(seed, 99, 0)
    aw = tmp / "affwild2"
    release = edition or COURSE_RELEASE
    aw_jobs = _plan_affwild(rng, p, k, seed, aw)
    if edition is not None:
        _place_edition(aw_jobs, edition)
    hume_jobs = _plan_hume(rng, p, k, seed + 10_000, tmp / "hume")
    static_jobs = static_synth.plan(p, k, seed, tmp)
    mimicry_jobs = _plan_mimicry(MIMICRY_PRESETS[preset], k, seed, tmp / "vidmimic") if "vidmimic" in corpora else []
    # Corpora left out are planned all the same (Hume-Reaction's plan draws after Aff-Wild2's), then not made.
    aw_jobs = aw_jobs if "affwild2" in corpora else []
    hume_jobs = hume_jobs if "hume" in corpora else []
    static_jobs = static_jobs if "static" in corpora else []
    if aw_jobs:
        for task in release.tasks.values():
            for split in release.splits.values():
                (aw / release.annotations / task / split).mkdir(parents=True)
        (aw / "meta").mkdir(parents=True)
    tmp.mkdir(parents=True, exist_ok=True)
    if hume_jobs:
        (tmp / "hume").mkdir()
    if mimicry_jobs:
        (tmp / "vidmimic" / "face_images").mkdir(parents=True)
    total = (sum(j["length"] for j in aw_jobs) + sum(j["length"] for j in hume_jobs)
             + sum(j["count"] for j in static_jobs) + sum(j["length"] for j in mimicry_jobs))
    if progress:   # the size first: the full preset is hundreds of thousands of images
        print(f"synthetic world ({preset}, seed {seed}): {total:,} images — {len(aw_jobs)} Aff-Wild2 videos, "
              f"{len(hume_jobs)} Hume-Reaction videos, {sum(j['count'] for j in static_jobs):,} static faces"
              + (f", {len(mimicry_jobs)} Hume-Vidmimic2 videos" if mimicry_jobs else "") + "; "
              f"~{_size(total * IMAGE_KB * 1e3)} on disk, {workers} worker(s)", file=sys.stderr, flush=True)
    with tqdm(total=total, desc=f"synthetic world ({preset})", unit="img", disable=not progress) as bar:
        aw_res = _run(_affwild_video, aw_jobs, workers, bar, lambda j: j["length"])
        hume_res = _run(_hume_video, hume_jobs, workers, bar, lambda j: j["length"])
        static_res = _run(static_synth.render_batch, static_jobs, workers, bar, lambda j: j["count"])
        mimicry_res = _run(_mimicry_video, mimicry_jobs, workers, bar, lambda j: j["length"])
    if aw_jobs and release.multitask:
        _write_multitask(aw / release.annotations, release, aw_jobs, aw_res)
    if hume_jobs:
        info = pd.DataFrame({"File_ID": [f"[{j['video']}]" for j in hume_jobs],
                             "Split": [j["split"] for j in hume_jobs]})
        info[list(REACTIONS)] = np.array([r["values"] for r in hume_res])
        info.to_csv(tmp / "hume" / "data_info.csv", index=False)
    if static_jobs:
        static_synth.write_labels(static_jobs, static_res, tmp)
    if mimicry_jobs:
        _write_mimicry_splits(tmp / "vidmimic", mimicry_jobs, mimicry_res)
    counts = {"affwild2_frames": sum(r["frames"] for r in aw_res), "affwild2_videos": len(aw_jobs),
              "hume_videos": len(hume_jobs), "hume_frames": sum(r["frames"] for r in hume_res),
              "static_images": sum(j["count"] for j in static_jobs)}
    if aw_jobs and edition is not None:
        counts["affwild2_expr"] = _expr_counts(aw / release.annotations, release, aw_res)
    if mimicry_jobs:
        counts.update(vidmimic_videos=len(mimicry_jobs), vidmimic_frames=sum(r["frames"] for r in mimicry_res))
    meta = {**settings, "counts": counts, "content_hash": content_hash(tmp)}
    (tmp / "manifest.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def _place_edition(jobs: list[dict], edition: Edition) -> None:
    """Give each Aff-Wild2 job its edition and image folder. With two image folders (5th ABAW: the videos
    new in that release in ``cropped_aligned_new_50_vids``), every third video (both people of a two-person
    video together) goes to the second."""
    bases = list(dict.fromkeys(j["video"].removesuffix("_left").removesuffix("_right") for j in jobs))
    new = set(bases[2::3]) if len(edition.images) > 1 else set()
    for j in jobs:
        j["edition"] = edition
        j["image_folder"] = int(j["video"].removesuffix("_left").removesuffix("_right") in new)


def _write_multitask(ann: Path, edition: Edition, jobs: list[dict], results: list[dict]) -> None:
    """The edition's multi-task files (train, validation): header, then the sampled rows of each video. The
    3rd ABAW's header ends with ``aus`` (its 12 values follow), the 4th and 7th name the AUs."""
    aus = "aus" if edition.tasks else ",".join(edition.aus)
    for split, rel in zip(("train", "val"), edition.multitask):
        rows = [r for j, res in zip(jobs, results) if j["split"] == split for r in res["mtl"]]
        path = ann / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"image,valence,arousal,expression,{aus}\n" + "".join(r + "\n" for r in rows))


def _expr_counts(ann: Path, edition: Edition, results: list[dict]) -> dict:
    """Labelled expression frames per class name (all splits) of an edition's world, for its manifest."""
    labels = []
    if edition.tasks:
        for f in sorted((ann / edition.tasks["EXPR"]).glob("*/*.txt")):
            labels += [int(x) for x in f.read_text().split("\n")[1:] if x]
    else:
        labels = [int(r.split(",")[3]) for res in results for r in res["mtl"]]
    counts = np.bincount([x for x in labels if x >= 0], minlength=len(edition.classes))
    return dict(zip(edition.classes, counts.tolist()))


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
    ap.add_argument("--out", default=None, help="output directory (default: data/synthetic for quick; "
                                                "data/synthetic-abaw<N> for an edition)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=KNOBS["workers"])
    ap.add_argument("--edition", default=None,
                    help="write Aff-Wild2 as this ABAW edition's release: a year (2020-2026, that year's first "
                         "ABAW) or an ABAW number (9th, 9); default: the course world")
    ap.add_argument("--corpora", default=",".join(CORPORA),
                    help=f"comma-separated parts to write, of {','.join(CORPORA + OPTIONAL_CORPORA)} (default: "
                         f"{','.join(CORPORA)}, the course world; vidmimic: Hume-Vidmimic2, e.g. --corpora vidmimic)")
    args = ap.parse_args(argv)
    from affectlab.paths import synthetic_root

    corpora = tuple(c.strip() for c in args.corpora.split(",") if c.strip())
    try:
        release = resolve_edition(args.edition)
        _settings(args.preset, args.seed, {}, release, corpora)     # a bad --corpora: the usage error now
    except ValueError as e:
        ap.error(str(e))
    out = Path(args.out) if args.out else synthetic_root(args.preset, args.seed)
    if args.out is None:   # never over the course world: a folder of its own per edition and set of corpora
        suffix = f"-abaw{release.number}" if release else ""
        suffix += "" if corpora == CORPORA else "-" + "-".join(corpora)
        out = out.with_name(out.name + suffix)
    try:
        out = make_world(out, preset=args.preset, seed=args.seed, workers=args.workers, edition=release,
                         corpora=corpora)
    except KeyboardInterrupt:
        print("synthetic world: interrupted; nothing of this run was kept (the next run makes it anew)",
              file=sys.stderr)
        raise SystemExit(130) from None
    manifest = json.loads((out / "manifest.json").read_text())
    if release is not None:
        print(f"{out}: Aff-Wild2 as the {release.name} release", file=sys.stderr)
    print(manifest["counts"])


if __name__ == "__main__":
    main()
