"""FaceChannel / FaceChannelS / SENet50Classifier / backbones: shapes per head, parameter counts, wiring."""
import pytest
import torch

from affectlab.models import FaceChannel, FaceChannelS, SENet50Classifier
from affectlab.models.backbones import Backbone, backbone_stages, feature_taps, freeze_all_but
from affectlab.models.facechannel import VARIANTS, count_parameters, facechannel_loss
from affectlab.models.senet import senet_loss
from affectlab.recipes.senet import senet_splitter


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_facechannel_heads_per_variant(variant):
    model = FaceChannel.variant(variant, image_size=32, width=8).eval()
    out = model(torch.randn(3, 3, 32, 32))
    tasks = VARIANTS[variant]
    assert ("expr" in out) == ("expr" in tasks)
    assert ("va" in out) == bool({"arousal", "valence"} & set(tasks))
    if "expr" in out:
        assert out["expr"].shape == (3, 7)
    if "va" in out:
        assert out["va"].shape == (3, 2) and out["va"].abs().max() <= 1
        if variant == "FC_A":
            assert torch.all(out["va"][:, 0] == 0)  # the valence column is not predicted
        if variant == "FC_V":
            assert torch.all(out["va"][:, 1] == 0)


def test_parameter_counts_match_the_paper():
    # The paper: "around 2 million" for the whole network; FC-S (FC + LSTM(100) + dense(100)) at 120 px.
    fcs = FaceChannelS(image_size=120)
    assert abs(count_parameters(fcs) - 2.0e6) / 2.0e6 < 0.10
    # The FC alone with the authors' Aff-Wild2 widths: 1.75M (computed from their code's layer sizes).
    fc = FaceChannel(image_size=120)
    assert abs(count_parameters(fc) - 1.75e6) / 1.75e6 < 0.10
    # ... and it is far lighter than a VGG-16 (138M)
    assert count_parameters(fc) < 138e6 / 50


def test_facechannel_rejects_tiny_images_and_wrong_rank():
    with pytest.raises(ValueError, match="too small"):
        FaceChannel(image_size=8)
    with pytest.raises(ValueError, match="expects images"):
        FaceChannel(image_size=32, width=8)(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match="subset"):
        FaceChannel(tasks=("happiness",))


def test_facechannels_loads_fc_weights_and_takes_clips_or_features():
    fc = FaceChannel(image_size=32, width=8)
    with torch.no_grad():
        for p in fc.trunk.parameters():
            p.add_(torch.randn_like(p))
    fcs = FaceChannelS.from_facechannel(fc)
    for (name, a), b in zip(fc.trunk.state_dict().items(), fcs.trunk.state_dict().values()):
        assert torch.equal(a, b), name
    fcs.eval()
    out = fcs(torch.randn(2, 10, 3, 32, 32))
    assert out["va"].shape == (2, 2) and out["expr"].shape == (2, 7)
    out2 = fcs(torch.randn(2, 10, 500))
    assert out2["expr"].shape == (2, 7)
    # the clip prediction equals the prediction from the same frames' trunk features
    clip = torch.randn(1, 4, 3, 32, 32)
    feats = fcs.trunk(clip[0])[None]
    torch.testing.assert_close(fcs(clip)["expr"], fcs(feats)["expr"])


def test_frozen_trunk_stays_in_eval_mode():
    fcs = FaceChannelS(image_size=32, width=8, freeze_trunk=True).train()
    assert not fcs.trunk.training and fcs.lstm.training
    assert all(not p.requires_grad for p in fcs.trunk.parameters())


