"""What happens in a synthetic video, frame by frame, before anything is drawn.

A video is a sequence of expression episodes (onset, apex, offset) separated by neutral stretches. From the
episodes follow, per frame: the true category, 17 AU intensities (prototypical AUs of ``EXPRESSION_AUS``
always, observational ones with their share as probability), valence/arousal on the circumplex plus the
subject's bias and a slow drift, and the nuisances (pose, alignment, light, blur, occluders, lost face).
Annotations are then derived the way human annotators produce them: late, smoothed and sometimes wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectlab.labels import AUS_17, EXPRESSION_AUS, EXPRESSIONS

from .faces_draw import AU_INDEX, OCCLUDERS

# Circumplex centres (valence, arousal) at full intensity.
VA_CENTRES = {
    "Neutral": (0.0, 0.0), "Anger": (-0.6, 0.7), "Disgust": (-0.6, 0.35), "Fear": (-0.55, 0.6),
    "Happiness": (0.65, 0.4), "Sadness": (-0.55, -0.4), "Surprise": (0.1, 0.75),
}
PHASES = ("neutral", "onset", "apex", "offset")


@dataclass
class Episode:
    cls: int          # index in EXPRESSIONS (never 0)
    onset: int
    apex: int
    offset: int
    peak: float       # apex intensity before the subject's gain

    @property
    def length(self) -> int:
        return self.onset + self.apex + self.offset


def random_episode(rng: np.random.Generator, cls: int, scale: float = 1.0) -> Episode:
    return Episode(cls, max(2, int(rng.integers(6, 18) * scale)), max(3, int(rng.integers(15, 70) * scale)),
                   max(2, int(rng.integers(8, 24) * scale)), float(rng.uniform(0.55, 1.0)))


def labelled_frames(ep: Episode, threshold: float, gain: float = 1.0) -> float:
    """Roughly how many of an episode's frames pass the category threshold (for planning proportions)."""
    top = min(1.0, ep.peak * gain)
    ramp = max(0.0, 1 - threshold / top) if top > threshold else 0.0
    return ep.apex + (ep.onset + ep.offset) * ramp


