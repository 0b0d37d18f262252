"""metrics.chance_f1, the course's one "chance" macro-F1, against scikit-learn on the same three guesses."""
import numpy as np
import pytest
from sklearn.metrics import f1_score

from affectlab.metrics import chance_f1


def test_chance_is_the_best_of_three_face_blind_guesses():
    y = np.random.default_rng(5).choice(7, 3000, p=[.6, .03, .02, .02, .18, .1, .05])
    y_with_unlabelled = np.r_[y, -1, -1]
    rng = np.random.default_rng(0)
    majority = np.full_like(y, np.bincount(y).argmax())
    uniform = rng.choice(range(7), size=y.size)
    prior = np.bincount(y, minlength=7) / y.size
    by_prior = rng.choice(range(7), size=y.size, p=prior)
    ref = max(f1_score(y, g, labels=range(7), average="macro", zero_division=0) for g in (majority, uniform, by_prior))
    assert chance_f1(y_with_unlabelled) == pytest.approx(ref)
    assert 0.1 < chance_f1(y) < 0.2                     # Aff-Wild2's shares: about 1/7 of one class's F1
    assert chance_f1(np.zeros(50, int)) == pytest.approx(1 / 7)   # one class: the constant guess is perfect on it


def test_chance_needs_labels():
    with pytest.raises(ValueError, match="no annotated rows"):
        chance_f1([-1, -1])
