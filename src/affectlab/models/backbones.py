"""The ResNet backbones the papers build on, their stages, and the VGGFace2 release network with its safe loader.

- ``make_backbone("resnet18" | "resnet50" | "seresnet50")``: torchvision ResNets and timm's SE-ResNet-50,
  always with random weights (nothing downloads); the classifier is removed, so the model maps images
  ``[B, 3, H, W]`` to pooled features ``[B, D]`` (``model.feature_dim``).
- ``backbone_stages(model)``: the residual stages by the papers' names (``conv2_x`` … ``conv5_x``; torchvision
  and timm call them ``layer1`` … ``layer4``), e.g. to freeze all but the last stage (paper 3) or tap
  conv3_x / conv4_x (paper 4). ``feature_taps(model, x)`` runs the model and returns those maps.
- ``Backbone("resnet50" | "seresnet50", vggface2=True)``: the network the VGGFace2 authors released (their
  Caffe ResNet-50 / SENet-50, as ported to PyTorch), which differs from torchvision's and timm's: each stage's
  stride sits on the first 1x1 convolution of its first block, the stem's max-pool is 3x3/2 with
  ``ceil_mode=True`` and no padding, and it reads BGR pixels in 0-255 minus the VGGFace2 mean. The backbone
  converts the course's input (ImageNet-normalised RGB, what every loader gives) itself
  (``VGGFace2Input``), so nothing upstream changes with the weights.
- ``load_vggface2(backbone, path)``: the port's files (``resnet50_ft_weight.pkl``, ``senet50_ft_weight.pkl``)
  are Python pickles of numpy arrays, and a pickle can run arbitrary code when loaded, so they are read with
  an unpickler that admits only numpy arrays, dicts and plain numbers. Every backbone tensor must come from
  the file (the SE gates included); a file that would leave any at its random initial value is refused with
  the counts and the first names, unless the caller passes ``allow_partial=True``. The file's ``fc`` (the
  8631-identity classifier) is not part of the backbone and is left out, said in the report.
"""
from __future__ import annotations

import io
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

STAGE_NAMES = ("conv2_x", "conv3_x", "conv4_x", "conv5_x")
BACKBONES = ("resnet18", "resnet34", "resnet50", "seresnet50")
# The VGGFace2 release networks, by the course's name: the file the PyTorch port publishes for each.
VGGFACE2_FILES = {"resnet50": "resnet50_ft_weight.pkl", "seresnet50": "senet50_ft_weight.pkl"}
# What the release network reads: BGR pixels in 0-255 minus this mean, in B, G, R order.
VGGFACE2_BGR_MEAN = (91.4953, 103.8827, 131.0912)
# What every course loader gives (affectlab.data.loaders.MEAN / STD on 0-1 RGB pixels; models may not import
# data/, so the values are repeated here and a test checks that they agree).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFace2Input(nn.Module):
    """The course's input -> the release network's: ImageNet-normalised RGB ``[B, 3, H, W]`` back to 0-255
    pixels, channels reversed to BGR, the VGGFace2 mean subtracted. One affine map per channel after the flip;
    the constants are buffers, so they follow the model's device and dtype and enter its weights' digest."""

    def __init__(self):
        super().__init__()
        bgr_std = torch.tensor(IMAGENET_STD[::-1], dtype=torch.float64)
        bgr_mean = torch.tensor(IMAGENET_MEAN[::-1], dtype=torch.float64)
        self.register_buffer("scale", (255 * bgr_std).view(1, 3, 1, 1).float())
        self.register_buffer("shift", (255 * bgr_mean - torch.tensor(VGGFACE2_BGR_MEAN, dtype=torch.float64))
                             .view(1, 3, 1, 1).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) * self.scale + self.shift


def _as_vggface2_release(net: nn.Module) -> nn.Module:
    """Make torchvision's ResNet-50 / timm's SE-ResNet-50 compute the VGGFace2 release network, in place.

    Neither library builds Caffe's original ResNet, so its two differences are set by hand on the library's
    modules: each stage's stride moves from the first block's 3x3 convolution to its first 1x1 convolution
    (the 1x1 projection shortcut keeps its stride), and the stem's max-pool becomes 3x3/2 with ``ceil_mode``
    and no padding. The rest is already the release's: the blocks, timm's SE gates (global average, a 1x1
    convolution with bias, ReLU, a 1x1 convolution with bias, sigmoid, scaling the block's output before the
    shortcut is added; the port averages with a square kernel the size of the map, the same on the square
    faces the course feeds) and the global average pooling (the port's ``AvgPool2d(7)`` at 224 px).
    Tensor names and shapes do not change, so ``layer1``-``layer4`` and every layer path stay as they are."""
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for i in range(1, 5):
        first = getattr(net, f"layer{i}")[0]
        first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
    return net


