"""Label spaces of the course and every dataset's map into them.

One table per dataset maps its raw label to the canonical index of ``EXPRESSIONS`` (the Aff-Wild2 order)
or to ``None`` (the sample is dropped for the 7-class task). Invalid-label sentinels follow Aff-Wild2's own
files, so a label read from disk keeps its meaning all the way into a batch: the losses and metrics mask
them instead of zero-filling.
"""
from __future__ import annotations

from typing import Mapping

EXPRESSIONS: tuple[str, ...] = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
EXPRESSIONS_8: tuple[str, ...] = EXPRESSIONS + ("Other",)  # ABAW 2022+; the 7-class tasks drop "Other"

AUS_ABAW: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
AUS_ABAW2020: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")
AUS_17: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU11", "AU12",
    "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26",
)
REACTIONS: tuple[str, ...] = ("Adoration", "Amusement", "Anxiety", "Disgust", "Empathic-Pain", "Fear", "Surprise")
# Hume-Vidmimic2 (the emotional-mimicry-intensity challenge, 6th and 8th ABAW): the six intensities of its split
# files, spelt as their headers are (a space in "Empathic Pain", where Hume-Reaction writes "Empathic-Pain").
MIMICRY_EMOTIONS: tuple[str, ...] = ("Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy")

# Sentinels of the Aff-Wild2 annotation files: expression -1, valence/arousal -5, AU -1.
INVALID_EXPR = -1
INVALID_VA = -5.0
INVALID_AU = -1

# Du, Tao & Martinez (PNAS 2014), Table 1: prototypical AUs (always active) and observational AUs with the
# share of people who show them. FaceRNET's distribution-matching loss and the synthetic world both use it.
EXPRESSION_AUS: dict[str, dict[str, object]] = {
    "Neutral": {"prototypical": (), "observational": {}},
    "Anger": {"prototypical": ("AU4", "AU7", "AU24"), "observational": {"AU10": 0.26, "AU17": 0.52, "AU23": 0.29}},
    "Disgust": {"prototypical": ("AU9", "AU10", "AU17"), "observational": {"AU4": 0.31, "AU24": 0.26}},
    "Fear": {"prototypical": ("AU1", "AU4", "AU20", "AU25"), "observational": {"AU2": 0.57, "AU5": 0.63, "AU26": 0.33}},
    "Happiness": {"prototypical": ("AU12", "AU25"), "observational": {"AU6": 0.51}},
    "Sadness": {"prototypical": ("AU4", "AU15"), "observational": {"AU1": 0.60, "AU6": 0.50, "AU11": 0.26, "AU17": 0.67}},
    "Surprise": {"prototypical": ("AU1", "AU2", "AU25", "AU26"), "observational": {"AU5": 0.66}},
}


def au_given_expression(aus: tuple[str, ...] = AUS_17) -> "list[list[float]]":
    """P(AU active | expression) as a len(EXPRESSIONS) x len(aus) table: 1 for prototypical AUs, the
    observed share for observational ones, 0 otherwise."""
    table = []
    for expr in EXPRESSIONS:
        entry = EXPRESSION_AUS[expr]
        row = []
        for au in aus:
            if au in entry["prototypical"]:
                row.append(1.0)
            else:
                row.append(float(entry["observational"].get(au, 0.0)))
        table.append(row)
    return table


# Raw label -> canonical index (None = dropped). Each dataset's own order, as its documentation gives it.
_AFFECTNET: Mapping[int, int | None] = {
    0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1,   # Neutral Happy Sad Surprise Fear Disgust Anger
    7: None, 8: None, 9: None, 10: None,        # Contempt, None, Uncertain, No-Face
}
_RAFDB: Mapping[int, int | None] = {1: 6, 2: 3, 3: 2, 4: 4, 5: 5, 6: 1, 7: 0}
_EXPW: Mapping[int, int | None] = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 0}
_FER2013: Mapping[int, int | None] = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 0}  # Goodfellow et al. 2013
_AFFWILD2: Mapping[int, int | None] = {-1: None, 0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: None}  # 7 = Other

LABEL_MAPS: dict[str, Mapping[int, int | None]] = {
    "affwild2": _AFFWILD2,
    "affectnet": _AFFECTNET,
    "rafdb": _RAFDB,
    "expw": _EXPW,
    "fer2013": _FER2013,
}

# The raw labels of each dataset, in the dataset's own order (used by the synthetic world's writers).
RAW_NAMES: dict[str, dict[int, str]] = {
    "affectnet": {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Anger",
                  7: "Contempt", 8: "None", 9: "Uncertain", 10: "No-Face"},
    "rafdb": {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happiness", 5: "Sadness", 6: "Anger", 7: "Neutral"},
    "expw": {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"},
    # FER2013 (Kaggle/ICML 2013 challenge) and every model trained on it, e.g. the real-face model (realface)
    "fer2013": {0: "Angry", 1: "Disgust", 2: "Fear", 3: "Happy", 4: "Sad", 5: "Surprise", 6: "Neutral"},
}


def to_canonical(dataset: str, raw_label: int) -> int | None:
    """Map ``raw_label`` of ``dataset`` to its ``EXPRESSIONS`` index, or None when the 7-class task drops it.

    Raises ValueError for an unknown dataset or a label outside the dataset's label space (a corrupt file,
    not a sample to drop silently).
    """
    try:
        table = LABEL_MAPS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(LABEL_MAPS)}") from None
    try:
        key = int(raw_label)
    except (TypeError, ValueError):
        raise ValueError(f"{dataset}: label {raw_label!r} is not an integer") from None
    if key != raw_label and not (isinstance(raw_label, str) and str(key) == raw_label.strip()):
        raise ValueError(f"{dataset}: label {raw_label!r} is not an integer")
    if key not in table:
        raise ValueError(f"{dataset}: label {raw_label!r} is outside the label space {sorted(table)}")
    return table[key]


def from_canonical(dataset: str, index: int) -> int:
    """The dataset's raw label for canonical ``index`` (inverse of ``to_canonical`` on kept labels)."""
    for raw, canon in LABEL_MAPS[dataset].items():
        if canon == index and raw >= 0:
            return raw
    raise ValueError(f"{dataset}: no raw label maps to {EXPRESSIONS[index]!r}")
