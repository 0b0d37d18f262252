"""TemporalStatNet (paper 3): shapes of the six variants, STAT by hand, the 5-vector, the loss weights,
causality of the image-only variants, the frozen stages and the average fusion."""
import pytest
import torch

from affectlab.labels import INVALID_VA
from affectlab.losses import masked_ccc_loss, masked_cross_entropy
from affectlab.models.backbones import make_backbone
from affectlab.models.temporal_stat import (
    VARIANTS, TemporalStatNet, average_fusion, freeze_all_but_last_stage, stat_pool,
    temporal_loss, va5_mse, va5_target)

SMALL = dict(lstm_hidden=8, dense=16, dropout=0.0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_heads_and_shapes_on_cached_features(variant):
    torch.manual_seed(0)
    net = TemporalStatNet(variant, feature_dim=12, **SMALL)
    out = net(torch.randn(3, 5, 12))
    assert out["expr"].shape == (3, 7)
    if VARIANTS[variant].va:
        assert out["va"].shape == (3, 2) and out["va5"].shape == (3, 5)
        assert out["va"].abs().max() <= 1 and out["va5"].abs().max() <= 1  # tanh
    else:
        assert set(out) == {"expr"}


def test_end_to_end_on_frames_matches_cached_features():
    torch.manual_seed(0)
    bb = make_backbone("resnet18", width=16)
    net = TemporalStatNet(6, feature_dim=bb.feature_dim, backbone=bb, **SMALL).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        feats = bb(x.flatten(0, 1)).reshape(2, 3, -1)
        a, b = net(x), net(feats)
    torch.testing.assert_close(a["expr"], b["expr"])
    torch.testing.assert_close(a["va"], b["va"])


def test_stat_pool_equals_hand_computation():
    x = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [2.0, 4.0]]])  # [B=1, s=3, K=2]
    expected = torch.tensor([[2.0, 2.0 / 3.0, 3.0, 4.0, 1.0, -2.0]])  # mean, max, min
    torch.testing.assert_close(stat_pool(x), expected)
    with pytest.raises(ValueError):
        stat_pool(torch.zeros(2, 3))


def test_va5_target_by_hand_and_invalid_rows():
    va = torch.tensor([[0.2, 0.6], [INVALID_VA, INVALID_VA]])  # (valence, arousal)
    t = va5_target(va)
    # a = .6, v = .2, m = .4, a − m = .2, v − m = −.2
    torch.testing.assert_close(t[0], torch.tensor([0.6, 0.2, 0.4, 0.2, -0.2]))
    assert (t[1] == INVALID_VA).all()
    assert va5_mse(t[:1].clone(), va[:1]) == 0  # a perfect prediction
    assert va5_mse(torch.zeros(2, 5), va) > 0


def test_loss_weights_are_the_papers():
    torch.manual_seed(0)
    preds = {"expr": torch.randn(6, 7), "va": torch.rand(6, 2) - 0.5, "va5": torch.rand(6, 5) - 0.5}
    y = {"expr": torch.tensor([0, 1, 2, -1, 4, 5]), "va": torch.rand(6, 2) * 2 - 1}
    ccc_v = masked_ccc_loss(preds["va"][:, :1], y["va"][:, :1])
    ccc_a = masked_ccc_loss(preds["va"][:, 1:], y["va"][:, 1:])
    expected = (1.0 * masked_cross_entropy(preds["expr"], y["expr"]) + 0.4 * ccc_a + 0.4 * ccc_v
                + 0.2 * va5_mse(preds["va5"], y["va"]))
    torch.testing.assert_close(temporal_loss(6)(preds, y), expected)
    assert set(temporal_loss(5).terms) == {"expr"}


@pytest.mark.parametrize("variant,uses_past", [(1, False), (2, False), (3, True), (5, True)])
def test_image_variants_ignore_previous_frames(variant, uses_past):
    torch.manual_seed(0)
    net = TemporalStatNet(variant, feature_dim=6, **SMALL).eval()
    x = torch.randn(2, 4, 6)
    x2 = x.clone()
    x2[:, :-1] += 5.0  # change only the previous frames
    changed = not torch.allclose(net(x)["expr"], net(x2)["expr"])
    assert changed == uses_past


def test_only_the_last_stage_learns_and_frozen_bn_stays_in_eval():
    bb = freeze_all_but_last_stage(make_backbone("resnet18", width=16))
    net = TemporalStatNet(4, feature_dim=bb.feature_dim, backbone=bb, **SMALL).train()
    trainable = {n.split(".")[1] for n, p in net.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}
    assert not net.backbone.net.layer1.training and not net.backbone.net.bn1.training
    assert net.backbone.net.layer4.training


def test_bad_variant_and_input_are_clear_errors():
    with pytest.raises(ValueError, match="variant"):
        TemporalStatNet(7)
    with pytest.raises(ValueError, match="no backbone"):
        TemporalStatNet(3, feature_dim=4)(torch.zeros(1, 2, 3, 8, 8))


def test_average_fusion():
    a = {"expr": torch.tensor([[10.0, 0.0]]), "va": torch.tensor([[0.5, -0.5]])}
    b = {"expr": torch.tensor([[0.0, 1.0]])}
    c = {"expr": torch.tensor([[0.0, 1.0]]), "va": torch.tensor([[0.1, 0.1]])}
    fused = average_fusion([a, b, c])
    p = torch.stack([o["expr"].softmax(-1) for o in (a, b, c)]).mean(0)
    torch.testing.assert_close(fused["expr"].exp(), p)
    torch.testing.assert_close(fused["va"], torch.tensor([[0.3, -0.2]]))
    assert "va" not in average_fusion([b])