class Backbone(nn.Module):
    """A ResNet without its classifier: images -> pooled features ``[B, feature_dim]``.

    The stem and stages stay attributes of ``self.net`` under their library names, so weight files and
    Grad-CAM layer paths (``net.layer3``) keep working. ``width`` (ResNet-18/34 only) sets the channels of
    the first stage (64 = the standard network; 16 = the quick profile's narrow ResNet-18 with stages of
    16/32/64/128 channels, ~1/12 of the FLOPs, built with timm's ResNet class).

    ``vggface2=True`` (``resnet50`` / ``seresnet50``) builds the VGGFace2 release network instead
    (``_as_vggface2_release``), to load with ``load_vggface2``; its ``input_convention`` turns the course's
    ImageNet-normalised RGB input into the BGR, mean-subtracted 0-255 pixels the release reads, and
    ``backbone_stages`` puts it at the head of the stem, so the stages alone compute the release network too.
    """

    def __init__(self, arch: str = "resnet18", width: int = 64, vggface2: bool = False):
        super().__init__()
        if arch not in BACKBONES:
            raise ValueError(f"unknown backbone {arch!r}; choose one of {BACKBONES}")
        if vggface2 and (arch not in VGGFACE2_FILES or width != 64):
            raise ValueError(f"the VGGFace2 release has {' and '.join(VGGFACE2_FILES)} (width 64) only, "
                             f"not {arch}" + (f" of width {width}" if width != 64 else ""))
        self.arch, self.width, self.vggface2 = arch, width, vggface2
        if width != 64:
            if arch not in ("resnet18", "resnet34"):
                raise ValueError(f"width={width} is only available for resnet18/resnet34, not {arch}")
            from timm.models.resnet import BasicBlock, ResNet

            layers = [2, 2, 2, 2] if arch == "resnet18" else [3, 4, 6, 3]
            self.net = ResNet(BasicBlock, layers, channels=tuple(width * m for m in (1, 2, 4, 8)),
                              stem_width=width, num_classes=0)
            self.feature_dim = self.net.num_features
        elif arch == "seresnet50":
            import timm

            self.net = timm.create_model("seresnet50", pretrained=False, num_classes=0)
            self.feature_dim = self.net.num_features
        else:
            import torchvision

            self.net = getattr(torchvision.models, arch)(weights=None)
            self.feature_dim = self.net.fc.in_features
            self.net.fc = nn.Identity()
        if vggface2:
            _as_vggface2_release(self.net)
            self.input_convention = VGGFace2Input()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vggface2:
            x = self.input_convention(x)
        return self.net(x)


def make_backbone(arch: str = "resnet18", width: int = 64, vggface2: bool = False) -> Backbone:
    return Backbone(arch, width, vggface2)


def _resnet(model: nn.Module) -> nn.Module:
    """The torchvision / timm ResNet inside ``model`` (a Backbone, or a bare ResNet)."""
    net = getattr(model, "net", model)
    if not all(hasattr(net, f"layer{i}") for i in range(1, 5)):
        raise TypeError(f"{type(model).__name__} is not a ResNet-style backbone (no layer1..layer4)")
    return net


