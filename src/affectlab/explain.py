"""Where a model looks: Grad-CAM, Grad-CAM++ and Score-CAM for every course model and every head.

pytorch-grad-cam explains a model that maps an image batch ``[B, 3, H, W]`` to one tensor. The course's
models return a dict of heads (``"expr"``, ``"va"``, ``"au"``, ``"intensity"``) and the sequence models take
clips ``[B, s, 3, H, W]`` (or padded videos with lengths). Two small wrappers bridge the gap *without
changing the model*:

- ``HeadOutput(model, head)`` picks one head of the dict;
- ``FrameAsClip(model)`` feeds each frame as a clip of ``repeat`` copies of itself (and lengths for video
  models), so a sequence model is explained per frame through its frame backbone and head.

Targets turn a head's output into the scalar whose gradient is explained: pytorch-grad-cam's
``ClassifierOutputTarget`` for an expression class or an AU logit, and ``RegressionTarget(index, sign)`` for
valence up / down, arousal, or a reaction intensity. ``cam_maps`` puts it together; ``default_target_layer``
names the layer each model is explained at; ``sanity_check`` is Adebayo et al.'s model-randomisation test.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import types
from typing import Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy.stats import spearmanr
from torch import nn

from affectlab.labels import EXPRESSIONS, REACTIONS
from affectlab.train import predict

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM}
HEADS = ("expr", "va", "au", "intensity")
VA_NAMES = ("valence", "arousal")


# ----------------------------------------------------------------------------------------------- wrappers
class HeadOutput(nn.Module):
    """A dict-output model seen as a single-tensor model: ``HeadOutput(model, "va")(x) == model(x)["va"]``."""

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, *args):
        out = self.model(*args)
        if not isinstance(out, dict):
            return out  # already a single tensor
        if self.head not in out:
            raise KeyError(f"{type(self.model).__name__} has no head {self.head!r}; it returns {sorted(out)}")
        return out[self.head]


class FrameAsClip(nn.Module):
    """A sequence model seen as a frame model: each frame ``[3, H, W]`` becomes a clip of ``repeat`` copies
    ``[repeat, 3, H, W]``, so Grad-CAM explains the frame backbone and the head on that frame alone. Video
    models that take ``(x, lengths)`` get ``lengths = repeat``, the clip padded to their ``t`` when they
    have one (FaceRNet's padded length).

    The target layer sees ``B * repeat`` frames; ``reshape_transform`` averages the copies back to ``B`` so
    the heat maps line up with the input batch (for layers inside the frame backbone).
    """

    def __init__(self, model: nn.Module, repeat: int = 1):
        super().__init__()
        self.model, self.repeat = model, int(repeat)
        self.takes_lengths = _takes_lengths(model)

    def forward(self, x):
        b = x.shape[0]
        clip = x.unsqueeze(1).expand(-1, self.repeat, *x.shape[1:])
        if not self.takes_lengths:
            return self.model(clip.contiguous())
        t = int(getattr(self.model, "t", self.repeat))
        if t > self.repeat:  # padding frames are never seen: lengths tell the model where the video ends
            clip = torch.cat([clip, clip.new_zeros(b, t - self.repeat, *x.shape[1:])], 1)
        lengths = torch.full((b,), self.repeat, dtype=torch.long, device=x.device)
        return self.model(clip.contiguous(), lengths)

    def reshape_transform(self, activations: torch.Tensor) -> torch.Tensor:
        if self.repeat == 1 or activations.dim() != 4:
            return activations
        return activations.reshape(-1, self.repeat, *activations.shape[1:]).mean(1)


# The course's models over clips [B, s, 3, H, W] (FaceRNet is recognised by its (x, lengths) signature).
SEQUENCE_MODELS = {"FaceChannelS", "TemporalStatNet", "FaceRNet"}


def _takes_lengths(model: nn.Module) -> bool:
    """True for video models whose forward is ``(x, lengths)``."""
    params = list(inspect.signature(model.forward).parameters.values())
    return len(params) >= 2 and params[1].kind in (params[1].POSITIONAL_ONLY, params[1].POSITIONAL_OR_KEYWORD)


def is_sequence_model(model: nn.Module) -> bool:
    """A model over clips: one of the course's, one declaring ``is_sequence = True``, or one taking lengths."""
    return (type(model).__name__ in SEQUENCE_MODELS or bool(getattr(model, "is_sequence", False))
            or _takes_lengths(model))


# ------------------------------------------------------------------------------------------------ targets
class RegressionTarget:
    """The scalar ``sign * output[index]`` of a regression head: valence up (``index=0, sign=+1``) or down
    (``sign=-1``), arousal (``index=1``), or a reaction intensity. Works on one sample's row (what
    pytorch-grad-cam passes) and on a batch."""

    def __init__(self, index: int = 0, sign: int = +1):
        if sign not in (+1, -1):
            raise ValueError(f"sign must be +1 or -1, got {sign!r}")
        self.index, self.sign = int(index), sign

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return self.sign * model_output[..., self.index]


def head_index(head: str, index: int | str) -> int:
    """An output index from a name: an expression, ``"valence"`` / ``"arousal"``, a reaction, or an int."""
    if isinstance(index, (int, np.integer)):
        return int(index)
    names = {"expr": EXPRESSIONS, "va": VA_NAMES, "intensity": REACTIONS}.get(head, ())
    if index in names:
        return names.index(index)
    raise ValueError(f"unknown {head!r} output {index!r}; use an int or one of {list(names)}")


def make_targets(head: str, indices: Sequence[int], sign: int = +1) -> list:
    """One pytorch-grad-cam target per image: logits (expression class, AU) or a signed regression output."""
    if head in ("expr", "au"):
        if sign != +1:
            raise ValueError(f"sign=-1 is for regression heads ('va', 'intensity'), not {head!r}")
        return [ClassifierOutputTarget(int(i)) for i in indices]
    if head in ("va", "intensity"):
        return [RegressionTarget(int(i), sign) for i in indices]
    raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")


# ------------------------------------------------------------------------------------------------- layers
def _paper_layer(model: nn.Module) -> nn.Module | None:
    """The layer a paper names, where the paper names one. SCAN+CCI's Grad-CAM figures use conv4_x, which
    is torchvision's ``layer3``; the model exposes its backbone as ``backbone`` (or ``frame_model``)."""
    if type(model).__name__ == "SCANCCI":
        for path in ("backbone.layer3", "frame_model.layer3", "backbone.body.layer3", "layer3"):
            layer = _get(model, path)
            if layer is not None:
                return layer
    return None


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


@torch.no_grad()
def _last_spatial_module(model: nn.Module, wrapped: nn.Module, example: torch.Tensor, min_cells: int = 4
                         ) -> nn.Module:
    """The module that finishes last in a forward pass among those called once that output a spatial map
    ``[N, C, h, w]`` with h, w >= ``min_cells`` (a 2x2 map cannot say where on a face) — for a ResNet at
    112 px, ``layer4``; at 64 px, ``layer3``; for a plain CNN, its last conv block before the pooling.
    Modules called twice per forward (a shared ReLU, a reused pooling) are skipped: their hooks would
    record two maps. Falls back to the largest-but-last map when none is that large."""
    order: list[nn.Module] = []
    calls: dict[nn.Module, int] = {}
    cells: dict[nn.Module, int] = {}

    def hook(module, _inp, out):
        calls[module] = calls.get(module, 0) + 1
        order.append(module)
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            cells[module] = min(out.shape[-2:])

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        was_training = wrapped.training
        wrapped.eval()(example[:1])
        wrapped.train(was_training)
    finally:
        for h in handles:
            h.remove()
    once = [m for m in order if calls[m] == 1 and cells.get(m, 0) > 1]
    for module in reversed(once):
        if cells[module] >= min_cells:
            return module
    if once:
        return once[-1]
    raise ValueError(f"{type(model).__name__} has no module with a spatial output to explain; pass layer=")


def default_target_layer(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """The layer Grad-CAM explains ``model`` at, in this order of preference:

    1. ``model.gradcam_layer`` when the model names one (a module or a submodule path);
    2. the paper's own layer (conv4_x = ``layer3`` for SCAN+CCI);
    3. otherwise the last block of the frame network whose map is at least 4x4 cells (for a ResNet,
       ``layer4`` at 112 px and ``layer3`` = conv4_x at the quick profile's 64 px; FaceChannel's shunting
       inhibition layer), found by running ``example`` (a frame batch ``[B, 3, H, W]``; default 3x64x64
       zeros) through the model.
    """
    named = getattr(model, "gradcam_layer", None)
    if isinstance(named, str):
        return model.get_submodule(named)
    if isinstance(named, nn.Module):
        return named
    layer = _paper_layer(model)
    if layer is not None:
        return layer
    if example is None:
        p = next(model.parameters())
        example = torch.zeros(1, 3, 64, 64, device=p.device)
    wrapped = FrameAsClip(model) if is_sequence_model(model) else model
    return _last_spatial_module(model, wrapped, example)


# ---------------------------------------------------------------------------------------------- heat maps
def predict_frames(model: nn.Module, x: torch.Tensor, repeat: int = 1) -> dict[str, torch.Tensor]:
    """The model's outputs on a frame batch (sequence models see each frame as a clip), without gradients,
    as float tensors on the CPU (``train.predict``, the one predict loop); a plain tensor output is "expr"."""
    # A fresh wrapper is in training mode: give it the model's, which ``predict`` restores afterwards.
    net = FrameAsClip(model, repeat).train(model.training) if is_sequence_model(model) else model
    out, _ = predict(net, [(x, {})])          # one batch, no targets; on the model's device
    return {"expr": out["out"]} if set(out) == {"out"} else out


def cam_maps(
    model: nn.Module,
    x: torch.Tensor,
    head: str = "expr",
    index: int | str | Sequence[int] | None = None,
    sign: int = +1,
    method: str = "gradcam",
    layer: nn.Module | None = None,
    repeat: int = 1,
    batch_size: int = 32,
) -> np.ndarray:
    """Heat maps ``[B, H, W]`` in [0, 1] of ``x`` (a normalised frame batch ``[B, 3, H, W]``) for one head.

    ``index``: the output to explain — an expression / AU index (default: each image's predicted class;
    for an AU the most active one), ``"valence"``/``"arousal"`` (default valence) or a reaction (default the
    strongest); a sequence to give one per image. ``sign=-1`` explains a regression output going *down*.
    ``method``: ``"gradcam"``, ``"gradcam++"`` or ``"scorecam"`` (gradient-free, one forward per channel).
    ``layer``: default ``default_target_layer(model)``. Sequence models are explained per frame
    (``FrameAsClip``, each frame a clip of ``repeat`` copies).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be a frame batch [B, 3, H, W]; got shape {tuple(x.shape)}")
    device = next(model.parameters()).device
    x = x.to(device)
    seq = is_sequence_model(model)
    frame_net = FrameAsClip(model, repeat) if seq else model
    layer = layer if layer is not None else default_target_layer(model, x[:1])
    indices = _indices(model, x, head, index, repeat)
    targets = make_targets(head, indices, sign)
    net = HeadOutput(frame_net, head)
    reshape = frame_net.reshape_transform if seq and repeat > 1 else None
    was_training = model.training
    if method != "scorecam":
        # Frozen backbones have no gradient at the target layer unless the input asks for one.
        x = x.detach().requires_grad_(True)
    with METHODS[method](model=net, target_layers=[layer], reshape_transform=reshape) as cam, _quiet_scorecam():
        cam.batch_size = batch_size  # Score-CAM's forwards per batch of masked images
        maps = cam(input_tensor=x, targets=targets)
    model.train(was_training)
    return maps.astype(np.float32)


@contextlib.contextmanager
def _quiet_scorecam():
    """Score-CAM draws a tqdm bar per image, which floods a notebook; silence it for the call only."""
    import pytorch_grad_cam.score_cam as score_cam

    real = score_cam.tqdm
    score_cam.tqdm = types.SimpleNamespace(tqdm=lambda it, *a, **k: it)
    try:
        yield
    finally:
        score_cam.tqdm = real


def _indices(model, x, head, index, repeat) -> list[int]:
    n = x.shape[0]
    if index is None:
        out = predict_frames(model, x, repeat)
        if head not in out:
            raise KeyError(f"{type(model).__name__} has no head {head!r}; it returns {sorted(out)}")
        if head == "va":
            return [0] * n  # valence
        return out[head].argmax(-1).tolist()  # predicted class / most active AU / strongest reaction
    if isinstance(index, (list, tuple, np.ndarray, torch.Tensor)):
        idx = [head_index(head, i) for i in (index.tolist() if hasattr(index, "tolist") else index)]
        if len(idx) != n:
            raise ValueError(f"got {len(idx)} indices for {n} images")
        return idx
    return [head_index(head, index)] * n


# ------------------------------------------------------------------------------------------------ overlays
def to_rgb(x: torch.Tensor) -> np.ndarray:
    """A normalised batch ``[B, 3, H, W]`` (or one image) as float RGB ``[B, H, W, 3]`` in [0, 1]."""
    from affectlab.data.loaders import denormalize

    img = denormalize(x.detach().cpu())
    img = img if img.dim() == 4 else img[None]
    return img.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)


def overlay(rgb: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """pytorch-grad-cam's ``show_cam_on_image`` over one RGB image in [0, 1]: a uint8 ``[H, W, 3]``."""
    return show_cam_on_image(np.asarray(rgb, dtype=np.float32), cam, use_rgb=True, image_weight=image_weight)


def gallery(
    model: nn.Module,
    x: torch.Tensor,
    y_expr: Sequence[int] | None = None,
    head: str = "expr",
    method: str = "gradcam",
    layer: nn.Module | None = None,
    title: str | None = None,
    ncols: int = 8,
    **cam_kwargs,
):
    """A figure of Grad-CAM overlays with the predicted emotion under each face (and the true one when
    ``y_expr`` is given), as in the SCAN+CCI paper's figures; models without an expression head show their
    predicted valence / arousal instead. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    maps = cam_maps(model, x, head=head, method=method, layer=layer, **cam_kwargs)
    preds = predict_frames(model, x, cam_kwargs.get("repeat", 1))
    rgb = to_rgb(x)
    n = len(rgb)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.9 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(overlay(rgb[i], maps[i]))
        ax.set_title(_caption(preds, i, y_expr), fontsize=7, y=-0.28)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _caption(preds: dict, i: int, y_expr) -> str:
    if "expr" in preds:
        p = preds["expr"][i].softmax(-1)
        k = int(p.argmax())
        text = f"{EXPRESSIONS[k] if k < len(EXPRESSIONS) else 'Other'} {p[k]:.0%}"
    elif "va" in preds:
        v, a = preds["va"][i].tolist()
        text = f"V {v:+.2f} A {a:+.2f}"
    else:
        text = ""
    if y_expr is not None and 0 <= int(y_expr[i]) < len(EXPRESSIONS):
        text += f"\n(true {EXPRESSIONS[int(y_expr[i])]})"
    return text


# ------------------------------------------------------------------------------------------- sanity check
def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (``reset_parameters``): same architecture, no
    learning. The model passed in is left untouched."""
    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    for m in clone.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
    return clone


def map_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between paired heat maps ``[B, H, W]`` (one value per image). A constant
    map ranks nothing, so a pair with one counts as 0 (no agreement) rather than NaN."""
    out = []
    for p, q in zip(a, b):
        if np.ptp(p) == 0 or np.ptp(q) == 0:
            out.append(0.0)
        else:
            out.append(float(spearmanr(p.ravel(), q.ravel()).statistic))
    return np.array(out)


def sanity_check(model: nn.Module, x: torch.Tensor, seed: int = 0, **cam_kwargs) -> dict:
    """Adebayo et al. (2018), model-randomisation test: an explanation that depends on what the model learnt
    must change when the weights are randomised. Returns the maps of the trained and the randomised model
    and their per-image rank correlation; a faithful method gives correlations well below 1."""
    cam_kwargs.setdefault("head", "expr")
    trained = cam_maps(model, x, **cam_kwargs)
    # Explain the same output in both models (the trained model's predicted class, not the random one's).
    if cam_kwargs.get("index") is None and cam_kwargs["head"] != "va":
        cam_kwargs["index"] = _indices(model, x.to(next(model.parameters()).device), cam_kwargs["head"], None,
                                       cam_kwargs.get("repeat", 1))
    random_model = randomize_weights(model, seed)
    random_layer = None
    if cam_kwargs.get("layer") is not None:  # the same layer, found by name in the copy
        name = next(n for n, m in model.named_modules() if m is cam_kwargs["layer"])
        random_layer = random_model.get_submodule(name)
    randomized = cam_maps(random_model, x, **{**cam_kwargs, "layer": random_layer})
    return {"trained": trained, "randomized": randomized, "rank_correlation": map_similarity(trained, randomized)}
