"""The floors a chapter asserts: the least a model that learnt the faces reaches, on every seed and machine.

A chapter ends with ``assert_floors(name, figures, FLOORS[...])``. The floors are not tuned to one run: each
sits below the worst of the runs measured by ``python -m affectlab.spread`` (training seeds 0-2, default threads
and ``OMP_NUM_THREADS=1``; ``benchmarks/seed_spread.md`` gives each margin beside the spread between the runs,
and the README names the margins thinner than that spread), and above what a model that learnt nothing
scores (chance, an untrained network, shuffled labels — the tests check that such models fail them).
Comparisons between models ("A beats B") are not floors: one seed cannot decide them, so chapters show them
as results.
"""
from __future__ import annotations

from typing import Mapping

FLOORS: dict[str, dict[str, float]] = {
    # Chapter 03, the joint FaceChannel (FC) and FaceChannelS (FC-S): a uniform guess has accuracy 1/7 and
    # a prior-guess macro-F1 of about 0.15 (shuffled labels: 0.12-0.17); an untrained network has CCC near 0.
    # No valence floor: shuffled labels reach CCC 0.07 (tests/model/test_floors.py), and the quick joint FC's
    # valence CCC measured 0.01-0.25 over seeds 0-2 and both thread counts; FC-S reads FC's frozen features,
    # so its valence follows FC's (-0.03-0.26 in the same six runs).
    "facechannel": {"f1": 0.18, "accuracy": 0.20, "ccc_arousal": 0.10},
    "facechannel_frame": {"f1": 0.18, "accuracy": 0.20, "ccc_arousal": 0.10},
    # Chapter 07: mean Pearson ρ over the 7 reactions; predicting the mean (or any constant) scores 0.
    "facernet": {"pearson": 0.15},
    # Chapter 08: REC and SCAN+CCI expression macro-F1; chance (metrics.chance_f1, the best face-blind
    # guess) scores about 0.13-0.15 on its validation sample.
    "gradcam": {"f1": 0.15},
}


def floor_failures(figures: Mapping[str, float], floors: Mapping[str, float]) -> list[str]:
    """The floors ``figures`` misses, as readable lines ('f1 0.124 < 0.18'); a missing figure is a miss."""
    out = []
    for metric, floor in floors.items():
        value = figures.get(metric)
        if value is None:
            out.append(f"{metric} missing (floor {floor})")
        elif not value >= floor:  # NaN fails too
            out.append(f"{metric} {value:.3f} < {floor}")
    return out


def assert_floors(name: str, figures: Mapping[str, float], floors: Mapping[str, float]) -> None:
    """Raise ``AssertionError`` naming every floor ``name`` misses (a model that learnt nothing)."""
    missed = floor_failures(figures, floors)
    if missed:
        raise AssertionError(f"{name} learnt too little: " + "; ".join(missed))