def backbone_stages(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """``stem``, ``conv2_x``, ``conv3_x``, ``conv4_x``, ``conv5_x`` -> the modules (shared, not copies).
    A backbone that converts its input (the VGGFace2 release) converts it first thing in the stem."""
    net = _resnet(model)
    act = getattr(net, "relu", None) or getattr(net, "act1")
    convention = getattr(model, "input_convention", None)
    stem = ([convention] if convention is not None else []) + [net.conv1, net.bn1, act, net.maxpool]
    stages = OrderedDict(stem=nn.Sequential(*stem))
    for name, i in zip(STAGE_NAMES, range(1, 5)):
        stages[name] = getattr(net, f"layer{i}")
    return stages


def freeze_all_but(model: nn.Module, trainable: tuple[str, ...] = ("conv5_x",)) -> nn.Module:
    """Freeze every backbone parameter except the named stages (BatchNorm statistics still update in
    train mode; call ``.eval()`` on frozen stages to keep them fixed too)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in backbone_stages(model).items():
        if name in trainable:
            for p in module.parameters():
                p.requires_grad_(True)
    return model


def feature_taps(model: nn.Module, x: torch.Tensor, taps: tuple[str, ...] = ("conv3_x", "conv4_x")) -> dict:
    """Run the backbone's stages on ``x`` and return the named intermediate maps ``[B, C, h, w]``."""
    out, h = {}, x
    for name, module in backbone_stages(model).items():
        h = module(h)
        if name in taps:
            out[name] = h
        if len(out) == len(taps):
            break
    return out


# --- safe VGGFace2 weight loading -------------------------------------------------------------------------

class UnsafePickleError(pickle.UnpicklingError):
    """The weight file asked the unpickler for something other than arrays, dicts and numbers."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """``find_class`` is the only door through which a pickle reaches code; open it for numpy's array
    reconstruction and a few plain containers, nothing else (no os.system, no eval, no torch internals)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
        ("builtins", "float"), ("builtins", "int"),
        ("__builtin__", "dict"), ("__builtin__", "list"), ("__builtin__", "tuple"),  # Python 2 pickles
        ("collections", "OrderedDict"),
        # Protocol-2 pickles written by Python 3 store an array's raw bytes as _codecs.encode(str, "latin1"):
        # a pure str -> bytes conversion, harmless.
        ("_codecs", "encode"),
    }

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # the VGGFace2 files were written by Python 2
        self.source = source

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                f"{self.source}: refusing to load {module}.{name} — a weight file should hold only numpy "
                "arrays, dicts and numbers; this pickle would run code")
        return super().find_class(module, name)


