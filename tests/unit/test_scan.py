"""SCAN+CCI (paper 4): the patch partition, SCAN = I ⊙ W, shapes at the profiles' map sizes, the loss,
the two learning-rate groups and the per-epoch decay."""
import math

import pytest
import torch
import torch.nn.functional as F

from affectlab.models.scan import (
    SCANCCI, CachedMaps, CCIBranch, LocalGlobalAttention, MapsOf, PlainResNet, SpatioChannelAttention,
    patch_bounds, patch_grid, scancci_loss)
from affectlab.recipes.scan import epoch_decay, param_groups


def test_patch_bounds_follow_the_authors_split_at_28():
    assert [b - a for a, b in patch_bounds(28, 5)] == [6, 6, 6, 6, 4]  # 16 6×6, 4 6×4, 4 4×6, 1 4×4
    assert [b - a for a, b in patch_bounds(8, 5)] == [2, 2, 2, 1, 1]   # ResNet-18 at 64 px
    with pytest.raises(ValueError, match="cannot split"):
        patch_bounds(4, 5)


@pytest.mark.parametrize("h,w", [(8, 8), (14, 14), (28, 28), (16, 16), (5, 5), (7, 11), (56, 56)])
@pytest.mark.parametrize("m", [25, 4])
def test_patch_grid_covers_the_map_exactly_once(h, w, m):
    grid = patch_grid(h, w, m)
    assert len(grid) == m
    cover = torch.zeros(h, w, dtype=torch.long)
    for r0, r1, c0, c1 in grid:
        assert r1 > r0 and c1 > c0  # no empty patch
        cover[r0:r1, c0:c1] += 1
    assert (cover == 1).all()


def test_patch_grid_needs_a_square_count():
    with pytest.raises(ValueError, match="square"):
        patch_grid(8, 8, 24)


def test_scan_output_equals_input_times_its_weights():
    torch.manual_seed(0)
    scan = SpatioChannelAttention(6).eval()
    x = torch.randn(2, 6, 5, 5)
    w = torch.sigmoid(scan.bn(scan.prelu(scan.conv(x))))
    assert w.shape == x.shape and (w > 0).all() and (w < 1).all()
    torch.testing.assert_close(scan(x), x * w)


def test_local_features_are_the_max_over_patches_of_pooled_scan_outputs():
    torch.manual_seed(0)
    lga = LocalGlobalAttention(4, m=4, n_classes=3).eval()
    fu = torch.randn(2, 4, 6, 6)
    pooled = torch.stack([lga.local[i](fu[..., r0:r1, c0:c1]).mean((2, 3))
                          for i, (r0, r1, c0, c1) in enumerate(patch_grid(6, 6, 4))], 2)
    z = torch.cat([pooled.amax(2), lga.glob(fu).mean((2, 3))], 1)
    torch.testing.assert_close(lga(fu), lga.fc(z))


@pytest.mark.parametrize("backbone,size,c3,c4,hw3", [("resnet18", 64, 128, 256, 8), ("resnet50", 112, 512, 1024, 14)])
def test_scancci_shapes_at_the_profiles_sizes(backbone, size, c3, c4, hw3):
    torch.manual_seed(0)
    model = SCANCCI(backbone, shared_local=(backbone == "resnet18")).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fu = model.stem(x)
        assert fu.shape == (2, c3, hw3, hw3) and model.layer3(fu).shape[1] == c4
        out = model(x)
    assert out["expr"].shape == (2, 7) and out["expr_branches"].shape == (2, 5, 7)
    torch.testing.assert_close(out["expr"], out["expr_branches"].mean(1))  # prediction: mean of branches
    att = model.attention_maps(x)
    assert att["local"].shape == att["global"].shape == (2, hw3, hw3) and att["grid"].shape == (25, 4)


def test_cached_maps_path_equals_the_image_path():
    torch.manual_seed(0)
    for model in (SCANCCI("resnet18", freeze_through="conv4_x"), PlainResNet("resnet18", freeze_through="conv4_x")):
        model.eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(CachedMaps(model)(*model.maps(x))["expr"], model(x)["expr"])
    with pytest.raises(ValueError, match="freeze_through"):
        SCANCCI("resnet18", freeze_through="layer2")


