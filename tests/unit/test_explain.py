"""Grad-CAM wrappers, targets, layers and the randomisation sanity check (pytorch-grad-cam's own test style:
a heat map of the input's spatial size, finite, not constant), over stand-in models and every course model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from affectlab import explain

torch.set_num_threads(1)
H = W = 32


# ------------------------------------------------------------------------------------- stand-in models
class TinyMultiHead(nn.Module):
    """A small CNN with the four heads of the course's models."""

    def __init__(self, n_au: int = 12):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expr, self.va = nn.Linear(16, 7), nn.Linear(16, 2)
        self.au, self.intensity = nn.Linear(16, n_au), nn.Linear(16, 7)

    def embed(self, x):
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x):
        f = self.embed(x)
        return {"expr": self.expr(f), "va": torch.tanh(self.va(f)), "au": self.au(f),
                "intensity": torch.sigmoid(self.intensity(f))}


class TinyClip(nn.Module):
    """A clip model over [B, s, 3, H, W]: the frame CNN on every frame, mean + std over time, heads."""

    is_sequence = True

    def __init__(self):
        super().__init__()
        self.frame = TinyMultiHead()
        self.expr, self.va = nn.Linear(32, 7), nn.Linear(32, 2)

    def forward(self, x):
        b, s = x.shape[:2]
        f = self.frame.embed(x.flatten(0, 1)).view(b, s, -1)
        stats = torch.cat([f.mean(1), f.std(1, unbiased=False)], -1)
        return {"expr": self.expr(stats), "va": torch.tanh(self.va(stats))}


class TinyVideo(nn.Module):
    """A video model over padded (x [B, t, 3, H, W], lengths): frame CNN, GRU, last valid step, heads."""

    def __init__(self):
        super().__init__()
        self.frame = TinyMultiHead()
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.intensity = nn.Linear(16, 7)

    def forward(self, x, lengths):
        b, t = x.shape[:2]
        f = self.frame.embed(x.flatten(0, 1)).view(b, t, -1)
        h, _ = self.gru(f)
        last = h[torch.arange(b), lengths - 1]
        return {"intensity": torch.sigmoid(self.intensity(last))}


def _seeded(cls):
    torch.manual_seed(0)
    return cls().eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, H, W, generator=g)
    x[:, :, 8:24, 8:24] += 2.0  # a bright "face" so activations have structure
    return x


def assert_good_maps(maps, n):
    assert maps.shape == (n, H, W)
    assert np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    for m in maps:
        assert m.max() - m.min() > 1e-3, "a constant heat map explains nothing"


# (head, index, sign) covering every head the issue names
TARGETS = [("expr", None, 1), ("expr", "Happiness", 1), ("va", "valence", 1), ("va", "valence", -1),
           ("va", "arousal", 1), ("au", 3, 1), ("intensity", "Amusement", 1)]


@pytest.mark.parametrize("method", sorted(explain.METHODS))
@pytest.mark.parametrize("head,index,sign", TARGETS)
def test_every_head_every_method_on_frame_model(images, method, head, index, sign):
    model = _seeded(TinyMultiHead)
    maps = explain.cam_maps(model, images, head=head, index=index, sign=sign, method=method)
    assert_good_maps(maps, len(images))


@pytest.mark.parametrize("method", sorted(explain.METHODS))
@pytest.mark.parametrize("repeat", [1, 3])
def test_sequence_model_per_frame(images, method, repeat):
    model = _seeded(TinyClip)
    for head in ("expr", "va"):
        maps = explain.cam_maps(model, images, head=head, method=method, repeat=repeat)
        assert_good_maps(maps, len(images))


def test_video_model_with_lengths(images):
    model = _seeded(TinyVideo)
    assert explain.is_sequence_model(model)
    maps = explain.cam_maps(model, images, head="intensity", index=1)
    assert_good_maps(maps, len(images))


def test_wrappers_do_not_change_the_model(images):
    model = _seeded(TinyMultiHead)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = explain.HeadOutput(model, "va")(images)
    assert torch.equal(out, model(images)["va"])
    explain.cam_maps(model, images, head="va")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(KeyError, match="no head 'au'"):
        explain.HeadOutput(_seeded(TinyClip), "au")(images[:, None])