def read_weight_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a pickle of numpy arrays safely; nested dicts are flattened to dotted names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        obj = _ArraysOnlyUnpickler(io.BytesIO(data), source=str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: not a readable pickle of numpy arrays ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of arrays at the top level, found {type(obj).__name__}")
    flat: dict[str, np.ndarray] = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                raise ValueError(f"{path}: entry {prefix!r} is an object array, not numbers")
            flat[prefix] = value
        elif isinstance(value, (int, float, np.number)):
            flat[prefix] = np.asarray(value)
        else:
            raise ValueError(f"{path}: entry {prefix!r} is a {type(value).__name__}, not an array")

    walk("", obj)
    return flat


# The port names each SE gate's two 1x1 convolutions conv4 (squeeze) and conv5 (excite), beside the block's
# conv1-conv3; timm's SE-ResNet-50 keeps them as se.fc1 / se.fc2. Every other name is PyTorch's own.
_SE_GATES = re.compile(r"^(layer\d\.\d+)\.conv([45])\.(weight|bias)$")
# The release files carry the 8631-identity classifier of VGGFace2; the backbone has none.
_CLASSIFIER = re.compile(r"^fc\.")
# A file that fills less than this share of the model's tensors is not the model's weight file (wrong
# architecture, wrong naming scheme, or not VGGFace2 weights at all), even with allow_partial.
MIN_MATCHED_SHARE = 0.5


def backbone_name(name: str) -> str:
    """The backbone's name for one tensor of the port's file (``layer1.0.conv4.bias`` -> ``layer1.0.se.fc1.bias``)."""
    m = _SE_GATES.match(name)
    return f"{m.group(1)}.se.fc{int(m.group(2)) - 3}.{m.group(3)}" if m else name


class WeightMismatchError(ValueError):
    """The weight file does not fit the model: too few tensors matched, a tensor of another shape, a backbone
    tensor the file does not fill (without ``allow_partial``), or a model that is not the release network."""


@dataclass
class LoadReport:
    """What ``load_vggface2`` did: keys loaded, model keys left at their initial values, file keys unused,
    and the file's identity classifier, which is not part of the backbone."""
    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    classifier: list[str] = field(default_factory=list)
    identities: int = 0
    model_tensors: int = 0

    @property
    def matched_share(self) -> float:
        return len(self.loaded) / self.model_tensors if self.model_tensors else 0.0

    def __str__(self):
        fc = (f"; the file's identity classifier ({', '.join(self.classifier)}: {self.identities} identities) "
              "is not part of the backbone and was left out" if self.classifier else "")
        return (f"{Path(self.path).name}: matched {len(self.loaded)} of the model's {self.model_tensors} tensors "
                f"({self.matched_share:.0%}); {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.mismatched)} with a different shape"
                + (f" (e.g. {self.mismatched[0]})" if self.mismatched else "") + fc)


def _first(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" … ({len(names) - n} more)" if len(names) > n else "")


def load_vggface2(model: nn.Module, path: str | os.PathLike, allow_partial: bool = False) -> LoadReport:
    """Load a VGGFace2 release file (the PyTorch port's pickle of numpy arrays) into ``model``, a
    ``Backbone(arch, vggface2=True)``, safely; returns the ``LoadReport``.

    The file is never unpickled freely (``read_weight_pickle``: numpy arrays, dicts and numbers only). Its
    names are the port's (``backbone_name``: PyTorch's, the SE gates ``conv4`` / ``conv5``); ``fc`` is left
    out (not part of the backbone; the report says so). Everything is checked before anything is copied, and
    a refusal is a ``WeightMismatchError`` naming the file, with the counts, that leaves the model untouched:

    - any tensor whose shape differs from the model's (another architecture), or fewer than
      ``MIN_MATCHED_SHARE`` (half) of the model's tensors matched (the wrong file or naming scheme);
    - a model that is not the release network (a backbone built without ``vggface2=True`` would compute
      other features from the same tensors);
    - a backbone tensor the file does not fill (it would keep its random initial value) or a file tensor
      the backbone has no place for (e.g. SENet-50's SE gates for a ResNet-50), unless ``allow_partial=True``:
      then what matched loads, with a warning giving the counts.
    """
    import warnings

    arrays = read_weight_pickle(path)
    net = getattr(model, "net", model)
    own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = LoadReport(str(path), model_tensors=len(own))
    new_state = {}
    for name, arr in arrays.items():
        if name.endswith("num_batches_tracked"):    # a counter of training steps, not a weight
            continue
        if _CLASSIFIER.match(name):
            report.classifier.append(name)
            report.identities = report.identities or (arr.shape[0] if arr.ndim else 0)
            continue
        key = backbone_name(name)
        if key not in own:
            report.unexpected.append(name)
            continue
        if tuple(arr.shape) != tuple(own[key].shape):
            report.mismatched.append(f"{name}: file {tuple(arr.shape)} vs model {tuple(own[key].shape)}")
            continue
        new_state[key] = torch.from_numpy(np.ascontiguousarray(arr)).to(own[key].dtype)
        report.loaded.append(key)
    report.missing = [k for k in own if k not in new_state]
    if report.mismatched:
        raise WeightMismatchError(f"{path}: not weights of this {type(net).__name__} — {report}; a tensor of "
                                  "another shape means another architecture (e.g. ResNet-18 weights for a ResNet-50)")
    if report.matched_share < MIN_MATCHED_SHARE:
        example = f" (file names such as {', '.join(map(repr, report.unexpected[:3]))})" if report.unexpected else ""
        raise WeightMismatchError(
            f"{path}: not weights for this model — {report}; fewer than {MIN_MATCHED_SHARE:.0%} of its tensors "
            f"matched{example}. Is it the right file, for this backbone?")
    if not getattr(model, "vggface2", False):
        arch = getattr(model, "arch", "resnet50")
        raise WeightMismatchError(
            f"{path}: the VGGFace2 weights compute the release network, and this {type(model).__name__} is not "
            f"it (its strides sit on the 3x3 convolutions, its max-pool is padded, it reads RGB): build the "
            f"backbone with Backbone({arch!r}, vggface2=True)")
    if (report.missing or report.unexpected) and not allow_partial:
        hint = ""
        if any(".se." in k for k in report.missing) or any(_SE_GATES.match(n) for n in report.unexpected):
            hint = (f" The SE gates (conv4 / conv5 in the file) belong to {VGGFACE2_FILES['seresnet50']}, for "
                    f"Backbone('seresnet50', vggface2=True); {VGGFACE2_FILES['resnet50']} is the plain "
                    "ResNet-50's, for Backbone('resnet50', vggface2=True).")
        raise WeightMismatchError(
            f"{path}: would leave the backbone partly random — {report}"
            + (f"; not in the file: {_first(report.missing)}" if report.missing else "")
            + (f"; no place in the backbone for: {_first(report.unexpected)}" if report.unexpected else "")
            + f".{hint} Pass allow_partial=True to load what matches anyway.")
    if report.missing or report.unexpected:
        warnings.warn(f"{path}: partial load (allow_partial=True) — {report}; the {len(report.missing)} missing "
                      f"tensor(s) keep their random initial values"
                      + (f" (first: {_first(report.missing, 3)})" if report.missing else "")
                      + (f"; unused file tensors (first: {_first(report.unexpected, 3)})" if report.unexpected else ""),
                      stacklevel=2)
    net.load_state_dict(new_state, strict=False)
    return report
