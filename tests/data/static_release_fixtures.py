"""Small trees in the layouts the real AffectNet, RAF-DB, ExpW and Hume-Reaction archives unzip to.

Formats as the public releases distribute them (not as the course's synthetic writer does):

- AffectNet (2017 release): ``Manually_Annotated_file_lists/training.csv`` with the header
  ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal``,
  ``validation.csv`` with the same columns and no header; landmarks are 136 ``;``-separated numbers; images
  ``Manually_Annotated/Manually_Annotated_Images/<number>/<sha1-like name>.jpg``; classes 0-10, valence /
  arousal -2 for None / Uncertain / Non-Face.
- AffectNet (newer release): ``{train,val}_set/images/<n>.jpg`` and ``{train,val}_set/annotations/<n>_exp.npy``
  (a numeric string, e.g. ``array('1', dtype='<U1')``), ``<n>_val.npy``, ``<n>_aro.npy``, ``<n>_lnd.npy``.
- RAF-DB: ``basic/EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5`` per line; test names have 4
  digits), ``basic/Image/aligned/train_00001_aligned.jpg``, ``basic/Image/original/train_00001.jpg``; the
  compound set ``compound/EmoLabel/list_patition_label.txt`` has labels 1-11.
- ExpW: ``data/label/label.lst`` (``image_name face_id top left right bottom confidence label``),
  ``data/image/origin/<image_name>``.
- Hume-Reaction: ``data_info.csv`` (``File_ID,Split,Adoration,...,Surprise``, ids bracketed ``[00001]``,
  Test rows unlabelled) and one folder of frames per video.

Each writer returns the folder a user would pass as ``data_root`` and documents, line by line, what the
reader must keep and drop; the tests assert exactly that.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from affectlab.labels import REACTIONS

from data_fixtures import jpg

AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal")


def _landmarks(x0: float, y0: float) -> str:
    return ";".join(f"{x0 + (i % 17) * 1.5:.2f};{y0 + (i // 17) * 2.25:.2f}" for i in range(68))


def _sha(i: int) -> str:
    return f"{i:08x}" + "b6b61b84363ca737db2483489148d783ef278f43"[: 48 - 8]


# (sub/file, x, y, w, h, expression, valence, arousal, write the image?) -> line of training.csv
AFFECTNET_TRAIN = [
    ("689/" + _sha(1) + ".jpg", 2, 3, 20, 20, "0", "0.031746", "-0.031746", True),    # 2 kept: Neutral
    ("689/" + _sha(2) + ".jpg", 4, 4, 24, 24, "1", "0.785714", "-0.055556", True),    # 3 kept: Happy -> Happiness
    ("1021/" + _sha(3) + ".png", 0, 0, 30, 30, "7", "-0.5", "0.3", True),              # 4 Contempt: dropped
    ("1021/" + _sha(4) + ".jpg", 0, 0, 30, 30, "8", "-2", "-2", True),                 # 5 None: dropped
    ("1021/" + _sha(5) + ".jpg", 0, 0, 30, 30, "9", "-2", "-2", True),                 # 6 Uncertain: dropped
    ("1021/" + _sha(6) + ".jpg", 0, 0, 30, 30, "10", "-2", "-2", True),                # 7 Non-Face: dropped
    ("1021/" + _sha(7) + ".jpg", 0, 0, 30, 30, "6", "1.7", "0.2", True),               # 8 valence 1.7: dropped
    ("1021/" + _sha(8) + ".jpg", 0, 0, 30, 30, "2", "nan", "0.2", True),               # 9 valence nan: dropped
    ("1021/" + _sha(9) + ".jpg", 0, 0, 30, 30, "3", "0.2", "", True),                  # 10 arousal empty: dropped
    ("1021/" + _sha(10) + ".jpg", 0, 0, 30, 30, "4", "0.2", "0.2", False),             # 11 image missing
    ("2/" + _sha(11) + ".jpg", 1, 1, 30, 30, "5", "-2", "-2", True),                   # 12 kept: Disgust, VA n/a
]
AFFECTNET_VAL = [                                                                        # no header: line 1 = row 1
    ("40/" + _sha(21) + ".jpg", 5, 6, 20, 10, "0", "0.1", "0.2", True),                # 1 kept: Neutral
    ("40/" + _sha(22) + ".jpg", 0, 0, 30, 30, "6", "-0.7", "0.6", True),               # 2 kept: Anger
    ("40/" + _sha(23) + ".jpg", 0, 0, 30, 30, "1", "0.4", "-1.2", True),               # 3 arousal -1.2: dropped
]


def affectnet_2017(root: Path, top: str = "AffectNet", images: str = "Manually_Annotated") -> Path:
    """``root/<top>/Manually_Annotated_file_lists/{training,validation}.csv`` and
    ``root/<top>/<images>/Manually_Annotated_Images/...``; returns ``root``."""
    base = root / top if top else root
    lists = base / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for name, rows, header in (("training.csv", AFFECTNET_TRAIN, True), ("validation.csv", AFFECTNET_VAL, False)):
        lines = [AFFECTNET_HEADER] if header else []
        for sub, x, y, w, h, e, v, a, write in rows:
            lines.append(f"{sub},{x},{y},{w},{h},{_landmarks(x, y)},{e},{v},{a}")
            if write:
                jpg(base / images / "Manually_Annotated_Images" / sub, size=(40, 40))
        (lists / name).write_text("\r\n".join(lines) + "\r\n")   # the release's files have CRLF line ends
    return root


# id -> (expression, valence, arousal, write the image?, how the expression file is stored)
AFFECTNET_NPY_TRAIN = {
    "0": ("1", "0.785714", "-0.055556", True, "str"),     # kept: Happiness
    "2": ("6", "-0.6", "0.7", True, "str"),               # kept: Anger
    "10": ("0", 0.05, -0.1, True, "float"),               # kept: Neutral (numbers stored as floats)
    "3": ("7", "-0.4", "0.2", True, "str"),               # Contempt: dropped
    "4": ("3", "0.1", "0.1", True, "object"),             # a pickled object array: refused, dropped
    "5": ("4", "1.7", "0.1", True, "str"),                # valence 1.7: dropped
    "6": ("5", "-0.2", "0.3", False, "str"),              # image missing
}
AFFECTNET_NPY_VAL = {
    "100": ("2", "-0.3", "0.1", True, "str"),             # kept: Sadness
    "101": ("3", "0.2", "0.8", True, "str"),              # kept: Surprise
}


def affectnet_2021(root: Path, top: str = "AffectNet") -> Path:
    """``root/<top>/{train,val}_set/{images,annotations}``; returns ``root``."""
    for set_name, rows in (("train_set", AFFECTNET_NPY_TRAIN), ("val_set", AFFECTNET_NPY_VAL)):
        d = root / top / set_name
        (d / "annotations").mkdir(parents=True, exist_ok=True)
        for n, (e, v, a, write, kind) in rows.items():
            if kind == "object":
                np.save(d / "annotations" / f"{n}_exp.npy", np.array([e], dtype=object), allow_pickle=True)
            elif kind == "float":
                np.save(d / "annotations" / f"{n}_exp.npy", np.array(float(e)))
            else:
                np.save(d / "annotations" / f"{n}_exp.npy", np.array(e))
            np.save(d / "annotations" / f"{n}_val.npy", np.array(v))
            np.save(d / "annotations" / f"{n}_aro.npy", np.array(a))
            np.save(d / "annotations" / f"{n}_lnd.npy", np.linspace(0, 224, 136))
            if write:
                jpg(d / "images" / f"{n}.jpg", size=(32, 32))
    return root


# RAF-DB basic: name -> (label, write the image?)
RAFDB_BASIC = [
    ("train_00001.jpg", 1, True),    # line 1: Surprise
    ("train_00002.jpg", 4, True),    # line 2: Happiness
    ("train_00003.jpg", 7, True),    # line 3: Neutral
    ("train_00004.jpg", 5, False),   # line 4: image missing
    ("test_0001.jpg", 2, True),      # line 5: Fear
    ("test_0002.jpg", 6, True),      # line 6: Anger
]


def rafdb_basic(root: Path, folder: str = "basic", images: str = "Image/aligned") -> Path:
    """``root/<folder>/EmoLabel/list_patition_label.txt`` and the images in ``root/<folder>/<images>``
    (``*_aligned.jpg`` in an aligned folder, the plain names in ``Image/original``); returns ``root``."""
    base = root / folder if folder else root
    (base / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (base / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab, _ in RAFDB_BASIC))
    for n, _, write in RAFDB_BASIC:
        if write:
            stem = n.rsplit(".", 1)[0]
            jpg(base / images / (n if images.endswith("original") else f"{stem}_aligned.jpg"), size=(20, 20))
    return root


def rafdb_compound(root: Path) -> Path:
    """``root/compound/EmoLabel/list_patition_label.txt`` with labels 1-11; returns ``root``."""
    base = root / "compound"
    (base / "EmoLabel").mkdir(parents=True, exist_ok=True)
    names = [f"train_{i:04d}.jpg" for i in range(1, 12)] + ["test_0001.jpg"]
    labels = list(range(1, 12)) + [3]
    (base / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in zip(names, labels)))
    for n in names:
        jpg(base / "Image" / "aligned" / f"{n[:-4]}_aligned.jpg", size=(20, 20))
    return root


# ExpW label.lst lines (image_name face_id top left right bottom confidence label); by CRC32 hash
# neutral_face_4 and smiling_woman_5 are val, the others train.
EXPW_LINES = [
    "angry_actor_104.jpg 0 10 20 60 50 0.93 0",       # 1 train: Anger, box l=20 t=10 r=60 b=50
    "angry_actor_104.jpg 1 12 70 110 52 0.88 3",      # 2 train: Happiness
    "happy_family_21.jpg 0 5 5 45 45 0.99 3",         # 3 train: Happiness
    "happy_family_21.jpg 1 5 50 90 45 0.71 3",        # 4 conflicts with line 9: both dropped
    "angry_actor_104.jpg 0 10 20 60 50 0.93 0",       # 5 duplicate of line 1: dropped
    "sad_boy_7.jpg 0 5 5 40 40 0.9 4",                # 6 image missing
    "surprised_girl_33.jpg 0 30 30 30 60 0.5 5",      # 7 empty box (right = left): dropped
    "surprised_girl_33.jpg 1 10 10 50 50 0.8 5",      # 8 train: Surprise
    "happy_family_21.jpg 1 5 50 90 45 0.71 4",        # 9 conflicts with line 4
    "neutral_face_4.jpg 0 4 4 44 44 0.97 6",          # 10 val: Neutral
    "smiling_woman_5.jpg 0 8 8 48 48 0.95 3",         # 11 val: Happiness
]


def expw(root: Path, top: str = "ExpW", data: str = "data", images: str = "image/origin", lines=None) -> Path:
    """``root/<top>/<data>/label/label.lst`` and ``root/<top>/<data>/<images>/``; returns ``root``."""
    lines = EXPW_LINES if lines is None else lines
    base = root / top / data if data else root / top
    (base / "label").mkdir(parents=True, exist_ok=True)
    (base / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    for name in sorted({ln.split()[0] for ln in lines if ln.split()}):
        if name != "sad_boy_7.jpg":
            jpg(base / images / name, size=(120, 80))
    return root


# Hume-Reaction data_info.csv rows: (File_ID, Split, 7 values or None (empty), frame names)
_V = [0.12, 0.05, 0.3, 0.0, 0.41, 1.0, 0.27]
HUME_ROWS = [
    ("00001", "Train", _V, [f"frame_{i}.jpg" for i in range(1, 13)]),   # line 2 kept, 12 frames
    ("00002", "Train", [0.1, 1.7, 0, 0, 0, 0, 0], ["00001.jpg"]),       # line 3 1.7: dropped
    ("00003", "Train", [0.1, 0, 0, -3, 0, 0, 0], ["00001.jpg"]),        # line 4 -3: dropped
    ("00004", "Val", [0.5] * 7, ["00001.jpg", "00002.jpg", "00003.jpg"]),   # line 5 kept
    ("00005", "Test", None, ["00001.jpg"]),                             # line 6 Test (unlabelled): skipped
    ("00006", "Train", [0.2] * 7, []),                                  # line 7 no frames: dropped
    ("00001", "Train", [0.9] * 7, []),                                  # line 8 id twice: dropped
    ("00007", "Val", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [f"frame_{i}.jpg" for i in (2, 10, 1)]),  # line 9 kept
]


def hume_release(root: Path, top: str = "Hume-Reaction", rows=None) -> Path:
    """``root/<top>/data_info.csv`` and ``root/<top>/<id>/<frame>``; returns ``root``."""
    rows = HUME_ROWS if rows is None else rows
    base = root / top
    base.mkdir(parents=True, exist_ok=True)
    lines = ["File_ID,Split," + ",".join(REACTIONS)]
    for vid, split, vals, frames in rows:
        cells = [""] * len(REACTIONS) if vals is None else [str(v) for v in vals]
        lines.append(f"[{vid}],{split}," + ",".join(cells))
        for f in frames:
            jpg(base / vid / f, size=(8, 8))
    (base / "data_info.csv").write_text("\n".join(lines) + "\n")
    return root
