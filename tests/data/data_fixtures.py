"""Writers of small fixture trees in the real datasets' formats (used by the tests in this folder)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from affectlab.labels import AUS_ABAW, EXPRESSIONS, REACTIONS


def jpg(path: Path, color=(120, 80, 60), size=(24, 24)) -> Path:
    """A small solid-colour JPEG (``color`` is RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[:] = color[::-1]
    cv2.imwrite(str(path), img)
    return path


def abaw_2020(root: Path, split="Training_Set", videos=None, images=None, tasks=("EXPR", "VA", "AU")) -> Path:
    """Aff-Wild2 ABAW 2020 layout. ``videos``: {name: n_frames}; ``images``: {name: frames with an image}
    (default: all). Labels: expr = frame % 7, VA = (0.1, -0.1), AU1 = frame % 2, other AUs 0."""
    videos = videos or {"v1": 5}
    for name, n in videos.items():
        for f in (images or {}).get(name, range(1, n + 1)):
            jpg(root / "cropped_aligned" / name / f"{f:05d}.jpg")
        text = {
            "EXPR": ",".join(EXPRESSIONS) + "\n" + "".join(f"{f % 7}\n" for f in range(1, n + 1)),
            "VA": "valence,arousal\n" + "".join("0.1,-0.1\n" for _ in range(n)),
            "AU": ",".join(AUS_ABAW) + "\n" + "".join(",".join([str(f % 2)] + ["0"] * 11) + "\n" for f in range(1, n + 1)),
        }
        for task in tasks:
            d = root / "annotations" / f"{task}_Set" / split
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{name}.txt").write_text(text[task])
    return root


def write_ann(root: Path, task: str, video: str, text: str, split="Training_Set", layout="2020") -> Path:
    folder = f"{task}_Set" if layout == "2020" else {"EXPR": "EXPR_Classification_Challenge",
                                                     "VA": "VA_Estimation_Challenge", "AU": "AU_Detection_Challenge"}[task]
    d = root / "annotations" / folder / split
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{video}.txt").write_text(text)
    return d / f"{video}.txt"


def hume(root: Path, rows, frames=None) -> Path:
    """``rows``: (id, split, 7 values or None); ``frames``: {id: n frames} (default 3)."""
    lines = ["File_ID,Split," + ",".join(REACTIONS)]
    for vid, split, vals in rows:
        vals = vals if vals is not None else [0.1] * 7
        lines.append(f"[{vid}],{split}," + ",".join("" if v is None else str(v) for v in vals))
        for f in range((frames or {}).get(vid, 3)):
            jpg(root / vid / f"{f + 1:05d}.jpg")
    root.mkdir(parents=True, exist_ok=True)
    (root / "data_info.csv").write_text("\n".join(lines) + "\n")
    return root