def test_frame_as_clip_matches_a_one_frame_clip(images):
    model = _seeded(TinyClip)
    out = explain.FrameAsClip(model)(images)
    assert torch.allclose(out["expr"], model(images[:, None])["expr"])


def test_regression_target_sign_and_index():
    row = torch.tensor([0.3, -0.6])
    assert explain.RegressionTarget(0)(row) == pytest.approx(0.3)
    assert explain.RegressionTarget(1, -1)(row) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        explain.RegressionTarget(0, sign=2)
    with pytest.raises(ValueError, match="sign=-1"):
        explain.make_targets("expr", [0], sign=-1)
    with pytest.raises(ValueError, match="unknown head"):
        explain.make_targets("pose", [0])
    assert explain.head_index("va", "arousal") == 1
    assert explain.head_index("expr", "Surprise") == 6


def test_valence_up_and_down_point_at_different_evidence(images):
    model = _seeded(TinyMultiHead)
    up = explain.cam_maps(model, images, head="va", index="valence", sign=+1)
    down = explain.cam_maps(model, images, head="va", index="valence", sign=-1)
    assert not np.allclose(up, down)


def test_default_layer_is_the_last_spatial_block():
    model = _seeded(TinyMultiHead)
    assert explain.default_target_layer(model) is model.features
    clip = _seeded(TinyClip)
    assert explain.default_target_layer(clip) is clip.frame.features
    model.gradcam_layer = "features.3"
    assert explain.default_target_layer(model) is model.features[3]


def test_gradcam_by_hand_matches_the_library(images):
    """Grad-CAM is the ReLU of the activations weighted by their spatially averaged gradients."""
    model = _seeded(TinyMultiHead)
    layer = model.features
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.update(a=o))
    logits = model(images[:1])["expr"]
    h.remove()
    k = int(logits.argmax())
    grads = torch.autograd.grad(logits[0, k], store["a"])[0]
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * store["a"]).sum(1))
    cam = nn.functional.interpolate(cam[None], size=(H, W), mode="bilinear")[0, 0].detach().numpy()
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    lib = explain.cam_maps(model, images[:1], layer=layer)[0]
    # the library resizes with OpenCV, we with torch: equal up to interpolation details
    assert np.corrcoef(cam.ravel(), lib.ravel())[0, 1] > 0.98


def test_sanity_check_maps_move_when_weights_are_randomised(images):
    model = _seeded(TinyMultiHead)
    same = explain.map_similarity(*[explain.cam_maps(model, images)] * 2)
    assert np.allclose(same, 1.0)
    result = explain.sanity_check(model, images, seed=123)
    assert result["trained"].shape == result["randomized"].shape == (len(images), H, W)
    assert result["rank_correlation"].mean() < 0.9
    # the model passed in is untouched
    assert torch.equal(model.expr.weight, _seeded(TinyMultiHead).expr.weight)


def test_map_similarity_of_a_constant_map_is_zero():
    a = np.random.default_rng(0).random((1, 4, 4))
    assert explain.map_similarity(a, np.zeros_like(a))[0] == 0.0


def test_bad_input_is_a_clear_error(images):
    model = _seeded(TinyMultiHead)
    with pytest.raises(ValueError, match="frame batch"):
        explain.cam_maps(model, images[:, :1])
    with pytest.raises(ValueError, match="unknown method"):
        explain.cam_maps(model, images, method="magic")
    with pytest.raises(ValueError, match="indices for"):
        explain.cam_maps(model, images, index=[0])


def test_overlay_is_an_rgb_uint8_image():
    rgb = np.random.default_rng(0).random((H, W, 3)).astype(np.float32)
    cam = np.random.default_rng(1).random((H, W)).astype(np.float32)
    out = explain.overlay(rgb, cam)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8


# --------------------------------------------------------------------------------- every course model
S = 64  # the quick profile's image size


