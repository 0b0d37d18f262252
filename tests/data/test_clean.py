import numpy as np
import pandas as pd
import pytest

from affectlab.data.clean import (class_weights, coherence_filter, imbalanced_sampler, oversample_classes,
                                  oversample_va_bins)


def test_coherence_filter_rules():
    df = pd.DataFrame({"expr": [4, 4, 5, 5, 0, 0, 1, 4],
                       "valence": [0.5, -0.2, -0.3, 0.3, 0.6, 0.6, 0.9, -5.0],
                       "arousal": [0.1, 0.1, 0.0, 0.0, 0.6, 0.4, 0.9, 0.2]})
    df.attrs["dropped"] = {"earlier": 2}
    out = coherence_filter(df)

    assert out[["expr", "valence"]].values.tolist() == [[4, 0.5], [5, -0.3], [0, 0.6], [1, 0.9]]
    d = out.attrs["dropped"]
    assert d["earlier"] == 2
    assert d["incoherent: Happiness with negative valence"] == 1
    assert d["incoherent: Sadness with positive valence"] == 1
    assert d["incoherent: Neutral with valence and arousal > 0.5"] == 1
    assert d["incoherent: invalid valence or arousal"] == 1


def test_class_weights_match_the_paper_formula():
    w = class_weights([0, 0, 0, 0, 1, 1, 2, -1], n_classes=4)
    assert w.tolist() == [1.0, 2.0, 4.0, 0.0]
    with pytest.raises(ValueError):
        class_weights([-1, -1])


def test_oversample_classes_equalises_counts():
    df = pd.DataFrame({"expr": [0] * 10 + [1] * 3 + [2] + [-1], "i": range(15)})
    out = oversample_classes(df, seed=0)
    counts = out["expr"].value_counts()
    assert counts[0] == counts[1] == counts[2] == 10 and counts[-1] == 1
    assert set(out["i"]) == set(range(15))


def test_oversample_va_bins_caps_growth():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"valence": np.r_[rng.uniform(-0.04, 0.04, 200), [0.9]], "arousal": np.r_[np.zeros(200), [0.9]]})
    out = oversample_va_bins(df, bins=21, max_factor=10)
    assert (out["valence"] == 0.9).sum() == 10
    assert len(out) >= len(df)


def test_imbalanced_sampler_balances_classes():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    sampler = imbalanced_sampler(labels, num_samples=30000, seed=0)
    drawn = labels[list(sampler)]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.03)
    assert list(imbalanced_sampler(labels, seed=1)) == list(imbalanced_sampler(labels, seed=1))
