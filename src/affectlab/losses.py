"""Losses of the five papers, on dict outputs and dict targets, with invalid labels masked (not zero-filled).

A frame with no expression label contributes nothing to the cross-entropy, instead of being taught that it
is "Neutral" (index 0) or that its valence is 0 — which is what zero-filling would do.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from affectlab.labels import INVALID_AU, INVALID_EXPR, INVALID_VA


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A zero that keeps the graph (a batch with no valid label still back-propagates cleanly)."""
    return like.sum() * 0.0


def ccc_per_column(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CCC of each column of [N, K] (or [N]) tensors, with the batch's population statistics."""
    pred, target = pred.float(), target.float()
    if pred.dim() == 1:
        pred, target = pred[:, None], target[:, None]
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + eps)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − CCC, averaged over columns."""
    return 1 - ccc_per_column(pred, target).mean()


def pearson_per_column(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    pred, target = pred.float(), target.float()
    if pred.dim() == 1:
        pred, target = pred[:, None], target[:, None]
    pc, tc = pred - pred.mean(0), target - target.mean(0)
    return (pc * tc).sum(0) / (pc.norm(dim=0) * tc.norm(dim=0) + eps)


def pearson_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean Pearson ρ over columns (FaceRNET's loss over the 7 reactions)."""
    return 1 - pearson_per_column(pred, target).mean()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over frames whose label is not ``INVALID_EXPR``; ``weight`` = per-class weights."""
    keep = target != INVALID_EXPR
    if not keep.any():
        return _zero(logits)
    w = weight.to(logits.device, logits.dtype) if weight is not None else None
    return F.cross_entropy(logits[keep], target[keep].long(), weight=w, label_smoothing=label_smoothing)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits over the entries whose label is not ``INVALID_AU`` (soft targets ok)."""
    keep = target != INVALID_AU
    if not keep.any():
        return _zero(logits)
    pw = pos_weight.expand_as(logits)[keep] if pos_weight is not None else None
    return F.binary_cross_entropy_with_logits(logits[keep].float(), target[keep].float(), pos_weight=pw)


def _valid_va(target: torch.Tensor) -> torch.Tensor:
    return (target != INVALID_VA).all(dim=-1) if target.dim() > 1 else target != INVALID_VA


def masked_ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − CCC over frames with valid valence and arousal (needs ≥ 2 such frames for a variance)."""
    keep = _valid_va(target)
    if keep.sum() < 2:
        return _zero(pred)
    return ccc_loss(pred[keep], target[keep])


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    keep = _valid_va(target)
    if not keep.any():
        return _zero(pred)
    return F.mse_loss(pred[keep].float(), target[keep].float())


def distribution_matching_loss(expr_logits: torch.Tensor, au_logits: torch.Tensor,
                               au_given_expr: torch.Tensor) -> torch.Tensor:
    """FaceRNET's distribution matching: soft-target BCE between the AU head's probabilities and the AU
    pseudo-predictions q(AU) = Σ_expr p(expr) · P(AU | expr) built from the expression→AU table.

    As a soft-target BCE it is smallest when σ(au_logits) equals q; the paper's printed equation (2) omits
    the predicted term. Gradients reach both heads (the coupling is the point of the loss).
    """
    p_expr = expr_logits.float().softmax(-1)                       # [B, 7]
    known = au_given_expr.shape[0]
    if p_expr.shape[-1] > known:
        # An 8-class head (Other, 3rd ABAW on): Other has no row in the table — no AU is known for it. Its
        # probability constrains nothing: q is the mixture of the 7 known classes renormalised, and each frame's
        # term is weighted by their share 1 - p(Other), so a frame the head calls Other teaches the AU head little.
        p_known = p_expr[:, :known]
        share = p_known.sum(-1, keepdim=True)
        q_au = ((p_known / share.clamp_min(1e-8)) @ au_given_expr.to(p_expr)).clamp(0.0, 1.0)
        per_frame = F.binary_cross_entropy_with_logits(au_logits.float(), q_au, reduction="none")
        return (share * per_frame).mean()
    q_au = (p_expr @ au_given_expr.to(p_expr)).clamp(0.0, 1.0)    # [B, n_au]
    return F.binary_cross_entropy_with_logits(au_logits.float(), q_au)


class MultiTaskLoss:
    """Weighted sum of per-head losses: ``MultiTaskLoss(expr=(1.0, masked_cross_entropy), va=(0.5, masked_ccc_loss))``.

    Each term reads ``preds[head]`` and ``y[head]`` (a term may name another target with
    ``(weight, fn, "target_key")``). The last batch's terms are kept in ``.last`` for logging.
    """

    def __init__(self, **terms):
        if not terms:
            raise ValueError("MultiTaskLoss needs at least one term")
        self.terms: dict[str, tuple] = {}
        for head, spec in terms.items():
            weight, fn, *rest = spec
            self.terms[head] = (float(weight), fn, rest[0] if rest else head)
        self.last: dict[str, float] = {}

    def __call__(self, preds: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total, self.last = None, {}
        for head, (weight, fn, key) in self.terms.items():
            if head not in preds:
                raise KeyError(f"the model has no {head!r} head (it returned {sorted(preds)})")
            if key not in y:
                raise KeyError(f"the batch has no {key!r} target (it carries {sorted(y)})")
            term = fn(preds[head], y[key])
            self.last[head] = float(term.detach())
            total = weight * term if total is None else total + weight * term
        return total

    def __repr__(self):
        parts = ", ".join(f"{h}={w}·{getattr(fn, '__name__', fn)}" for h, (w, fn, _) in self.terms.items())
        return f"MultiTaskLoss({parts})"