def _course_model(name):
    """A small, randomly initialised instance of each course model (what matters here is the plumbing)."""
    m = pytest.importorskip("affectlab.models")
    torch.manual_seed(0)
    if name == "FaceChannel":
        return m.FaceChannel(image_size=S, width=16, dense=32)
    if name == "FaceChannelS":
        return m.FaceChannelS(image_size=S, width=16, dense=32, hidden=16)
    if name == "SENet50Classifier":
        return m.SENet50Classifier(backbone="resnet18")
    if name == "TemporalStatNet":
        from affectlab.models.backbones import Backbone
        body = Backbone("resnet18", 16)
        return m.TemporalStatNet(variant=6, feature_dim=body.feature_dim, backbone=body, lstm_hidden=16, dense=32)
    if name == "SCANCCI":
        return m.SCANCCI("resnet18")
    if name == "REC":
        return m.REC(width=8)
    if name == "FaceRNet":
        return m.FaceRNet(t=6, hidden=8, dense=8, rec=m.REC(width=8))
    raise ValueError(name)


COURSE_MODELS = ["FaceChannel", "FaceChannelS", "SENet50Classifier", "TemporalStatNet", "SCANCCI", "REC",
                 "FaceRNet"]


@pytest.fixture(scope="module")
def faces_batch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, S, S, generator=g) * 0.5
    x[:, :, 16:48, 16:48] += 1.5
    return x


def _heads(model, x):
    out = explain.predict_frames(model, x[:1])
    return [h for h in explain.HEADS if h in out]


@pytest.mark.parametrize("name", COURSE_MODELS)
def test_every_head_of_every_course_model(name, faces_batch):
    model = _course_model(name).eval()
    heads = _heads(model, faces_batch)
    assert heads, f"{name} returns none of the heads {explain.HEADS}"
    for head in heads:
        signs = (1, -1) if head == "va" else (1,)
        indices = ("valence", "arousal") if head == "va" else (None,)
        for index in indices:
            for sign in signs:
                maps = explain.cam_maps(model, faces_batch, head=head, index=index, sign=sign)
                assert maps.shape == (2, S, S), (name, head)
                assert np.isfinite(maps).all()


@pytest.mark.parametrize("method", sorted(explain.METHODS))
@pytest.mark.parametrize("name", COURSE_MODELS)
def test_every_method_on_every_course_model(name, method, faces_batch):
    """With random weights, Grad-CAM of some outputs is legitimately all zero (no positive evidence
    anywhere), so the first output whose maps are not constant is used; none at all = broken plumbing."""
    model = _course_model(name).eval()
    head = _heads(model, faces_batch)[0]
    for index in range(4):
        maps = explain.cam_maps(model, faces_batch, head=head, index=index, method=method)
        assert maps.shape == (2, S, S) and np.isfinite(maps).all()
        if all(m.max() - m.min() > 1e-3 for m in maps):
            return
    pytest.fail(f"{method} gave constant maps for the first 4 outputs of {name}'s {head!r} head")


def assert_good_maps_at(maps, n, size):
    assert maps.shape == (n, size, size)
    assert np.isfinite(maps).all()
    for m in maps:
        assert m.max() - m.min() > 1e-3, "a constant heat map explains nothing"


def test_scancci_is_explained_at_conv4_x():
    model = _course_model("SCANCCI")
    assert explain.default_target_layer(model) is model.layer3


def test_resnet_default_layer_depends_on_the_image_size():
    model = _course_model("SENet50Classifier")
    net = model.body.net
    assert explain.default_target_layer(model, torch.zeros(1, 3, 64, 64)) is net.layer3
    assert explain.default_target_layer(model, torch.zeros(1, 3, 128, 128)) is net.layer4


def test_sequence_models_are_recognised():
    for name in ("FaceChannelS", "TemporalStatNet", "FaceRNet"):
        assert explain.is_sequence_model(_course_model(name))
    for name in ("FaceChannel", "SCANCCI", "REC"):
        assert not explain.is_sequence_model(_course_model(name))


def test_frozen_backbone_still_has_gradients(faces_batch):
    model = _course_model("SENet50Classifier").eval()
    model.requires_grad_(False)
    maps = explain.cam_maps(model, faces_batch)
    assert_good_maps_at(maps, 2, S)