def test_maps_are_stored_as_float16_and_read_back_by_cached_maps():
    from affectlab.train import features

    torch.manual_seed(0)
    model = SCANCCI("resnet18", shared_local=True, freeze_through="conv4_x").eval()
    x = torch.randn(3, 3, 64, 64)
    maps = features(MapsOf(model), [x[:2], x[2:]], "cpu")   # the recipe's cache: one loop, dtypes kept
    assert maps["conv3"].dtype == maps["conv4"].dtype == torch.float16
    with torch.no_grad():
        fu, fl = model.maps(x)
        torch.testing.assert_close(maps["conv3"], fu.half())
        torch.testing.assert_close(CachedMaps(model)(maps["conv3"], maps["conv4"])["expr"], model(x)["expr"],
                                   atol=2e-2, rtol=2e-2)


def test_cci_has_k_independent_block_classifiers():
    cci = CCIBranch(8, k=4, hidden=256, n_classes=7)
    assert cci(torch.randn(3, 8, 4, 4)).shape == (3, 4, 7)
    assert cci.heads[0][0].out_features == 256 and cci.heads[0] is not cci.heads[1]


def test_loss_is_lambda_lu_plus_one_minus_lambda_sum_li():
    torch.manual_seed(0)
    br = torch.randn(6, 5, 7)
    y = {"expr": torch.tensor([0, 1, 2, 3, -1, 6])}
    keep = y["expr"] >= 0
    ce = [F.cross_entropy(br[keep, i], y["expr"][keep]) for i in range(5)]
    expected = 0.2 * ce[0] + 0.8 * sum(ce[1:])
    torch.testing.assert_close(scancci_loss(0.2)({"expr": br.mean(1), "expr_branches": br}, y), expected)
    torch.testing.assert_close(scancci_loss()({"expr": br[:, 0]}, y), ce[0])  # the plain baseline
    with pytest.raises(ValueError):
        scancci_loss(1.5)


def test_two_parameter_groups_and_frozen_stages_left_out():
    model = SCANCCI("resnet18", freeze_through="conv3_x")
    body, heads = param_groups(CachedMaps(model))
    assert {id(p) for p in heads} == {id(p) for p in [*model.scan.parameters(), *model.cci.parameters()]}
    assert {id(p) for p in body} == {id(p) for p in model.layer3.parameters()}
    model.train()
    assert not model.stem.training and model.layer3.training  # frozen BN statistics stay put
    plain = PlainResNet("resnet18", freeze_through="conv4_x").train()
    body, heads = param_groups(plain)
    assert {id(p) for p in body} == {id(p) for p in plain.layer4.parameters()} and not plain.layer3.training


def test_epoch_decay_multiplies_by_095_each_epoch():
    sched = epoch_decay([1e-4, 1e-3], epochs=4, gamma=0.95)
    assert sched(0.0).tolist() == pytest.approx([1e-4, 1e-3])
    assert sched(0.3).tolist() == pytest.approx([0.95e-4, 0.95e-3])
    assert sched(0.99).tolist() == pytest.approx([1e-4 * 0.95 ** 3, 1e-3 * 0.95 ** 3])
    assert sched(1.0).tolist() == pytest.approx([1e-4 * 0.95 ** 3, 1e-3 * 0.95 ** 3])
    assert math.isclose(0.95 ** 3, 0.857375)


def test_shared_local_scan_batched_by_patch_shape_equals_patch_by_patch():
    torch.manual_seed(0)
    lga = LocalGlobalAttention(4, m=25, n_classes=3, shared_local=True).eval()
    fu = torch.randn(2, 4, 8, 8)
    pooled = torch.stack([lga.local[0](fu[..., r0:r1, c0:c1]).mean((2, 3))
                          for r0, r1, c0, c1 in patch_grid(8, 8, 25)], 2)
    z = torch.cat([pooled.amax(2), lga.glob(fu).mean((2, 3))], 1)
    torch.testing.assert_close(lga(fu), lga.fc(z))
