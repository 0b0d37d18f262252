"""The synthetic Hume-Reaction corpus: labels are peak-end self-reports of what happens in the clip, not
means normalised by its length; clips span tens to hundreds of frames; every reaction occurs often enough."""
import numpy as np
import pytest

from affectlab.data import synth
from affectlab.data.hume import read_hume
from affectlab.labels import REACTIONS


def test_peak_end_neglects_duration():
    burst = np.r_[np.zeros(10), np.hanning(30) * 0.8, np.zeros(10)]
    short, long_ = burst, np.r_[np.zeros(400), burst]          # the same moment, closing a short and a long clip
    assert synth.peak_end(short) == pytest.approx(synth.peak_end(long_))
    assert np.mean(long_) < np.mean(short) / 5                  # a length-normalised mean would say otherwise
    early = np.r_[burst, np.zeros(400)]                         # the same moment long before the end: peak only
    assert synth.peak_end(early) == pytest.approx(0.4, abs=0.01)
    assert synth.peak_end(long_) > synth.peak_end(early) + 0.25   # ... but a moment close to the end weighs more
    with pytest.raises(ValueError, match="empty"):
        synth.peak_end(np.zeros(0))


def _jobs(preset: str, seed: int = 0):
    rng = synth._rng(seed, 99, 0)
    p = synth.PRESETS[preset]
    synth._plan_affwild(rng, p, dict(synth.KNOBS), seed, "/nonexistent")   # the draws made before Hume's
    return synth._plan_hume(rng, p, dict(synth.KNOBS), seed + 10_000, "/nonexistent")


def test_tiny_world_labels_are_the_peak_end_of_each_video(tiny_world):
    info = {s: read_hume(tiny_world, s).set_index("video") for s in ("train", "val")}
    for job in _jobs("tiny"):
        _, _, sim = synth._hume_sim(job)
        sig = synth.reaction_signals(sim)
        row = info[job["split"].lower()].loc[job["video"]]
        assert row["length"] == job["length"]
        for r in REACTIONS:   # the self-report noise is N(0, 0.04), clipped to [0, 1]
            assert abs(row[r] - np.clip(synth.peak_end(sig[r]), 0, 1)) < 5 * synth.HUME_SELF_REPORT_NOISE, (job["video"], r)


def test_quick_corpus_lengths_and_reactions():
    jobs = _jobs("quick")
    lengths = np.array([j["length"] for j in jobs])
    lo, hi = synth.PRESETS["quick"]["hume_frames"]
    assert lengths.min() >= lo and lengths.max() <= hi
    assert (lengths < 50).mean() > 0.2 and (lengths > 200).mean() > 0.1      # tens and hundreds of frames
    rated, late = [], 0
    for j in jobs:
        _, _, sim = synth._hume_sim(j)
        sig = synth.reaction_signals(sim)
        rated.append([synth.peak_end(sig[r]) for r in REACTIONS])
        strongest = max(sig.values(), key=np.max)
        late += len(sim["env"]) > 200 and np.argmax(strongest) > len(sim["env"]) / 2
    rated = np.array(rated)
    present = (rated > 0.1).mean(0)
    assert present[REACTIONS.index("Anxiety")] >= 0.2, dict(zip(REACTIONS, present.round(2)))
    assert (present >= 0.2).all(), dict(zip(REACTIONS, present.round(2)))
    assert late >= 10       # long clips whose strongest reaction comes in their second half
