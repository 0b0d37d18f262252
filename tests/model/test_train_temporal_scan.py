"""A few optimisation steps of TemporalStatNet and SCANCCI lower their papers' losses and fit a tiny batch."""
import pytest
import torch

from affectlab.models.scan import SCANCCI, PlainResNet, param_groups, scancci_loss
from affectlab.models.temporal_stat import TemporalStatNet, temporal_loss


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
