"""The ABAW editions of Aff-Wild2: what each release holds, and which edition a tree on disk is.

Every Aff-Wild2 release since the 3rd ABAW (2022) labels 8 expression classes (the 7 of ``EXPRESSIONS`` and
``Other`` = 7) and 12 AUs, and its challenges score all 8 classes; the 1st ABAW (2020) had 7 classes and 8 AUs,
the 2nd (2021) 7 classes and 12 AUs. A recipe trains and scores the classes of the edition it reads
(:func:`label_space`), so its numbers can stand beside that edition's leaderboard.

The edition of a tree is read from the annotation top folder's number as the archives unzip
(``3rd ABAW Annotations``, ``5th_ABAW_Annotations``, ``Third ABAW Annotations``), else from its task-folder
layout (:func:`affectlab.data.abaw.detect_layout`): ``{EXPR,VA,AU}_Set/Training_Set`` is the 1st ABAW,
``.../Train_Set`` the 2nd, ``EXPR_Classification_Challenge`` the 3rd-5th, ``EXPR_Recognition_Challenge`` the 6th
or later, multi-task files alone a multi-task release (the s-Aff-Wild2 of the 4th and 7th ABAW: sampled frames,
no consecutive ones).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from affectlab.labels import AUS_ABAW, AUS_ABAW2020, EXPRESSIONS, EXPRESSIONS_8

_SET = {"EXPR": "EXPR_Set", "VA": "VA_Set", "AU": "AU_Set"}
_CHALLENGE = {"EXPR": "EXPR_Classification_Challenge", "VA": "VA_Estimation_Challenge",
              "AU": "AU_Detection_Challenge"}
_CHALLENGE_6 = {**_CHALLENGE, "EXPR": "EXPR_Recognition_Challenge"}


@dataclass(frozen=True)
class Edition:
    """One ABAW edition's Aff-Wild2 release as its archives unzip.

    ``number`` is the ABAW's ordinal (0 when only the layout is known), ``year`` the year its scores are
    computed for (``affectlab.metrics``' ``year=``), ``layout`` the reader's layout key, ``annotations`` the
    top folder of the annotation archive, ``tasks`` / ``splits`` the task and split folder names (empty for
    multi-task-only releases), ``multitask`` the multi-task files the release ships (path relative to
    ``annotations``), ``images`` the image folders."""
    number: int
    year: int
    layout: str
    annotations: str
    tasks: dict
    splits: dict
    classes: tuple[str, ...]
    aus: tuple[str, ...]
    multitask: tuple[str, ...] = ()
    images: tuple[str, ...] = ("cropped_aligned",)

    @property
    def name(self) -> str:
        if not self.number:
            return {"2020": "1st ABAW layout (2020)", "2021": "2nd ABAW layout (2021)",
                    "2022": "3rd-5th ABAW layout (2022-2023)", "2024": "6th ABAW or later layout (2024+)",
                    "mtl": "multi-task release (3rd ABAW or later)"}[self.layout]
        return f"{ordinal(self.number)} ABAW ({self.year})"

    @property
    def consecutive_frames(self) -> bool:
        """Whether the release holds every frame of its videos (per-video files), as FC-S's clips and the
        temporal model's sequences need; the multi-task-only releases hold sampled frames."""
        return self.layout != "mtl"

    def record(self) -> dict:
        """What a run's metric records say about the data it read."""
        return {"edition": self.name, "edition_year": self.year, "edition_number": self.number or None}


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


_TRAIN_VAL = {"train": "Train_Set", "val": "Validation_Set"}
_MTL_3 = ("MTL_Challenge/train_set.txt", "MTL_Challenge/validation_set.txt")
_MTL_S = ("training_set_annotations.txt", "validation_set_annotations.txt")

# The releases, as the organisers' archives unzip (the public loaders of ABAW teams read these names). The top
# folders of the 4th, 7th and 9th-11th editions are inferred from their neighbours' naming, not seen in a public
# loader: `detect` also recognises any `<N>th ABAW Annotations` / `<N>th_ABAW_Annotations` by its number and
# falls back to the task-folder layout, so another spelling of these still reads.
EDITIONS: dict[int, Edition] = {e.number: e for e in (
    Edition(1, 2020, "2020", "annotations", _SET, {"train": "Training_Set", "val": "Validation_Set"},
            EXPRESSIONS, AUS_ABAW2020),
    Edition(2, 2021, "2021", "annotations", _SET, _TRAIN_VAL, EXPRESSIONS, AUS_ABAW),
    Edition(3, 2022, "2022", "3rd ABAW Annotations", _CHALLENGE, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW, _MTL_3),
    Edition(4, 2022, "mtl", "4th ABAW Annotations", {}, {}, EXPRESSIONS_8, AUS_ABAW, _MTL_S),
    Edition(5, 2023, "2022", "5th_ABAW_Annotations", _CHALLENGE, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW,
            images=("cropped_aligned_images/cropped_aligned", "cropped_aligned_images/cropped_aligned_new_50_vids")),
    Edition(6, 2024, "2024", "6th ABAW Annotations", _CHALLENGE_6, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
    Edition(7, 2024, "mtl", "7th ABAW Annotations", {}, {}, EXPRESSIONS_8, AUS_ABAW, _MTL_S),
    Edition(8, 2025, "2024", "8th_ABAW_Annotations", _CHALLENGE_6, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
    Edition(9, 2025, "2024", "9th_ABAW_Annotations", _CHALLENGE_6, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
    Edition(10, 2026, "2024", "10th_ABAW_Annotations", _CHALLENGE_6, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
    Edition(11, 2026, "2024", "11th_ABAW_Annotations", _CHALLENGE_6, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
)}

# Without a numbered top folder: what the task-folder layout says (the first edition that used it).
_BY_LAYOUT = {
    "2020": EDITIONS[1], "2021": EDITIONS[2],
    "2022": Edition(0, 2022, "2022", "", _CHALLENGE, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
    "2024": Edition(0, 2024, "2024", "", _CHALLENGE_6, _TRAIN_VAL, EXPRESSIONS_8, AUS_ABAW),
    "mtl": Edition(0, 2022, "mtl", "", {}, {}, EXPRESSIONS_8, AUS_ABAW),
}

_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
          "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12}
_TOP = re.compile(r"^(?:(\d+)(?:st|nd|rd|th)|(" + "|".join(_WORDS) + r"))[ _-]*abaw(?:[ _-].*)?$", re.I)


def number_of(folder_name: str) -> int | None:
    """The ABAW number a folder's name gives (``6th ABAW Annotations``, ``8th_ABAW_Annotations``,
    ``Third ABAW Annotations``), or None."""
    m = _TOP.match(folder_name.strip())
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else _WORDS[m.group(2).lower()]


def for_number(n: int) -> Edition:
    """The edition of the ``n``-th ABAW; an edition after the last one known is taken as the last one's
    release (8 classes, 12 AUs, the 6th ABAW's folder names), scored as its year."""
    if n in EDITIONS:
        return EDITIONS[n]
    if n < 1:
        raise ValueError(f"no {n}th ABAW: the editions are numbered from 1 (2020)")
    last = EDITIONS[max(EDITIONS)]
    year = last.year + (n - last.number + 1) // 2        # two ABAWs a year since the 3rd
    return Edition(n, year, "2024", f"{ordinal(n)}_ABAW_Annotations", last.tasks, last.splits, last.classes, last.aus)


def for_year(year: int) -> Edition:
    """The first edition of ``year`` (``--edition 2025`` is the 8th ABAW)."""
    found = [e for e in EDITIONS.values() if e.year == year]
    if not found:
        raise ValueError(f"no ABAW edition in {year}: the editions run from {EDITIONS[1].year} to "
                         f"{EDITIONS[max(EDITIONS)].year} ({', '.join(f'{e.year} {e.name}' for e in EDITIONS.values())})")
    return min(found, key=lambda e: e.number)


def detect(annotation_folder: Path, layout: str) -> Edition:
    """The edition of the release whose task folders (or multi-task files) are in ``annotation_folder``:
    the number of the nearest enclosing folder named like ``<N>th ABAW Annotations``, else the layout's."""
    for p in (annotation_folder, *list(annotation_folder.parents)[:3]):
        n = number_of(p.name)
        if n is not None:
            e = for_number(n)
            if e.layout != layout and not (e.layout == "mtl" or layout == "mtl"):
                # A renamed top folder over another edition's task folders: the folders decide how to read,
                # the number how to score (the classes come from the files' headers either way).
                return Edition(e.number, e.year, layout, e.annotations, _BY_LAYOUT[layout].tasks,
                               _BY_LAYOUT[layout].splits, e.classes, e.aus, e.multitask, e.images)
            return e
    return _BY_LAYOUT[layout]


@dataclass(frozen=True)
class LabelSpace:
    """The expression classes a recipe trains on one release: ``classes`` (names, index = label), the
    ``year`` its score uses, and whether ``Other`` was dropped by the ``expr_classes=7`` setting."""
    classes: tuple[str, ...]
    year: int
    edition: str
    dropped_other: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def record(self) -> dict:
        return {"edition": self.edition, "edition_year": self.year, "classes": list(self.classes),
                "outputs": self.n_classes}


def label_space(edition: Edition, expr_classes: int | None = None) -> LabelSpace:
    """The classes trained on ``edition``'s release: all of its classes (``expr_classes=None``), or the 7
    without ``Other`` (``expr_classes=7``: the 2020 task on a later release, scored with the 2020 formula —
    its numbers do not stand beside that edition's leaderboard)."""
    if expr_classes is None or expr_classes == len(edition.classes):
        return LabelSpace(edition.classes, edition.year, edition.name)
    if expr_classes == len(EXPRESSIONS) and len(edition.classes) == len(EXPRESSIONS_8):
        return LabelSpace(EXPRESSIONS, 2020, edition.name, dropped_other=True)
    raise ValueError(f"expr_classes={expr_classes}: {edition.name} labels {len(edition.classes)} classes "
                     f"({', '.join(edition.classes)}); train them all (expr_classes=None) or, on an 8-class "
                     "release, the 7 without Other (expr_classes=7)")


# --- the label space a run trains, carried in its settings ---------------------------------------------------

COURSE_DEFAULT = LabelSpace(EXPRESSIONS, 2020, "1st ABAW layout (2020)")


def settings_labels(space: LabelSpace) -> dict:
    """``space`` as the ``labels`` entry of a run's settings (printable, JSON, part of every cache key)."""
    return {**space.record(), "dropped_other": space.dropped_other}


def space_of(S: dict) -> LabelSpace:
    """The label space recorded in settings ``S`` (``recipes.start`` and ``affectlab.fit`` resolve it from the
    data root); settings made without a data root train the course world's 7 classes."""
    lab = S.get("labels")
    if not lab:
        return COURSE_DEFAULT
    return LabelSpace(tuple(lab["classes"]), int(lab["edition_year"]), lab["edition"], bool(lab["dropped_other"]))


def fit_labels(df, space: LabelSpace, head: str, column: str = "expr"):
    """``df``'s expression labels made trainable by ``head`` (``space.n_classes`` outputs), before any training:
    ``Other`` frames dropped (``expr_classes=7``; counted in ``df.attrs["dropped"]``) — or, in a multi-task
    frame table whose rows carry other tasks' labels, their expression marked unlabelled (-1) — and any other
    label the head cannot take refused with the file, the label and the head named."""
    import numpy as np

    y = df[column].to_numpy()
    n_other = int((y == EXPRESSIONS_8.index("Other")).sum()) if space.dropped_other else 0
    if n_other:
        attrs = dict(df.attrs)
        other = y == EXPRESSIONS_8.index("Other")
        multitask = any(c in df for c in ("valence", "arousal"))
        df = df.copy()
        if multitask:
            df.loc[other, column] = -1
        else:
            df = df[~other].reset_index(drop=True)
        df.attrs = attrs
        df.attrs["dropped"] = {**attrs.get("dropped", {}), "class Other (expr_classes=7)": n_other}
        y = df[column].to_numpy()
    bad = np.flatnonzero(y >= space.n_classes)
    if len(bad):
        i = bad[0]
        src = Path(df.attrs.get("sources", {}).get("EXPR", "the expression annotations"))
        file = src / f"{df['video'].iloc[i]}.txt" if src.is_dir() else src
        names = EXPRESSIONS_8 if y[i] < len(EXPRESSIONS_8) else ()
        raise ValueError(
            f"{file}: label {y[i]}{f' ({names[y[i]]})' if names else ''} (video {df['video'].iloc[i]}, frame "
            f"{df['frame'].iloc[i]}; {len(bad)} such frame(s)) cannot be trained by {head}, which has "
            f"{space.n_classes} outputs ({', '.join(space.classes)}). The settings' labels ({space.edition}) do not "
            "match this release: build the settings with its data root (recipes.start / affectlab.fit do), or "
            "set expr_classes=7 to drop Other.")
    return df, n_other


def dropped_note(space: LabelSpace, n_other: int, what: str = "frames") -> str | None:
    """The line a run prints when ``expr_classes=7`` dropped ``Other``."""
    if not space.dropped_other:
        return None
    return (f"expr_classes=7: {n_other} Other {what} of {space.edition} left out (the 2020 task; scored with the "
            "2020 formula, not beside this edition's leaderboard)")


def for_outputs(n: int) -> LabelSpace:
    """The label space of an ``n``-output expression head when no settings say more: 7 outputs are the
    2020 task, 8 the 3rd ABAW's and later (scored over 8 classes)."""
    if n == len(EXPRESSIONS):
        return COURSE_DEFAULT
    if n == len(EXPRESSIONS_8):
        return LabelSpace(EXPRESSIONS_8, 2022, "an 8-class release (3rd ABAW or later)")
    raise ValueError(f"an expression head of {n} outputs: the ABAW editions label 7 or 8 classes")


def require_consecutive_frames(df, model: str, need: str) -> None:
    """Refuse a multi-task-only release (sampled frames) for ``model``, which needs ``need`` (e.g. "10-frame
    clips of consecutive frames"): saying why and what to point ``data_root`` at instead."""
    edition = df.attrs.get("edition")
    if edition is None or edition.consecutive_frames:
        return
    source = next(iter(df.attrs.get("sources", {}).values()), "the multi-task annotation file")
    raise ValueError(
        f"{source}: {model} needs {need}, but this is a multi-task release ({edition.name}): its files label "
        "sampled frames of each video, not consecutive ones (as s-Aff-Wild2 of the 4th and 7th ABAW). Point "
        "data_root at a release with per-video annotation files (the EXPR and VA tracks: EXPR_Set / "
        "EXPR_Classification_Challenge / EXPR_Recognition_Challenge with VA_Set / VA_Estimation_Challenge), or "
        "train a frame model (FaceChannel, SE-ResNet-50, SCAN+CCI) on this one.")
