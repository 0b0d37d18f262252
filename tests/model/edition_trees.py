"""The tiny synthetic world re-laid as other ABAW editions' Aff-Wild2 releases, by this script alone (not by the
world's writer, ``affectlab.data.synth``): the edition tests train the papers on trees the package did not write.

Release formats as the organisers' archives unzip (the folder names public ABAW loaders read): the annotation
top folder (``annotations``, ``3rd ABAW Annotations``, ``5th_ABAW_Annotations``, ``6th ABAW Annotations``,
``8th_ABAW_Annotations`` and the later editions' ``<N>th_ABAW_Annotations``), the task folders
(``{EXPR,VA,AU}_Set`` in 2020-2021; ``EXPR_Classification_Challenge`` / ``VA_Estimation_Challenge`` /
``AU_Detection_Challenge`` from 2022, ``EXPR_Recognition_Challenge`` from the 6th ABAW), the split folders
(``Training_Set`` in 2020, ``Train_Set`` after), 8 class names in the expression header from 2022 with some
frames labelled ``Other`` (7), and the multi-task-only release (``training_set_annotations.txt`` /
``validation_set_annotations.txt`` over sampled frames, as s-Aff-Wild2).
"""
from __future__ import annotations

import os
from pathlib import Path

NAMES7 = ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"]
AUS_2020 = ["AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25"]

_SET = {"EXPR": "EXPR_Set", "VA": "VA_Set", "AU": "AU_Set"}
_CHALLENGE = {"EXPR": "EXPR_Classification_Challenge", "VA": "VA_Estimation_Challenge",
              "AU": "AU_Detection_Challenge"}
_RECOGNITION = {**_CHALLENGE, "EXPR": "EXPR_Recognition_Challenge"}

# edition name -> (top folder, task folders, train split folder, classes, AU header or None = keep)
TREES = {
    "2020": ("annotations", _SET, "Training_Set", 7, AUS_2020),
    "2021": ("annotations", _SET, "Train_Set", 7, None),
    "2022": ("3rd ABAW Annotations", _CHALLENGE, "Train_Set", 8, None),
    "2023": ("5th_ABAW_Annotations", _CHALLENGE, "Train_Set", 8, None),
    "2024": ("6th ABAW Annotations", _RECOGNITION, "Train_Set", 8, None),
    "2025": ("9th_ABAW_Annotations", _RECOGNITION, "Train_Set", 8, None),
    "2026": ("11th_ABAW_Annotations", _RECOGNITION, "Train_Set", 8, None),
}
YEAR = {"2020": 2020, "2021": 2021, "2022": 2022, "2023": 2023, "2024": 2024, "2025": 2025, "2026": 2026}


def is_other(frame: int, label: int) -> bool:
    """Which Neutral frames this script relabels ``Other``: every third (a share the tests can count)."""
    return label == 0 and frame % 3 == 0


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src.resolve(), dst, target_is_directory=src.is_dir())


def relayout(world: Path, out: Path, edition: str) -> Path:
    """A data root at ``out`` holding ``world``'s static datasets and Hume-Reaction (linked) and its Aff-Wild2
    re-laid as ``edition``'s release (frames linked, annotations rewritten). Returns ``out``."""
    top, tasks, train_dir, classes, aus = TREES[edition]
    src_ann = world / "affwild2" / "annotations"
    for name in ("affectnet", "rafdb", "expw", "hume"):
        _link(world / name, out / name)
    _link(world / "affwild2" / "cropped_aligned", out / "affwild2" / "cropped_aligned")
    for task in ("EXPR", "VA", "AU"):
        for split_src, split_dst in (("Training_Set", train_dir), ("Validation_Set", "Validation_Set")):
            folder = out / "affwild2" / top / tasks[task] / split_dst
            folder.mkdir(parents=True)
            for f in sorted((src_ann / _SET[task] / split_src).glob("*.txt")):
                lines = f.read_text().splitlines()
                head, rows = lines[0], lines[1:]
                if task == "EXPR" and classes == 8:
                    head = ",".join(NAMES7 + ["Other"])
                    rows = ["7" if is_other(i, int(r)) else r for i, r in enumerate(rows, start=1)]
                if task == "AU" and aus is not None:     # the 1st ABAW annotated 8 AUs
                    rows = [",".join(r.split(",")[:len(aus)]) for r in rows]
                    head = ",".join(aus)
                (folder / f.name).write_text("\n".join([head, *rows]) + "\n")
    return out


def multitask_only(world: Path, out: Path, every: int = 5) -> Path:
    """A data root whose Aff-Wild2 is a multi-task release of sampled frames (every ``every``-th labelled frame
    of each video), as the 4th and 7th ABAW's s-Aff-Wild2: ``training_set_annotations.txt`` /
    ``validation_set_annotations.txt`` with the header ``image,valence,arousal,expression,aus``."""
    src_ann = world / "affwild2" / "annotations"
    for name in ("affectnet", "rafdb", "expw", "hume"):
        _link(world / name, out / name)
    _link(world / "affwild2" / "cropped_aligned", out / "affwild2" / "cropped_aligned")
    ann = out / "affwild2" / "7th ABAW Annotations"
    ann.mkdir(parents=True)
    for split_src, name in (("Training_Set", "training_set_annotations.txt"),
                            ("Validation_Set", "validation_set_annotations.txt")):
        rows = ["image,valence,arousal,expression,aus"]
        for f in sorted((src_ann / "EXPR_Set" / split_src).glob("*.txt")):
            video = f.stem
            ex = f.read_text().splitlines()[1:]
            va = (src_ann / "VA_Set" / split_src / f.name).read_text().splitlines()[1:]
            au = (src_ann / "AU_Set" / split_src / f.name).read_text().splitlines()[1:]
            for i in range(every, len(ex) + 1, every):
                if (world / "affwild2" / "cropped_aligned" / video / f"{i:05d}.jpg").is_file():
                    rows.append(f"{video}/{i:05d}.jpg,{va[i - 1]},{ex[i - 1]},{au[i - 1]}")
        (ann / name).write_text("\n".join(rows) + "\n")
    return out
