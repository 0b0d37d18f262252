"""The synthetic world's static-image corpora in the AffectNet, RAF-DB and ExpW formats.

More balanced than Aff-Wild2 and with their own pose / light / occlusion mix, they stand in for the
AffectNet / VGGFace2 pre-training of papers 2-4. Each corpus writes its own label order (via
``labels.from_canonical``) and its own layout: AffectNet and ExpW images are larger scenes with a face box
(ExpW's box order is ``top left right bottom``), RAF-DB images are aligned crops.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from affectlab.labels import AUS_17, EXPRESSION_AUS, EXPRESSIONS, from_canonical

from .faces_draw import AU_INDEX, OCCLUDERS, camera, draw_face, random_background, random_identity
from .timeline import VA_CENTRES

STATIC_PROPORTIONS = np.array([0.22, 0.12, 0.08, 0.07, 0.25, 0.14, 0.12])  # more balanced than Aff-Wild2
CORPORA = ("affectnet", "rafdb", "expw")
BATCH = 200


def plan(preset: dict, knobs: dict, seed: int, root: Path) -> list[dict]:
    jobs = []
    sizes = {"affectnet": preset["affectnet"], "rafdb": preset["rafdb"], "expw": (preset["expw"], 0)}
    for ci, corpus in enumerate(CORPORA):
        for split, n in zip(("train", "val"), sizes[corpus]):
            for start in range(0, n, BATCH):
                jobs.append(dict(corpus=corpus, corpus_index=ci, split=split, start=start,
                                 count=min(BATCH, n - start), seed=seed, knobs=knobs, root=str(root)))
    return jobs


def _face(rng, size, corpus):
    """One random identity with one expression at a random intensity; returns image and labels."""
    cls = int(rng.choice(len(EXPRESSIONS), p=STATIC_PROPORTIONS))
    ident = random_identity(rng)
    inten = rng.uniform(0.5, 1.0) if cls else 0.0
    aus = np.abs(rng.normal(0, 0.03, len(AUS_17)))
    entry = EXPRESSION_AUS[EXPRESSIONS[cls]]
    for au in entry["prototypical"]:
        aus[AU_INDEX[au]] += inten * rng.uniform(0.8, 1.0)
    for au, share in entry["observational"].items():
        if rng.uniform() < share:
            aus[AU_INDEX[au]] += inten * rng.uniform(0.5, 0.9)
    pose_scale = {"affectnet": 1.0, "rafdb": 0.5, "expw": 1.3}[corpus]
    pose = tuple(rng.normal(0, [0.25 * pose_scale, 0.12 * pose_scale, 0.12 * pose_scale]))
    occ = OCCLUDERS[rng.integers(len(OCCLUDERS))] if rng.uniform() < 0.08 else None
    bg = random_background(rng, size)
    img = draw_face(bg, ident, np.clip(aus, 0, 1), pose, (0, 0, rng.uniform(0.9, 1.05)), occ, rng.uniform())
    img = camera(img, rng, (rng.uniform(0.6, 1.3), rng.uniform(0, 0.6), rng.uniform(0, 6.3)), 0, rng.uniform(1, 6))
    va = np.clip(np.array(VA_CENTRES[EXPRESSIONS[cls]]) * inten + ident.va_bias + rng.normal(0, 0.08, 2), -1, 1)
    return img, cls, va


def _write(path: Path, img_rgb, quality=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    path.write_bytes(buf.tobytes())


def render_batch(job: dict) -> list[dict]:
    corpus, root = job["corpus"], Path(job["root"]) / job["corpus"]
    rng = np.random.default_rng(np.random.SeedSequence([job["seed"], 10 + job["corpus_index"], job["start"],
                                                        0 if job["split"] == "train" else 1]))
    size = job["knobs"]["image_size"]
    rows = []
    for i in range(job["start"], job["start"] + job["count"]):
        if corpus == "rafdb":
            img, cls, _ = _face(rng, 100, corpus)
            name = f"{'train' if job['split'] == 'train' else 'test'}_{i + 1:05d}"
            _write(root / "Image" / "aligned" / f"{name}_aligned.jpg", img)
            rows.append(dict(name=f"{name}.jpg", label=from_canonical("rafdb", cls)))
        elif corpus == "affectnet":
            img, cls, va = _face(rng, size, corpus)
            canvas_w, canvas_h = size + int(rng.integers(10, 60)), size + int(rng.integers(10, 60))
            canvas = cv2.resize(random_background(rng, size), (canvas_w, canvas_h))
            x, y = int(rng.integers(0, canvas_w - size)), int(rng.integers(0, canvas_h - size))
            canvas[y:y + size, x:x + size] = img
            raw = from_canonical("affectnet", cls)
            if rng.uniform() < 0.04:  # a few Contempt / None rows, which the 7-class reader drops
                raw = int(rng.choice([7, 8]))
            # Numbered sub-folders as in AffectNet; validation images get their own (1001, ...) so the two
            # splits, rendered in parallel, never write the same file.
            sub = f"{1 + i // 500 + (0 if job['split'] == 'train' else 1000)}/{i + 1:06d}.jpg"
            _write(root / "Manually_Annotated_Images" / sub, canvas)
            marks = ";".join(f"{x + size * u:.1f};{y + size * v:.1f}" for u, v in ((0.37, 0.44), (0.63, 0.44), (0.5, 0.6), (0.4, 0.68), (0.6, 0.68)))
            rows.append(dict(subDirectory_filePath=sub, face_x=x, face_y=y, face_width=size, face_height=size,
                             facial_landmarks=marks, expression=raw,
                             valence=round(float(va[0]), 4) if raw != 8 else -2, arousal=round(float(va[1]), 4) if raw != 8 else -2))
        else:  # ExpW: one or two faces in a wider scene
            w, h = int(size * 2.2), int(size * 1.4)
            scene = cv2.resize(random_background(rng, size), (w, h))
            name = f"scene_{i + 1:05d}.jpg"
            n_faces = 1 + int(rng.uniform() < 0.3)
            for face_id in range(n_faces):
                s = int(size * rng.uniform(0.7, 1.0))
                img, cls, _ = _face(rng, size, corpus)
                img = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
                left = int(face_id * w / 2 + rng.integers(0, w // 2 - s + 1))
                top = int(rng.integers(0, h - s + 1))
                scene[top:top + s, left:left + s] = img
                rows.append(dict(image_name=name, face_id=face_id, top=top, left=left, right=left + s,
                                 bottom=top + s, confidence=round(float(rng.uniform(0.6, 1.0)), 3),
                                 label=from_canonical("expw", cls)))
            _write(root / "image" / "origin" / name, scene)
    return rows


def write_labels(jobs: list[dict], results: list[list[dict]], root: Path) -> None:
    """The corpora's label files, in each dataset's own format."""
    by = {(c, s): [] for c in CORPORA for s in ("train", "val")}
    for job, rows in zip(jobs, results):
        by[job["corpus"], job["split"]].extend(rows)
    lists = root / "affectnet" / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "training.csv"), ("val", "validation.csv")):
        pd.DataFrame(by["affectnet", split]).to_csv(lists / name, index=False)
    emo = root / "rafdb" / "EmoLabel"
    emo.mkdir(parents=True, exist_ok=True)
    rows = by["rafdb", "train"] + by["rafdb", "val"]
    (emo / "list_patition_label.txt").write_text("".join(f"{r['name']} {r['label']}\n" for r in rows))
    lab = root / "expw" / "label"
    lab.mkdir(parents=True, exist_ok=True)
    (lab / "label.lst").write_text("".join(
        f"{r['image_name']} {r['face_id']} {r['top']} {r['left']} {r['right']} {r['bottom']} {r['confidence']} {r['label']}\n"
        for r in by["expw", "train"]))
