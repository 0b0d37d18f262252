"""A few optimisation steps of TemporalStatNet and SCANCCI lower their papers' losses and fit a tiny batch."""
import pytest
import torch

from affectlab.models.scan import SCANCCI, PlainResNet, scancci_loss
from affectlab.models.temporal_stat import TemporalStatNet, temporal_loss
from affectlab.recipes.scan import param_groups


def _steps(model, loss_fn, x, y, n, lr, params=None):
    opt = torch.optim.Adam(params if params is not None else [p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(n):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("variant", [2, 6])
def test_temporal_model_fits_a_tiny_batch_of_clip_features(variant):
    torch.manual_seed(0)
    x = torch.randn(24, 6, 16)  # 24 clips of 6 frames of 16-d cached features
    y = {"expr": torch.arange(24) % 7, "va": torch.rand(24, 2) * 2 - 1}
    y["expr"][3] = -1  # an unlabelled frame is masked, not taught
    model = TemporalStatNet(variant, feature_dim=16, lstm_hidden=16, dense=64, dropout=0.0)
    losses = _steps(model, temporal_loss(variant), x, y, 150, 1e-2)
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    with torch.no_grad():
        out = model(x)
    keep = y["expr"] >= 0
    assert (out["expr"].argmax(1)[keep] == y["expr"][keep]).float().mean() > 0.9


@pytest.mark.slow
def test_scancci_and_baseline_lower_their_loss_on_images():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 64, 64)
    y = {"expr": torch.arange(16) % 7}
    for model in (SCANCCI("resnet18", shared_local=True), PlainResNet("resnet18")):
        body, heads = param_groups(model)
        params = [{"params": body, "lr": 1e-3}, {"params": heads, "lr": 1e-2}]
        losses = _steps(model.train(), scancci_loss(0.2), x, y, 12, 1e-3, params)
        assert losses[-1] < 0.5 * losses[0], (type(model).__name__, losses)


def _two_videos():
    import numpy as np
    import pandas as pd

    rows = [("a", f) for f in (1, 2, 3, 5, 6, 7, 8)] + [("b", f) for f in range(1, 6)]  # a misses frame 4
    df = pd.DataFrame(rows, columns=["video", "frame"])
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True), np


def test_causal_clips_never_see_future_frames_or_other_videos():
    from affectlab.data.loaders import clip_indices

    df, np = _two_videos()
    clips = clip_indices(df, s=4)
    assert clips.shape == (len(df), 4)
    for i, clip in enumerate(clips):
        assert clip[-1] == i  # the clip ends at the current frame
        assert (df["video"].to_numpy()[clip] == df["video"][i]).all()
        frames = df["frame"].to_numpy()[clip]
        assert (frames <= df["frame"][i]).all() and (np.diff(frames) >= 0).all()


def test_temporal_model_outputs_do_not_depend_on_future_frames():
    from affectlab.data.loaders import clip_indices

    df, np = _two_videos()
    torch.manual_seed(0)
    feats = torch.randn(len(df), 8)
    clips = torch.as_tensor(clip_indices(df, s=4))
    model = TemporalStatNet(6, feature_dim=8, lstm_hidden=8, dense=16).eval()
    target = int(((df["video"] == "a") & (df["frame"] == 5)).to_numpy().nonzero()[0][0])
    future = torch.as_tensor(((df["video"] == "a") & (df["frame"] > 5)).to_numpy())
    changed = feats.clone()
    changed[future] += 10.0
    with torch.no_grad():
        a, b = model(feats[clips]), model(changed[clips])
    torch.testing.assert_close(a["expr"][target], b["expr"][target])
    torch.testing.assert_close(a["va"][target], b["va"][target])
    later = int(((df["video"] == "a") & (df["frame"] == 8)).to_numpy().nonzero()[0][0])
    assert not torch.allclose(a["expr"][later], b["expr"][later])  # the test can fail: later frames do change