def test_facechannel_loss_reads_only_the_variant_heads():
    y = {"va": torch.tensor([[0.5, -0.2], [-5.0, -5.0], [0.1, 0.3]]), "expr": torch.tensor([1, -1, 4])}
    for variant, tasks in VARIANTS.items():
        model = FaceChannel(tasks=tasks, image_size=32, width=8)
        loss = facechannel_loss(tasks)(model(torch.randn(3, 3, 32, 32)), y)
        assert torch.isfinite(loss)
        loss.backward()


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048), ("seresnet50", 2048)])
def test_backbones_features_and_stages(arch, dim):
    bb = Backbone(arch).eval()
    assert bb.feature_dim == dim
    x = torch.randn(1, 3, 64, 64)
    assert bb(x).shape == (1, dim)
    stages = backbone_stages(bb)
    assert list(stages) == ["stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    taps = feature_taps(bb, x)
    # conv3_x is stride 8, conv4_x stride 16 (28x28 and 14x14 at 224 px, as the SCAN paper says)
    assert taps["conv3_x"].shape[-1] == 8 and taps["conv4_x"].shape[-1] == 4


def test_freeze_all_but_last_stage():
    bb = freeze_all_but(Backbone("resnet18"), ("conv5_x",))
    trainable = {n.split(".")[1] for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone"):
        Backbone("vgg99")


def test_senet_classifier_head_and_groups():
    model = SENet50Classifier("resnet18").eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out) == {"expr"} and out["expr"].shape == (2, 7)
    body, head = senet_splitter(model)
    assert len(head) == 2 and len(body) == len(list(model.body.parameters()))
    # the paper's model: timm SE-ResNet-50, last FC reshaped to 7
    se = SENet50Classifier("seresnet50")
    assert se.head.out_features == 7 and any("se." in n for n, _ in se.named_parameters())
    n = count_parameters(se)
    assert abs(n - 26.05e6) / 26.05e6 < 0.10  # SE-ResNet-50: ~28M with its 1000-way ImageNet head


def test_senet_loss_weights_change_the_loss():
    logits = {"expr": torch.randn(6, 7)}
    y = {"expr": torch.tensor([0, 0, 0, 1, 2, -1])}
    plain = senet_loss()(logits, y)
    weighted = senet_loss(torch.tensor([1.0, 20, 30, 1, 1, 1, 1]))(logits, y)
    assert torch.isfinite(plain) and torch.isfinite(weighted) and not torch.isclose(plain, weighted)


def test_facechannel_recipe_rows_budget_and_scores():
    import numpy as np
    import pandas as pd

    from affectlab.recipes import facechannel as recipe

    df = pd.DataFrame({"video": ["a"] * 5 + ["b"] * 4, "i": range(9)})
    assert recipe.validation_rows(df, 3).i.tolist() == [2, 7]      # the last of every 3 frames, per video
    rng = np.random.default_rng(0)
    drawn = recipe.budget(df, 4, rng)
    assert len(drawn) == 4 and drawn.i.is_monotonic_increasing and recipe.budget(df, None, rng) is df
    logits = torch.eye(7)[[0, 1, 1, 2]]
    targs = {"expr": torch.tensor([0, 1, -1, 2]), "va": torch.tensor([[0.5, 0.1], [-5.0, -5.0], [0.2, 0.3], [-0.4, 0.9]])}
    figs = recipe.score({"expr": logits, "va": targs["va"].clone()}, targs)
    assert figs["f1"] == pytest.approx(3 / 7) and figs["accuracy"] == 1.0          # the unlabelled row left out
    assert figs["ccc_valence"] == pytest.approx(1.0) and figs["ccc_arousal"] == pytest.approx(1.0)
    assert set(recipe.score({"expr": logits}, targs)) == {"f1", "accuracy"}   # a variant scores its heads only


def test_senet_recipe_scores_per_class():
    from affectlab.recipes import senet as recipe

    figs = recipe.score_classes([0, 1, 2, 0], [0, 1, 1, 0])
    assert figs["accuracy"] == 0.75 and figs["f1_Neutral"] == 1.0 and figs["f1_Fear"] == 0.0
    assert set(figs) >= {"f1", "accuracy", "expr_score"}
