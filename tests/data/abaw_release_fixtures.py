"""Small Aff-Wild2 trees laid out as each ABAW edition's archives unzip (for tests/data/test_abaw_*.py).

Formats, as the public loaders of ABAW teams read them: per-video ``<video>.txt`` files whose line 1 is a
header (the 7 or 8 class names; ``valence,arousal``; the AU names) and whose line i+1 labels frame i, image
``<video>/<i:05d>.jpg`` under ``cropped_aligned``; the 3rd ABAW multi-task files
``MTL_Challenge/{train_set,validation_set}.txt`` with one row ``<video>/<frame>.jpg,valence,arousal,expression,
AU...`` per image under the header ``image,valence,arousal,expression,aus``.

Labels are functions of the 1-based frame number ``f`` (see :func:`expr_of`, :func:`va_of`, :func:`au_of`),
so a test can name the label of any frame; ``invalid`` frames carry the release's sentinels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from affectlab.labels import AUS_ABAW, AUS_ABAW2020, EXPRESSIONS, EXPRESSIONS_8

_SET = {"EXPR": "EXPR_Set", "VA": "VA_Set", "AU": "AU_Set"}
_CHALLENGE = {"EXPR": "EXPR_Classification_Challenge", "VA": "VA_Estimation_Challenge",
              "AU": "AU_Detection_Challenge"}
_CHALLENGE_6 = dict(_CHALLENGE, EXPR="EXPR_Recognition_Challenge")

_TRAIN_VAL = {"train": "Train_Set", "val": "Validation_Set"}
# The s-Aff-Wild2 multi-task files (sampled frames): in the 3rd ABAW's MTL_Challenge folder beside the task
# folders, alone (no task folders) in the 4th and 7th ABAW's releases.
_MTL_3 = ("MTL_Challenge/train_set.txt", "MTL_Challenge/validation_set.txt")
_MTL_S = ("training_set_annotations.txt", "validation_set_annotations.txt")


def _later(n: int) -> dict:
    """The 8th ABAW and later: the 6th ABAW's folders under ``<N>th_ABAW_Annotations``."""
    return dict(ann=(f"{n}th_ABAW_Annotations",), tasks=_CHALLENGE_6, splits=_TRAIN_VAL, aus=AUS_ABAW,
                classes=EXPRESSIONS_8, images=("cropped_aligned",))


# edition -> annotation folders (as unzipped), task folders, split folders, AUs, classes, image folders, and
# ``mtl``: the multi-task files (relative to the annotation folder) where the release ships them. Keyed by
# year for the first edition of a year, by ABAW number ("4th") for the others.
EDITIONS = {
    "2020": dict(ann=("annotations",), tasks=_SET, splits={"train": "Training_Set", "val": "Validation_Set"},
                 aus=AUS_ABAW2020, classes=EXPRESSIONS, images=("cropped_aligned",)),
    "2021": dict(ann=("annotations",), tasks=_SET, splits={"train": "Train_Set", "val": "Validation_Set"},
                 aus=AUS_ABAW, classes=EXPRESSIONS, images=("cropped_aligned",)),
    "2022": dict(ann=("3rd ABAW Annotations", "Third ABAW Annotations"), tasks=_CHALLENGE,
                 splits={"train": "Train_Set", "val": "Validation_Set"}, aus=AUS_ABAW, classes=EXPRESSIONS_8,
                 images=("cropped_aligned",), mtl=_MTL_3),
    "4th": dict(ann=("4th ABAW Annotations",), tasks={}, splits={}, aus=AUS_ABAW, classes=EXPRESSIONS_8,
                images=("cropped_aligned",), mtl=_MTL_S),
    "2023": dict(ann=("5th_ABAW_Annotations",), tasks=_CHALLENGE,
                 splits={"train": "Train_Set", "val": "Validation_Set"}, aus=AUS_ABAW, classes=EXPRESSIONS_8,
                 images=("cropped_aligned_images/cropped_aligned", "cropped_aligned_images/cropped_aligned_new_50_vids")),
    "2024": dict(ann=("6th ABAW Annotations",), tasks=_CHALLENGE_6,
                 splits={"train": "Train_Set", "val": "Validation_Set"}, aus=AUS_ABAW, classes=EXPRESSIONS_8,
                 images=("cropped_aligned",)),
    "7th": dict(ann=("7th ABAW Annotations",), tasks={}, splits={}, aus=AUS_ABAW, classes=EXPRESSIONS_8,
                images=("cropped_aligned",), mtl=_MTL_S),
    "2025": _later(8),
    "9th": _later(9),
    "2026": _later(10),
    "11th": _later(11),
}

_JPEG = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()


def expr_of(f: int, n_classes: int = 8) -> int:
    return (f - 1) % n_classes


