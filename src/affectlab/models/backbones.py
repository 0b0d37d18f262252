"""The ResNet backbones the papers build on, their stages, and a safe loader for VGGFace2 weight files.

- ``make_backbone("resnet18" | "resnet50" | "seresnet50")``: torchvision ResNets and timm's SE-ResNet-50,
  always with random weights (nothing downloads); the classifier is removed, so the model maps images
  ``[B, 3, H, W]`` to pooled features ``[B, D]`` (``model.feature_dim``).
- ``backbone_stages(model)``: the residual stages by the papers' names (``conv2_x`` … ``conv5_x``; torchvision
  and timm call them ``layer1`` … ``layer4``), e.g. to freeze all but the last stage (paper 3) or tap
  conv3_x / conv4_x (paper 4). ``feature_taps(model, x)`` runs the model and returns those maps.
- ``load_vggface2(model, path)``: VGGFace2 ResNet-50 / SENet-50 weights are distributed as Python pickles of
  numpy arrays. A pickle can run arbitrary code when loaded, so this reads them with an unpickler that admits
  only numpy arrays, dicts, lists and plain numbers, maps the file's names (PyTorch-style ``conv1.weight``
  or Caffe-style ``conv2_1_1x1_reduce/bn``) onto the backbone, and reports matched / missing / unexpected
  counts: a file that matches under half of the model's tensors, or any with another shape, is refused
  (``WeightMismatchError``); a partial match loads with a warning.
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


class Backbone(nn.Module):
    """A ResNet without its classifier: images -> pooled features ``[B, feature_dim]``.

    The stem and stages stay attributes of ``self.net`` under their library names, so weight files and
    Grad-CAM layer paths (``net.layer3``) keep working. ``width`` (ResNet-18/34 only) sets the channels of
    the first stage (64 = the standard network; 16 = the quick profile's narrow ResNet-18 with stages of
    16/32/64/128 channels, ~1/12 of the FLOPs, built with timm's ResNet class).
    """

    def __init__(self, arch: str = "resnet18", width: int = 64):
        super().__init__()
        if arch not in BACKBONES:
            raise ValueError(f"unknown backbone {arch!r}; choose one of {BACKBONES}")
        self.arch, self.width = arch, width
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_backbone(arch: str = "resnet18", width: int = 64) -> Backbone:
    return Backbone(arch, width)


def _resnet(model: nn.Module) -> nn.Module:
    """The torchvision / timm ResNet inside ``model`` (a Backbone, or a bare ResNet)."""
    net = getattr(model, "net", model)
    if not all(hasattr(net, f"layer{i}") for i in range(1, 5)):
        raise TypeError(f"{type(model).__name__} is not a ResNet-style backbone (no layer1..layer4)")
    return net


def backbone_stages(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """``stem``, ``conv2_x``, ``conv3_x``, ``conv4_x``, ``conv5_x`` -> the modules (shared, not copies)."""
    net = _resnet(model)
    act = getattr(net, "relu", None) or getattr(net, "act1")
    stages = OrderedDict(stem=nn.Sequential(net.conv1, net.bn1, act, net.maxpool))
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


# Caffe-style VGGFace2 names: conv{stage}_{block}_{1x1_reduce|3x3|1x1_increase|1x1_proj|1x1_down|1x1_up}[/bn]
_CAFFE_BLOCK = re.compile(r"^conv(\d)_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_proj|1x1_down|1x1_up)(/bn)?$")
_CAFFE_PART = {"1x1_reduce": ("conv1", "bn1"), "3x3": ("conv2", "bn2"), "1x1_increase": ("conv3", "bn3"),
               "1x1_proj": ("downsample.0", "downsample.1"), "1x1_down": ("se.fc1", None),
               "1x1_up": ("se.fc2", None)}
_PARAM_ALIASES = {"weights": "weight", "filter": "weight", "kernel": "weight", "biases": "bias",
                  "scale": "weight", "gamma": "weight", "beta": "bias", "mean": "running_mean",
                  "var": "running_var", "variance": "running_var"}


def _torch_name(name: str) -> str:
    """Map one file name onto the torchvision / timm parameter name (PyTorch-style names pass through)."""
    layer, _, param = name.rpartition(".")
    if not layer:
        return name
    param = _PARAM_ALIASES.get(param, param)
    # The cydonia999 SENet-50 port calls the SE convolutions conv_down / conv_up; timm calls them se.fc1/fc2.
    layer = layer.replace(".conv_down", ".se.fc1").replace(".conv_up", ".se.fc2")
    if layer == "conv1/7x7_s2":
        return f"conv1.{param}"
    if layer == "conv1/7x7_s2/bn":
        return f"bn1.{param}"
    if layer == "classifier":
        return f"fc.{param}"
    m = _CAFFE_BLOCK.match(layer)
    if m:
        stage, block, part, bn = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        conv, norm = _CAFFE_PART[part]
        return f"layer{stage - 1}.{block - 1}.{norm if bn else conv}.{param}"
    return f"{layer}.{param}"


# A file that fills less than this share of the model's tensors is not the model's weight file (wrong
# architecture, wrong naming scheme, or not VGGFace2 weights at all): loading it would leave most of the
# network random while looking "pre-trained".
MIN_MATCHED_SHARE = 0.5
# The VGGFace2 files carry their 8631-identity classifier; the backbone has none, so these are expected.
_CLASSIFIER = re.compile(r"^(fc|classifier)([./]|$)")


class WeightMismatchError(ValueError):
    """The weight file does not fit the model (too few tensors matched, or a matched tensor has another shape)."""


@dataclass
class LoadReport:
    """What ``load_vggface2`` did: keys loaded, model keys left at their initial values, file keys unused."""
    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    model_tensors: int = 0

    @property
    def matched_share(self) -> float:
        return len(self.loaded) / self.model_tensors if self.model_tensors else 0.0

    def __str__(self):
        return (f"{Path(self.path).name}: matched {len(self.loaded)} of the model's {self.model_tensors} tensors "
                f"({self.matched_share:.0%}); {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.mismatched)} with a different shape"
                + (f" (e.g. {self.mismatched[0]})" if self.mismatched else ""))


def load_vggface2(model: nn.Module, path: str | os.PathLike, strict: bool = False) -> LoadReport:
    """Load VGGFace2 weights from a pickle of numpy arrays into a ResNet backbone, safely.

    The file is never unpickled freely (``read_weight_pickle``: numpy arrays, dicts and numbers only). Names
    are mapped onto the torchvision / timm names and the result is checked before anything is copied:

    - any matched name whose shape differs from the model's (a different architecture), or fewer than
      ``MIN_MATCHED_SHARE`` (half) of the model's tensors matched (the wrong file or naming scheme), is a
      ``WeightMismatchError`` naming the file with the matched / missing / unexpected counts; the model is
      left untouched;
    - a partial match (some model tensors missing, or file tensors other than the identity classifier
      unused) loads what matched and warns with the counts;
    - ``strict=True`` raises on anything missing or mismatched.
    """
    import warnings

    arrays = read_weight_pickle(path)
    net = getattr(model, "net", model)
    own = net.state_dict()
    report = LoadReport(str(path), model_tensors=sum(not k.endswith("num_batches_tracked") for k in own))
    new_state = {}
    for name, arr in arrays.items():
        key = _torch_name(name)
        if key not in own:
            report.unexpected.append(name)
            continue
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(own[key].dtype)
        if tuple(t.shape) != tuple(own[key].shape):
            if t.numel() == own[key].numel():  # e.g. a bias stored as [C, 1] or [1, C]
                t = t.reshape(own[key].shape)
            else:
                report.mismatched.append(f"{name}: file {tuple(t.shape)} vs model {tuple(own[key].shape)}")
                continue
        new_state[key] = t
        report.loaded.append(key)
    report.missing = [k for k in own if k not in new_state and not k.endswith("num_batches_tracked")]
    if strict and (report.missing or report.mismatched):
        raise WeightMismatchError(f"{path}: strict load failed — {report}")
    if report.mismatched:
        raise WeightMismatchError(f"{path}: not weights of this {type(net).__name__} — {report}; a tensor of "
                                  "another shape means another architecture (e.g. ResNet-18 weights for a ResNet-50)")
    if report.matched_share < MIN_MATCHED_SHARE:
        example = f" (file names such as {', '.join(map(repr, report.unexpected[:3]))})" if report.unexpected else ""
        raise WeightMismatchError(
            f"{path}: not weights for this model — {report}; fewer than {MIN_MATCHED_SHARE:.0%} of its tensors "
            f"matched{example}. Is it the right file, for this backbone?")
    extra = [n for n in report.unexpected if not _CLASSIFIER.match(n)]
    if report.missing or extra:
        warnings.warn(f"{path}: partial load — {report}; the {len(report.missing)} missing tensor(s) keep their "
                      f"random initial values" + (f" (e.g. {report.missing[0]})" if report.missing else "")
                      + (f"; unused file tensors e.g. {extra[0]!r}" if extra else ""), stacklevel=2)
    net.load_state_dict(new_state, strict=False)
    return report
