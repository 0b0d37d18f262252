"""Paper 3 (Do, Nguyen-Quynh & Kim, ABAW 2020): the multi-task temporal statistical model.

A face feature model (ResNet, pre-trained on face expression corpora) turns each frame of a causal clip —
the current frame and the s − 1 frames before it — into a feature vector f and probability scores p.
- STAT: the mean, max and min over the s frames of [f, p] (robust to label and feature noise);
- LSTM: one or two bidirectional LSTM layers over the probability scores p (the temporal relation);
- fusion: [f, p] of the current frame, concatenated with the STAT and LSTM features;
- heads: a classification branch (two dense layers → 7 logits) and three regression branches (two dense
  layers each, the last with tanh): arousal, valence (CCC loss) and the 5-vector
  [a, v, (a+v)/2, a − (a+v)/2, v − (a+v)/2] (MSE loss), where "mean" is the frame's own average of
  arousal and valence (the paper: "two different values between arousal and valence with its average").
Total loss 1.0·CE + 0.4·CCC_a + 0.4·CCC_v + 0.2·MSE. Table I's six variants switch STAT, LSTM and the VA
branches on and off; the paper's best numbers come from the average fusion of the variants.

The model runs on images ``[B, s, 3, H, W]`` (end-to-end: only the backbone's last stage and the heads
learn) or on cached per-frame features ``[B, s, D]`` (the frozen face model run once over every frame;
`benchmarks/bench_temporal_scan.py` measures the gain) — the same heads either way. The settings, the
feature cache, the fit and the scores are the recipe's: ``affectlab.recipes.temporal``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.labels import EXPRESSIONS, INVALID_VA
from affectlab.losses import MultiTaskLoss, masked_ccc_loss, masked_cross_entropy

__all__ = ["VARIANTS", "Variant", "TemporalStatNet", "stat_pool", "va5_target", "va5_mse",
           "temporal_loss", "average_fusion", "freeze_all_but_last_stage"]


@dataclass(frozen=True)
class Variant:
    number: int
    name: str
    stat: bool    # STAT module over the previous s frames
    lstm: bool    # bidirectional LSTM over the probability scores
    va: bool      # valence-arousal branches (CCC + MSE) besides the expression branch

    @property
    def temporal(self) -> bool:
        return self.stat or self.lstm


# Table I of the paper. (Its text swaps the outputs of models 1 and 2 once; the table is followed.)
VARIANTS: dict[int, Variant] = {v.number: v for v in (
    Variant(1, "Emotion Image", stat=False, lstm=False, va=False),
    Variant(2, "Emotion VA Image", stat=False, lstm=False, va=True),
    Variant(3, "Emotion Frame", stat=True, lstm=False, va=False),
    Variant(4, "Emotion VA Frame", stat=True, lstm=False, va=True),
    Variant(5, "Emotion Frame with LSTM", stat=True, lstm=True, va=False),
    Variant(6, "Emotion VA Frame with LSTM", stat=True, lstm=True, va=True),
)}


def stat_pool(x: torch.Tensor) -> torch.Tensor:
    """The STAT module: [B, s, K] -> [B, 3K] = mean, max and min over the s frames."""
    if x.dim() != 3:
        raise ValueError(f"stat_pool expects [B, s, K], got shape {tuple(x.shape)}")
    return torch.cat([x.mean(1), x.amax(1), x.amin(1)], dim=1)


def va5_target(va: torch.Tensor) -> torch.Tensor:
    """The MSE branch's target from ``va`` = (valence, arousal): [a, v, m, a − m, v − m], m = (a + v) / 2.
    Invalid rows stay invalid (all five entries ``INVALID_VA``)."""
    v, a = va[..., 0], va[..., 1]
    m = (a + v) / 2
    out = torch.stack([a, v, m, a - m, v - m], dim=-1)
    invalid = (va == INVALID_VA).any(dim=-1, keepdim=True)
    return torch.where(invalid, torch.full_like(out, INVALID_VA), out)


def va5_mse(pred5: torch.Tensor, va: torch.Tensor) -> torch.Tensor:
    """MSE between the 5-vector branch and the 5-vector built from the (valence, arousal) labels."""
    target = va5_target(va)
    keep = (va != INVALID_VA).all(dim=-1)
    if not keep.any():
        return pred5.sum() * 0.0
    return F.mse_loss(pred5[keep].float(), target[keep].float())


def temporal_loss(variant: int | Variant) -> MultiTaskLoss:
    """1.0·CE + 0.4·CCC_a + 0.4·CCC_v + 0.2·MSE (expression only for variants 1, 3, 5).
    ``masked_ccc_loss`` averages 1 − CCC over (valence, arousal), so 0.8 × it = 0.4 × each."""
    v = VARIANTS[variant] if isinstance(variant, int) else variant
    if not v.va:
        return MultiTaskLoss(expr=(1.0, masked_cross_entropy))
    return MultiTaskLoss(expr=(1.0, masked_cross_entropy), va=(0.8, masked_ccc_loss), va5=(0.2, va5_mse, "va"))


def _branch(n_in: int, width: int, n_out: int, dropout: float, tanh: bool) -> nn.Sequential:
    layers = [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(width, n_out)]
    return nn.Sequential(*layers, nn.Tanh()) if tanh else nn.Sequential(*layers)


def freeze_all_but_last_stage(backbone: nn.Module) -> nn.Module:
    """Freeze every parameter of a ResNet ``Backbone`` except its last stage, conv5_x (the paper fine-tunes
    only that stage); ``backbone.frozen_stages`` names the frozen stages, whose BatchNorm statistics
    ``TemporalStatNet.train()`` keeps fixed too."""
    from affectlab.models.backbones import backbone_stages, freeze_all_but

    freeze_all_but(backbone, ("conv5_x",))
    backbone.frozen_stages = tuple(name for name in backbone_stages(backbone) if name != "conv5_x")
    return backbone


class TemporalStatNet(nn.Module):
    """One of Table I's variants. ``x`` is ``[B, s, 3, H, W]`` frames (needs ``backbone``) or ``[B, s, D]``
    cached features; its last frame is the current one. Returns ``{"expr": [B, 7]}`` plus, for VA variants,
    ``"va"`` [B, 2] (valence, arousal) and ``"va5"`` [B, 5] (the MSE branch)."""

    def __init__(self, variant: int = 6, feature_dim: int = 512, n_classes: int = len(EXPRESSIONS), *,
                 lstm_hidden: int = 1024, lstm_layers: int = 1, dense: int = 512, dropout: float = 0.2,
                 backbone: nn.Module | None = None, face_classifier: nn.Linear | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)} (Table I), got {variant!r}")
        if lstm_layers not in (1, 2):
            raise ValueError(f"the paper's LSTM module has 1 or 2 layers, got {lstm_layers}")
        self.variant = VARIANTS[variant]
        self.backbone = backbone
        if backbone is not None and not hasattr(backbone, "frozen_stages"):
            freeze_all_but_last_stage(backbone)
        # The face feature model's own classification layer: its softmax gives the probability scores.
        self.face_classifier = face_classifier or nn.Linear(feature_dim, n_classes)
        per_frame = feature_dim + n_classes
        fused = per_frame
        if self.variant.stat:
            fused += 3 * per_frame
        if self.variant.lstm:
            self.lstm = nn.LSTM(n_classes, lstm_hidden, num_layers=lstm_layers, batch_first=True,
                                bidirectional=True)
            fused += 2 * lstm_hidden
        self.expr_head = _branch(fused, dense, n_classes, dropout, tanh=False)
        if self.variant.va:
            self.arousal_head = _branch(fused, dense, 1, dropout, tanh=True)
            self.valence_head = _branch(fused, dense, 1, dropout, tanh=True)
            self.va5_head = _branch(fused, dense, 5, dropout, tanh=True)

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen stages keep their BatchNorm statistics: only the last stage is fine-tuned. The stages are looked
        # up now, not kept: SyncBatchNorm's conversion (many GPUs) puts new norms into the backbone.
        if self.backbone is not None and mode:
            from affectlab.models.backbones import backbone_stages

            stages = backbone_stages(self.backbone)
            for name in self.backbone.frozen_stages:
                stages[name].eval()
        return self

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, s, 3, H, W] images -> [B, s, D] features via the backbone; [B, s, D] passes through."""
        if x.dim() == 3:
            return x
        if x.dim() != 5:
            raise ValueError(f"expected frames [B, s, 3, H, W] or features [B, s, D], got {tuple(x.shape)}")
        if self.backbone is None:
            raise ValueError("this TemporalStatNet has no backbone: give it cached features [B, s, D]")
        b, s = x.shape[:2]
        return self.backbone(x.flatten(0, 1)).reshape(b, s, -1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.variant.temporal:
            x = x[:, -1:]  # image-only variants see the current frame alone
        f = self.frame_features(x)                       # [B, s, D]
        p = self.face_classifier(f).softmax(-1)          # [B, s, 7] probability scores
        fp = torch.cat([f, p], dim=-1)
        parts = [fp[:, -1]]                              # the current frame
        if self.variant.stat:
            parts.append(stat_pool(fp))
        if self.variant.lstm:
            _, (h, _) = self.lstm(p)                     # h: [layers·2, B, H]
            parts.append(torch.cat([h[-2], h[-1]], dim=-1))  # last layer, both directions
        z = torch.cat(parts, dim=-1)
        out = {"expr": self.expr_head(z)}
        if self.variant.va:
            out["va"] = torch.cat([self.valence_head(z), self.arousal_head(z)], dim=-1)
            out["va5"] = self.va5_head(z)
        return out


def average_fusion(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The paper's average fusion of several variants' predictions: the mean of the expression
    probabilities (returned as log-probabilities, i.e. valid logits) and the mean of the VA predictions of
    the variants that have them."""
    if not outputs:
        raise ValueError("average_fusion needs at least one model's outputs")
    probs = torch.stack([o["expr"].float().softmax(-1) for o in outputs]).mean(0)
    fused = {"expr": probs.clamp_min(1e-12).log()}
    vas = [o["va"].float() for o in outputs if "va" in o]
    if vas:
        fused["va"] = torch.stack(vas).mean(0)
    return fused