def va_of(f: int) -> tuple[float, float]:
    return round(0.1 * (f % 10), 1), round(-0.05 * (f % 10), 2)


def au_of(f: int, j: int) -> int:
    return int((f + j) % 3 == 0)


@dataclass
class Release:
    root: Path
    edition: str
    ann: Path                       # the folder holding the task folders
    image_roots: list[Path]
    frame_dirs: dict[str, Path] = field(default_factory=dict)

    def task_dir(self, task: str, split: str = "train") -> Path:
        e = EDITIONS[self.edition]
        return self.ann / e["tasks"][task] / e["splits"][split]

    def file(self, task: str, video: str, split: str = "train") -> Path:
        return self.task_dir(task, split) / f"{video}.txt"

    def write(self, task: str, video: str, text: str, split: str = "train") -> Path:
        p = self.file(task, video, split)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode())
        return p


def frames(folder: Path, numbers, pad: int = 5, ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in numbers:
        (folder / f"{f:0{pad}d}{ext}").write_bytes(_JPEG)


def _text(header: str, rows: list[str], newline: str, final_newline: bool, header_pad: str) -> str:
    body = newline.join([header + header_pad, *rows])
    return body + (newline if final_newline else "")


def release(root: Path, edition: str, videos=None, split: str = "train", tasks=("EXPR", "VA", "AU"),
            invalid=None, images=None, no_frames=(), new_vids=(), image_dir: str | None = None, pad: int = 5,
            newline: str = "\n", final_newline: bool = True, header_pad: str = "") -> Release:
    """Write ``edition``'s tree under ``root``.

    ``videos``: {name: n annotated frames}; ``invalid``: {name: frames written with the sentinels};
    ``images``: {name: frame numbers with an image} (default 1..n); ``no_frames``: videos without a frame
    folder; ``new_vids``: (2023) videos whose frames are in ``cropped_aligned_new_50_vids``; ``image_dir``:
    the image folder, relative to ``root`` (default: the edition's first); ``pad``: digits of the frame files;
    ``newline``, ``final_newline``, ``header_pad`` (appended to every header line): how the files are written.
    """
    e = EDITIONS[edition]
    videos = videos or {"v1": 5}
    ann = root.joinpath(*e["ann"])
    rel = Release(root, edition, ann, [root / p for p in e["images"]])
    if image_dir is not None:
        rel.image_roots = [root / image_dir]
    n_cls, aus = len(e["classes"]), e["aus"]
    for name, n in videos.items():
        bad = set((invalid or {}).get(name, ()))
        rows = {
            "EXPR": [str(-1 if f in bad else expr_of(f, n_cls)) for f in range(1, n + 1)],
            "VA": ["-5,-5" if f in bad else "{},{}".format(*va_of(f)) for f in range(1, n + 1)],
            "AU": [",".join("-1" if f in bad else str(au_of(f, j)) for j in range(len(aus))) for f in range(1, n + 1)],
        }
        headers = {"EXPR": ",".join(e["classes"]), "VA": "valence,arousal", "AU": ",".join(aus)}
        for task in tasks:
            rel.write(task, name, _text(headers[task], rows[task], newline, final_newline, header_pad), split)
        if name in no_frames:
            continue
        img_root = rel.image_roots[1] if name in new_vids else rel.image_roots[0]
        rel.frame_dirs[name] = img_root / name
        frames(img_root / name, (images or {}).get(name, range(1, n + 1)), pad)
    return rel


def mtl_file(folder: Path, split: str, videos, header: str = "aus", invalid=None, name: str | None = None,
             newline: str = "\n") -> Path:
    """A multi-task file in ``folder``: one row per frame 1..n of each of ``videos`` ({name: n}), labels
    of :func:`expr_of` / :func:`va_of` / :func:`au_of`; ``invalid``: {(video, frame): tasks with sentinels}.
    ``header="aus"``: the 3rd ABAW's ``image,valence,arousal,expression,aus``; ``"names"``: the AU names."""
    lines = ["image,valence,arousal,expression," + ("aus" if header == "aus" else ",".join(AUS_ABAW))]
    for v, n in videos.items():
        for f in range(1, n + 1):
            bad = (invalid or {}).get((v, f), ())
            val, aro = (-5, -5) if "VA" in bad else va_of(f)
            ex = -1 if "EXPR" in bad else expr_of(f)
            au = ["-1" if "AU" in bad else str(au_of(f, j)) for j in range(12)]
            lines.append(f"{v}/{f:05d}.jpg,{val},{aro},{ex}," + ",".join(au))
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / (name or {"train": "train_set.txt", "val": "validation_set.txt"}[split])
    p.write_bytes((newline.join(lines) + newline).encode())
    return p