def layout(rng: np.random.Generator, episodes: list[Episode], length: int) -> list[tuple[int, Episode]]:
    """Place episodes in order in a video of ``length`` frames with random neutral gaps between them."""
    free = max(0, length - sum(e.length for e in episodes))
    gaps = rng.dirichlet(np.ones(len(episodes) + 1)) * free
    starts, t = [], 0.0
    for gap, ep in zip(gaps, episodes):
        t += gap
        starts.append((int(t), ep))
        t += ep.length
    return starts


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return x
    pad = np.concatenate([np.repeat(x[:1], k // 2, 0), x, np.repeat(x[-1:], k // 2, 0)])
    kernel = np.ones(k) / k
    return np.stack([np.convolve(pad[:, j], kernel, "valid") for j in range(x.shape[1])], 1)[: len(x)]


def _stretches(rng, n_frames, rate_per_frame, lo, hi) -> list[tuple[int, int]]:
    out = []
    for _ in range(rng.poisson(n_frames * rate_per_frame)):
        start = int(rng.integers(0, max(1, n_frames - lo)))
        out.append((start, min(n_frames, start + int(rng.integers(lo, hi + 1)))))
    return out


def simulate(rng: np.random.Generator, n_frames: int, placed: list[tuple[int, Episode]], gain: float,
             va_bias: np.ndarray, knobs: dict) -> dict[str, np.ndarray]:
    """All per-frame true quantities of one video (arrays of length ``n_frames``)."""
    t = np.arange(n_frames)
    env = np.zeros(n_frames)
    cls = np.zeros(n_frames, int)
    phase = np.zeros(n_frames, int)
    aus = np.abs(rng.normal(0, 0.03, (n_frames, len(AUS_17))))     # small AU noise everywhere
    va = np.zeros((n_frames, 2))
    for start, ep in placed:
        seg = np.concatenate([
            0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ep.onset)), np.ones(ep.apex),
            0.5 + 0.5 * np.cos(np.linspace(0, np.pi, ep.offset))])
        stop = min(n_frames, start + len(seg))
        seg = seg[: stop - start] * min(1.0, ep.peak * gain)
        sl = slice(start, stop)
        env[sl], cls[sl] = seg, ep.cls
        phase[sl] = np.repeat([1, 2, 3], [ep.onset, ep.apex, ep.offset])[: stop - start]
        entry = EXPRESSION_AUS[EXPRESSIONS[ep.cls]]
        for au in entry["prototypical"]:
            aus[sl, AU_INDEX[au]] += seg * rng.uniform(0.8, 1.0)
        for au, share in entry["observational"].items():
            if rng.uniform() < share:
                aus[sl, AU_INDEX[au]] += seg * rng.uniform(0.5, 0.9)
        centre = np.array(VA_CENTRES[EXPRESSIONS[ep.cls]]) * (1 + rng.normal(0, 0.2, 2))
        if rng.uniform() < knobs["va_flip"]:  # an episode felt against its face (what the coherence filter removes)
            centre[0] = -centre[0]
        va[sl] += seg[:, None] * centre
    # Spontaneous single-AU blips (a brief frown, a polite smile) that no category explains.
    for a, b in _stretches(rng, n_frames, 1 / 150, 8, 30):
        aus[a:b, rng.integers(len(AUS_17))] += rng.uniform(0.2, 0.5)
    aus = np.clip(aus, 0, 1)
    drift = sum(rng.uniform(0.03, 0.12, 2) * np.sin(2 * np.pi * t[:, None] / rng.uniform(120, 500, 2)
                                                    + rng.uniform(0, 2 * np.pi, 2)) for _ in range(2))
    va = np.clip(va + va_bias + drift, -1, 1)
    true_expr = np.where(env >= knobs["threshold"], cls, 0)

    # In-the-wild nuisances.
    ps = knobs["pose"]
    pose = np.stack([amp * np.sin(2 * np.pi * t / rng.uniform(60, 300) + rng.uniform(0, 6.3))
                     for amp in (rng.uniform(0.1, 0.55) * ps, rng.uniform(0.05, 0.25) * ps, rng.uniform(0.03, 0.25) * ps)], 1)
    align = np.stack([np.full(n_frames, rng.normal(0, 0.02)), np.full(n_frames, rng.normal(0, 0.02)),
                      np.full(n_frames, rng.uniform(0.9, 1.1))], 1) + _smooth(rng.normal(0, [0.02, 0.02, 0.04], (n_frames, 3)), 5) * knobs["jitter"]
    occluder = np.full(n_frames, -1)
    occ_pos = np.zeros(n_frames)
    # One occluder stretch per 100 frames on average (doubled in generator 1.3): about 3 in 10 frames show a
    # hand, hair, glasses, a microphone or a mask, as people talk, eat and touch their face in video from the
    # wild; at half that rate some expressions were never occluded in a validation split.
    for a, b in _stretches(rng, n_frames, knobs["occlusion"] / 100, 15, 60):
        occluder[a:b], occ_pos[a:b] = rng.integers(len(OCCLUDERS)), rng.uniform()
    blur = np.zeros(n_frames, int)
    for a, b in _stretches(rng, n_frames, knobs["blur"] / 150, 5, 20):
        blur[a:b] = rng.integers(2, 6)
    lost = np.zeros(n_frames, int)       # 1 = no image written, 2 = image but labels invalid
    for a, b in _stretches(rng, n_frames, knobs["lost"] / 300, 4, 15):
        lost[a:b] = rng.integers(1, 3)
    return dict(env=env, cls=cls, phase=phase, aus=aus, va=va, true_expr=true_expr, pose=pose, align=align,
                occluder=occluder, occ_pos=occ_pos, blur=blur, lost=lost)


def annotate(rng: np.random.Generator, sim: dict[str, np.ndarray], knobs: dict, au_threshold: float = 0.35):
    """Labels as annotators give them: lagged by a few frames, VA smoothed and noisy, a few wrong classes."""
    n = len(sim["env"])
    lag = int(rng.integers(knobs["lag"][0], knobs["lag"][1] + 1))
    src = np.maximum(np.arange(n) - lag, 0)
    expr = sim["true_expr"][src].copy()
    wrong = rng.uniform(size=n) < knobs["wrong_labels"]
    expr[wrong] = rng.integers(0, len(EXPRESSIONS), wrong.sum())
    va = _smooth(sim["va"], knobs["va_smooth"])[src] + rng.normal(0, knobs["va_noise"], (n, 2))
    va = np.round(np.clip(va, -1, 1), 3)
    au = (sim["aus"][src] >= au_threshold).astype(int)
    return expr, va, au, lag
