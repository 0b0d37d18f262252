"""FaceChannel and FaceChannelS (Barros & Sciutti, ABAW 2020; paper 1 of the course).

FaceChannel (FC): a VGG-16-like network with far fewer parameters — 10 convolutions (3×3) in four blocks,
4 max-pools, a shunting-inhibition layer on the last block (the FaceChannel's own trick: a second conv whose
output divides the first, sharpening responses), a 500-unit dense layer and three heads: arousal and valence
(tanh, trained with MSE) and 7 expressions (cross-entropy).

Widths follow the authors' Aff-Wild2 code (``nch = 64``: 16, 16 | 32, 32 | 32, 32, 32 | 64, 64, 64 channels).
At the paper's 120×120×3 input that is 1.75M parameters for FC and 2.0M for FC-S (FC + LSTM(100) +
dense(100)); the paper's "around 2 million" is the FC-S figure. ``width`` scales every block (the quick
profile keeps 64 and shrinks the image to 64 px). BatchNorm after each convolution (``batch_norm=True``, as
in the original FaceChannel; the Aff-Wild2 code had it commented out) makes short CPU runs converge.

FaceChannelS (FC-S): the FC's per-frame 500-d features of a 10-frame clip -> LSTM(100) -> dense(100) -> the
same heads, predicting the clip's last frame. It is initialised from a trained FC (``from_facechannel``), as
in the paper; it also accepts cached per-frame FC features ``[B, s, 500]`` so the quick profile can train
the temporal part without re-running the CNN.

Variants of the paper's Table I: ``tasks=("arousal",)`` is FC_A, ``("valence",)`` FC_V, ``("expr",)`` FC_E,
all three the joint FC; the same for FC-S. A variant returns only its heads: ``"expr"`` logits ``[B, 7]``
and/or ``"va"`` ``[B, 2]`` (valence, arousal). A one-dimension variant fills the column it does not predict
with zeros (no parameters, no gradient) so the course's VA metrics and losses keep one shape.

The paper's settings, data preparation and training: ``affectlab.recipes.facechannel``.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from affectlab.labels import EXPRESSIONS
from affectlab.losses import MultiTaskLoss, masked_cross_entropy, masked_mse

TASKS = ("arousal", "valence", "expr")
VARIANTS = {"FC_A": ("arousal",), "FC_V": ("valence",), "FC_E": ("expr",), "FC": TASKS}


class ShuntingInhibition(nn.Module):
    """out = excitation / (decay + inhibition), with a learnable per-channel decay (initialised at 0.5)."""

    def __init__(self, channels: int, decay: float = 0.5):
        super().__init__()
        self.decay = nn.Parameter(torch.full((1, channels, 1, 1), decay))

    def forward(self, excitation: torch.Tensor, inhibition: torch.Tensor) -> torch.Tensor:
        # The decay is kept positive so the division never blows up (inhibition is a ReLU, >= 0).
        return excitation / (self.decay.clamp_min(1e-2) + inhibition)


def _conv(cin: int, cout: int, bn: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FaceChannelTrunk(nn.Module):
    """The FC's convolutions + dense(500): images ``[B, 3, H, W]`` -> features ``[B, 500]``."""

    def __init__(self, image_size: int = 120, width: int = 64, dense: int = 500, batch_norm: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        q, h, w = max(width // 4, 1), max(width // 2, 1), width
        self.block1 = nn.Sequential(_conv(3, q, batch_norm), _conv(q, q, batch_norm))
        self.block2 = nn.Sequential(_conv(q, h, batch_norm), _conv(h, h, batch_norm))
        self.block3 = nn.Sequential(_conv(h, h, batch_norm), _conv(h, h, batch_norm), _conv(h, h, batch_norm))
        self.block4 = nn.Sequential(_conv(h, w, batch_norm), _conv(w, w, batch_norm))
        self.conv10 = _conv(w, w, batch_norm)          # excitation
        self.conv10_inhibition = _conv(w, w, batch_norm)
        self.inhibition = ShuntingInhibition(w)
        self.pool = nn.MaxPool2d(2)                     # floor, as Keras' default 'valid' pooling
        self.drop = nn.Dropout(dropout / 2)
        side = image_size
        for _ in range(4):
            side //= 2
        if side < 1:
            raise ValueError(f"image_size={image_size} is too small for 4 poolings (need >= 16)")
        self.flat_dim = w * side * side
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(self.flat_dim, dense), nn.ReLU(inplace=True),
                                   nn.Dropout(dropout))
        self.out_dim = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.pool(self.block1(x)))
        x = self.drop(self.pool(self.block2(x)))
        x = self.drop(self.pool(self.block3(x)))
        x = self.block4(x)
        x = self.inhibition(self.conv10(x), self.conv10_inhibition(x))
        return self.dense(self.drop(self.pool(x)))


