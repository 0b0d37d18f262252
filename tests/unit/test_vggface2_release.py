"""The VGGFace2 release network: a file in the PyTorch port's layout loads into the course's ResNet-50 and
SE-ResNet-50, and the loaded backbone, fed the loaders' input, computes the released network's features.

The reference here is written from the release's description alone, with ``torch.nn`` and no affectlab
import (``test_the_reference_owes_nothing_to_affectlab`` checks it), so a mistake in the course's network
cannot hide in the reference too:

- Caffe's bottleneck: 1x1 -> 3x3 -> 1x1 convolutions without bias, each followed by BatchNorm; the stage's
  stride sits on the FIRST 1x1 convolution of its first block (the 3x3 runs at stride 1), and so does the
  1x1 projection of the shortcut (``downsample.0`` / ``downsample.1``);
- the stem: a 7x7/2 convolution (padding 3), BatchNorm, ReLU, a 3x3/2 max-pool with ``ceil_mode=True`` and no
  padding;
- SENet-50: after ``bn3``, an SE gate of two 1x1 convolutions WITH biases, ``conv4`` (C -> C/16), ReLU,
  ``conv5`` (C/16 -> C), sigmoid, on the block's average over the map; it scales the block's output before the
  shortcut is added;
- ``AvgPool2d(7)`` at 224 px (a global average at other sizes), then ``fc``: 8631 identities;
- input: BGR pixels in 0-255 minus the mean (91.4953, 103.8827, 131.0912), in B, G, R order;
- the file: a pickle of a dict, state-dict name -> numpy array.
"""
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image
from torch import nn

BGR_MEAN = (91.4953, 103.8827, 131.0912)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)   # what the loaders give
IDENTITIES = 8631
TOLERANCE = 1e-3


# --- the reference: the released network, from its description ---------------------------------------------

class ReleaseBottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, se: bool):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = se
        if se:
            self.conv4 = nn.Conv2d(out, out // 16, 1, bias=True)
            self.conv5 = nn.Conv2d(out // 16, out, 1, bias=True)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
                           if stride != 1 or inplanes != out else None)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se:
            y = y * torch.sigmoid(self.conv5(torch.relu(self.conv4(y.mean((2, 3), keepdim=True)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ReleaseNetwork(nn.Module):
    def __init__(self, se: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)), 1):
            layer = []
            for b in range(blocks):
                layer.append(ReleaseBottleneck(inplanes, planes, stride if b == 0 else 1, se))
                inplanes = planes * 4
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.fc = nn.Linear(2048, IDENTITIES)

    def maps(self, bgr):
        """conv3_x (layer2) and conv4_x (layer3) of BGR, mean-subtracted 0-255 pixels, and the last map."""
        x = self.maxpool(torch.relu(self.bn1(self.conv1(bgr))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)

    def pooled(self, bgr):
        last = self.maps(bgr)[2]
        if last.shape[-1] == 7:                              # 224 px: the port's own pooling
            return nn.AvgPool2d(7, stride=1)(last).flatten(1)
        return last.mean((2, 3))


def fill_at_random(net: nn.Module, seed: int) -> dict[str, np.ndarray]:
    """Every tensor of ``net`` drawn at random (BatchNorm running statistics and SE biases too); returns the
    file's dict, name -> float32 array, and sets ``net`` to exactly those values. The scales keep the
    activations of the 0-255 input near unit size, so the SE gates do not all saturate: a wrong gate shows."""
    g = np.random.default_rng(seed)
    arrays = {}
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = tuple(t.shape)
        if name == "bn1.running_var":                        # the stem convolves 0-255 pixels
            a = g.uniform(1e4, 3e4, shape)
        elif name.endswith("running_var"):
            a = g.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean"):
            a = g.normal(0.0, 0.5, shape)
        elif t.dim() == 1 and name.endswith("weight"):      # BatchNorm scale
            a = g.uniform(0.5, 1.5, shape)
        elif name.endswith("bias"):                          # BatchNorm shift, SE and fc biases
            a = g.normal(0.0, 0.5, shape)
        else:                                                # convolution and fc weights, scaled by fan-in
            a = g.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        arrays[name] = a.astype(np.float32)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=False)
    return arrays


def photograph(size: int) -> np.ndarray:
    """A real photograph (matplotlib's Grace Hopper), centre-cropped square, ``size`` px: uint8 RGB [H, W, 3]."""
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        im = Image.open(f).convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return np.array(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))


def loader_input(rgb: np.ndarray) -> torch.Tensor:
    """What the course's loaders give: RGB in 0-1, ImageNet-normalised, [1, 3, H, W]."""
    x = torch.from_numpy(rgb).double().permute(2, 0, 1)[None] / 255
    return ((x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)).float()


def release_input(rgb: np.ndarray) -> torch.Tensor:
    """What the release reads: BGR in 0-255 minus the VGGFace2 mean, [1, 3, H, W]."""
    return (torch.from_numpy(rgb[..., ::-1].copy()).double().permute(2, 0, 1)[None]
            - torch.tensor(BGR_MEAN, dtype=torch.float64).view(1, 3, 1, 1)).float()


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# --- the course's side, imported here only, never by the reference above ------------------------------------

def course():
    from affectlab.models import backbones
    return backbones


@pytest.fixture(scope="module", params=[("resnet50", False, "resnet50_ft_weight.pkl"),
                                        ("seresnet50", True, "senet50_ft_weight.pkl")],
                ids=["resnet50", "senet50"])
def release(request, tmp_path_factory):
    """(arch, the reference in eval mode, the file's arrays, the file's path). Everything runs in float32, as
    the course does (float32 rounding here: ~1e-5 relative at most)."""
    arch, se, fname = request.param
    torch.manual_seed(0)
    ref = ReleaseNetwork(se)
    arrays = fill_at_random(ref, seed=1 + se)
    path = tmp_path_factory.mktemp(arch) / fname
    # a pickle of name -> numpy array, as the port's, in Python 3's default protocol (the port's files come from
    # Python 2: protocol 2, which test_weights.py covers; writing this file in it takes 5x as long)
    path.write_bytes(pickle.dumps(arrays, protocol=4))
    return arch, ref.eval(), arrays, path


@pytest.fixture(scope="module")
def loaded(release):
    """The course's backbone for these weights, loaded from the file through the public API: (body, report)."""
    arch, _, _, path = release
    bb = course()
    body = bb.Backbone(arch, vggface2=True)
    return body, bb.load_vggface2(body, path)


def test_the_reference_owes_nothing_to_affectlab():
    for cls in (ReleaseBottleneck, ReleaseNetwork):
        assert cls.__module__ == __name__ and "affectlab" not in cls.__module__
    module = sys.modules[__name__]
    for fn in (ReleaseNetwork.__init__, ReleaseBottleneck.forward, fill_at_random, release_input, photograph):
        assert fn.__globals__ is vars(module)
    leaks = [name for name, value in vars(module).items()
             if (value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", "") or "")
             .startswith("affectlab")]
    assert leaks == [], f"the reference's globals hold affectlab objects: {leaks}"


def test_the_loaded_backbone_computes_the_released_network(release, loaded):
    arch, ref, arrays, _ = release
    body, report = loaded
    n = len(arrays) - 2                                        # every tensor but fc.weight / fc.bias
    assert (len(report.loaded), report.model_tensors, report.missing, report.unexpected) == (n, n, [], [])
    assert report.classifier == ["fc.weight", "fc.bias"] and report.identities == IDENTITIES
    assert f"matched {n} of the model's {n} tensors (100%)" in str(report)
    assert f"{IDENTITIES} identities) is not part of the backbone" in str(report)
    body.eval()
    with torch.no_grad():
        for size in (224, 112):                                # AvgPool2d(7) at 224; a global average at 112
            rgb = photograph(size)
            ours, theirs = body(loader_input(rgb)), ref.pooled(release_input(rgb))
            assert ours.shape == theirs.shape == (1, 2048)
            assert rel_error(ours, theirs) < TOLERANCE, (arch, size, rel_error(ours, theirs))
        # the check has teeth: the same tensors in the libraries' own ResNet (stride on the 3x3, a padded
        # max-pool), fed the release's BGR pixels, compute other features (0.26-0.39 relative error here)
        plain = course().Backbone(arch).eval()
        plain.net.load_state_dict(body.net.state_dict())
        assert rel_error(plain(release_input(rgb)), theirs) > 0.1


def test_what_the_course_relies_on_still_holds(release, loaded):
    _, ref, _, _ = release
    bb = course()
    from affectlab import explain
    from affectlab.models.scan import SCANCCI

    body = loaded[0].eval()
    assert all(isinstance(getattr(body.net, f"layer{i}"), nn.Sequential) for i in range(1, 5))
    stages = bb.backbone_stages(body)
    assert list(stages) == ["stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    assert stages["conv4_x"] is body.net.layer3
    rgb = photograph(112)
    with torch.no_grad():
        c3, c4, _ = ref.maps(release_input(rgb))
        taps = bb.feature_taps(body, loader_input(rgb))         # SCAN's taps: through the stem's conversion
        assert rel_error(taps["conv3_x"], c3) < TOLERANCE and rel_error(taps["conv4_x"], c4) < TOLERANCE
        scan = SCANCCI(body, shared_local=True).eval()
        fu, fl = scan.maps(loader_input(rgb))
        assert rel_error(fu, c3) < TOLERANCE and rel_error(fl, c4) < TOLERANCE
    assert explain.default_target_layer(scan) is body.net.layer3      # Grad-CAM's conv4_x
    bb.freeze_all_but(body, ("conv5_x",))
    trainable = {n.split(".")[1] for n, p in body.named_parameters() if p.requires_grad}
    body.requires_grad_(True)
    assert trainable == {"layer4"}


def test_a_partial_file_is_refused_unless_allowed(release, tmp_path):
    arch, _, arrays, path = release
    bb = course()
    gone = ["layer4.2.bn3.running_var", "layer4.2.conv3.weight"]
    if arch == "seresnet50":
        gone += ["layer2.0.conv4.weight", "layer2.0.conv4.bias", "layer2.0.conv5.bias"]
    part = tmp_path / "partial.pkl"
    part.write_bytes(pickle.dumps({k: v for k, v in arrays.items() if k not in gone and not k.startswith("fc.")},
                                  protocol=2))
    n = len(arrays) - 2
    body = bb.Backbone(arch, vggface2=True)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    with pytest.raises(bb.WeightMismatchError) as e:
        bb.load_vggface2(body, part)
    order = list(body.net.state_dict())
    first = min(gone, key=lambda k: order.index(bb.backbone_name(k)))
    assert str(e.value).startswith(
        f"{part}: would leave the backbone partly random — partial.pkl: matched {n - len(gone)} of the model's {n} "
        f"tensors ({(n - len(gone)) / n:.0%}); {len(gone)} missing, 0 unexpected, 0 with a different shape; "
        f"not in the file: {bb.backbone_name(first)}")
    assert str(e.value).endswith("Pass allow_partial=True to load what matches anyway.")
    assert all(torch.equal(before[k], v) for k, v in body.state_dict().items())      # untouched
    with pytest.warns(UserWarning, match=rf"partial\.pkl: partial load \(allow_partial=True\) — partial\.pkl: "
                                         rf"matched {n - len(gone)} of the model's {n} tensors"):
        report = bb.load_vggface2(body, part, allow_partial=True)
    assert (len(report.loaded), len(report.missing)) == (n - len(gone), len(gone))
    assert sorted(report.missing) == sorted(bb.backbone_name(k) for k in gone)
    assert torch.equal(body.net.layer1[0].conv1.weight, torch.from_numpy(arrays["layer1.0.conv1.weight"]))
    assert torch.equal(body.net.layer4[2].conv3.weight, before["net.layer4.2.conv3.weight"])   # kept its own