class AffectHeads(nn.Module):
    """Arousal / valence (tanh) and 7-expression heads over one feature vector; only the asked-for ones."""

    def __init__(self, in_dim: int, tasks=TASKS, n_classes: int = len(EXPRESSIONS)):
        super().__init__()
        tasks = tuple(tasks)
        bad = set(tasks) - set(TASKS)
        if bad or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
        self.tasks = tasks
        self.arousal = nn.Linear(in_dim, 1) if "arousal" in tasks else None
        self.valence = nn.Linear(in_dim, 1) if "valence" in tasks else None
        self.expr = nn.Linear(in_dim, n_classes) if "expr" in tasks else None

    def forward(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        if self.arousal is not None or self.valence is not None:
            zero = f.new_zeros(f.shape[0], 1)
            v = torch.tanh(self.valence(f)) if self.valence is not None else zero
            a = torch.tanh(self.arousal(f)) if self.arousal is not None else zero
            out["va"] = torch.cat([v, a], dim=1)
        if self.expr is not None:
            out["expr"] = self.expr(f)
        return out


class FaceChannel(nn.Module):
    """The frame model. ``FaceChannel(tasks=("expr",))`` is FC_E; see the module docstring."""

    def __init__(self, tasks=TASKS, image_size: int = 120, width: int = 64, dense: int = 500,
                 batch_norm: bool = True, dropout: float = 0.5, n_classes: int = len(EXPRESSIONS)):
        super().__init__()
        self.config = dict(image_size=image_size, width=width, dense=dense, batch_norm=batch_norm,
                           dropout=dropout, n_classes=n_classes)
        self.trunk = FaceChannelTrunk(image_size, width, dense, batch_norm, dropout)
        self.heads = AffectHeads(dense, tasks, n_classes)
        self.tasks = self.heads.tasks

    @classmethod
    def variant(cls, name: str, **kw) -> "FaceChannel":
        """``FaceChannel.variant("FC_A")`` etc. — the frame rows of the paper's Table I."""
        if name not in VARIANTS:
            raise ValueError(f"unknown FaceChannel variant {name!r}; choose one of {sorted(VARIANTS)}")
        return cls(tasks=VARIANTS[name], **kw)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"FaceChannel expects images [B, 3, H, W], got shape {tuple(x.shape)}")
        return self.heads(self.trunk(x))


class FaceChannelS(nn.Module):
    """FC-S: FC frame features of a clip -> LSTM(100) -> dense(100) -> heads, for the clip's last frame.

    Input: images ``[B, s, 3, H, W]`` or cached FC features ``[B, s, 500]``.
    """

    def __init__(self, tasks=TASKS, image_size: int = 120, width: int = 64, dense: int = 500,
                 batch_norm: bool = True, dropout: float = 0.5, hidden: int = 100, freeze_trunk: bool = False,
                 n_classes: int = len(EXPRESSIONS)):
        super().__init__()
        self.trunk = FaceChannelTrunk(image_size, width, dense, batch_norm, dropout)
        self.lstm = nn.LSTM(dense, hidden, batch_first=True)
        self.dense = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.heads = AffectHeads(hidden, tasks, n_classes)
        self.tasks = self.heads.tasks
        self.freeze_trunk(freeze_trunk)

    def freeze_trunk(self, frozen: bool = True) -> "FaceChannelS":
        for p in self.trunk.parameters():
            p.requires_grad_(not frozen)
        self._trunk_frozen = frozen
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "_trunk_frozen", False):
            self.trunk.eval()  # a frozen FC keeps its BatchNorm statistics and no dropout
        return self

    @classmethod
    def from_facechannel(cls, fc: FaceChannel, tasks=None, **kw) -> "FaceChannelS":
        """An FC-S whose frame trunk is a copy of the trained ``fc``'s (the paper's initialisation)."""
        model = cls(tasks=tasks or fc.tasks, **{**fc.config, **kw})
        model.trunk.load_state_dict(fc.trunk.state_dict())
        return model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 5:
            b, s = x.shape[:2]
            feats = self.trunk(x.flatten(0, 1)).view(b, s, -1)
        elif x.dim() == 3:
            feats = x
        else:
            raise ValueError(f"FaceChannelS expects clips [B, s, 3, H, W] or features [B, s, D], got {tuple(x.shape)}")
        out, _ = self.lstm(feats)
        return self.heads(self.dense(out[:, -1]))


# --- the paper's losses -----------------------------------------------------------------------------------

def _va_column_mse(col: int):
    def loss(pred, target):
        return masked_mse(pred[:, col:col + 1], target[:, col:col + 1])
    loss.__name__ = f"mse_{'valence' if col == 0 else 'arousal'}"
    return loss


def facechannel_loss(tasks=TASKS, expr_weight: torch.Tensor | None = None) -> MultiTaskLoss:
    """The paper's loss: MSE on each VA output the variant has, cross-entropy on the expressions."""
    terms = {}
    tasks = tuple(tasks)
    if "valence" in tasks and "arousal" in tasks:
        terms["va"] = (1.0, masked_mse)
    elif "valence" in tasks:
        terms["va"] = (1.0, _va_column_mse(0))
    elif "arousal" in tasks:
        terms["va"] = (1.0, _va_column_mse(1))
    if "expr" in tasks:
        terms["expr"] = (1.0, partial(masked_cross_entropy, weight=expr_weight) if expr_weight is not None
                         else masked_cross_entropy)
    return MultiTaskLoss(**terms)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The model's parameter count (only those that train with ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

