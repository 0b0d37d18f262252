"""FaceRNET (Kollias, Psaroudakis, Arsenos & Theofilou, 2023): reaction intensities from whole videos.

Two parts:
- ``REC``, the affect Representation Extractor Component: a residual multi-task CNN that predicts
  valence-arousal, 7 expressions and 17 AUs from one frame, trained with L_CCC + L_CE + L_BCE + L_DM
  (``RECLoss``) on frames that may carry only some of those labels;
- ``FaceRNet``: REC's per-frame representations -> GRU(128) -> the per-frame outputs concatenated over t
  -> the ``MaskLayer`` that keeps the first l outputs (l = the video's true length) and zeroes the rest ->
  dense(32) -> ``n_out`` intensities (Hume-Reaction's 7 reactions; 6 for Hume-Vidmimic2's mimicry emotions),
  trained with 1 − mean Pearson (``FaceRNetLoss``).

The GRU stage normally reads REC outputs cached per frame (``REPRESENTATION_SLICES`` says which columns are
which); given frames ``[B, t, 3, H, W]`` and a ``rec``, it runs end to end instead. The paper's settings,
REC's frames and the fits are the recipe's: ``affectlab.recipes.facernet``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.labels import AUS_17, EXPRESSIONS, REACTIONS, au_given_expression
from affectlab.losses import distribution_matching_loss, masked_bce, masked_ccc_loss, masked_cross_entropy

__all__ = ["REC", "RECLoss", "REPRESENTATION_SLICES", "rec_representations", "ResidualUnit", "MaskLayer",
           "FaceRNet", "FaceRNetLoss", "masked_pearson_loss", "check_lengths"]

# --- REC --------------------------------------------------------------------------------------------------

REC_HEADS: dict[str, int] = {"va": 2, "expr": len(EXPRESSIONS), "au": len(AUS_17)}


def representation_slices(n_classes: int = len(EXPRESSIONS)) -> dict[str, slice]:
    """Columns of a cached representation row: VA (tanh), the ``n_classes`` expression probabilities (8 on a
    3rd-ABAW-or-later release, with Other), the 17 AU probabilities."""
    return {"va": slice(0, 2), "expr": slice(2, 2 + n_classes),
            "au": slice(2 + n_classes, 2 + n_classes + len(AUS_17))}


REPRESENTATION_SLICES: dict[str, slice] = representation_slices()   # the 7-class REC's 26 columns
REPRESENTATION_DIM = 26


class ResidualUnit(nn.Module):
    """conv-bn-relu-conv-bn plus a (projected when the shape changes) shortcut, then relu (Fig. 2's unit)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class REC(nn.Module):
    """Residual multi-task CNN: one shared feature space, three heads ("va" in [-1, 1], "expr" logits,
    "au" logits over ``AUS_17``). ``width`` scales every stage (64 = the paper-sized model). ``trunk``: any
    image -> [B, trunk.feature_dim] module to use as the shared feature space instead (e.g. the course's
    pre-trained face backbone, ``affectlab.recipes.pretrain.face_feature_model``)."""

    def __init__(self, width: int = 64, units_per_stage: int = 1, trunk: nn.Module | None = None,
                 n_classes: int = len(EXPRESSIONS)):
        super().__init__()
        self.n_classes = n_classes
        if trunk is not None:
            self.features, c = trunk, trunk.feature_dim
        else:
            w = [width, 2 * width, 4 * width, 8 * width]
            layers: list[nn.Module] = [nn.Conv2d(3, w[0], 5, 2, 2, bias=False), nn.BatchNorm2d(w[0]),
                                       nn.ReLU(inplace=True)]
            c = w[0]
            for stage, c_out in enumerate(w):
                for i in range(units_per_stage):
                    layers.append(ResidualUnit(c, c_out, stride=2 if i == 0 and stage > 0 else 1))
                    c = c_out
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(c, n) for name, n in {**REC_HEADS, "expr": n_classes}.items()})
        self.embedding_dim = c

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads_forward(self.features(x))

    def heads_forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three heads on shared features ``z`` [B, embedding_dim] (e.g. cached ones)."""
        out = {name: head(z) for name, head in self.heads.items()}
        out["va"] = torch.tanh(out["va"])
        return out


class RECHeads(nn.Module):
    """REC's three heads on cached trunk features ``z`` [B, embedding_dim] (the trunk is not run): what trains
    when the trunk is frozen and its embeddings are cached."""

    def __init__(self, rec: REC):
        super().__init__()
        self.rec = rec

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.rec.heads_forward(z)


def rec_representations(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """REC outputs as the [N, 26] affect representation the RNN reads: VA, p(expr), p(AU)."""
    return torch.cat([out["va"], out["expr"].softmax(-1), torch.sigmoid(out["au"])], dim=-1)


class RECLoss:
    """L_REC = L_CCC + L_CE + L_BCE + L_DM (eq. 3). Each supervised term sees only the frames that carry its
    label (sentinels masked); L_DM needs no label, so it reaches every frame — that is what lets a frame
    annotated only with an expression still teach the AU head. ``dm_weight=0`` gives the ablation."""

    def __init__(self, dm_weight: float = 1.0, aus: Sequence[str] = AUS_17):
        self.dm_weight = float(dm_weight)
        self.au_given_expr = torch.tensor(au_given_expression(tuple(aus)))
        self.last: dict[str, float] = {}

    def __call__(self, preds: dict, y: dict) -> torch.Tensor:
        terms = {"ccc": masked_ccc_loss(preds["va"], y["va"]),
                 "ce": masked_cross_entropy(preds["expr"], y["expr"]),
                 "bce": masked_bce(preds["au"], y["au"])}
        if self.dm_weight:
            terms["dm"] = self.dm_weight * distribution_matching_loss(preds["expr"], preds["au"],
                                                                      self.au_given_expr)
        self.last = {k: float(v.detach()) for k, v in terms.items()}
        return sum(terms.values())


# --- FaceRNet ---------------------------------------------------------------------------------------------

def check_lengths(lengths: torch.Tensor, t: int) -> None:
    """Every true length must satisfy 1 <= l <= t: a wrong length would route the wrong frames silently."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be a 1-D tensor [B], got shape {tuple(lengths.shape)}")
    bad = ((lengths < 1) | (lengths > t)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"video lengths must lie in [1, t={t}]; batch items {bad} have lengths "
                         f"{lengths[bad].tolist()} (a video with no usable frame, or one longer than t "
                         "that the loader did not truncate)")


class MaskLayer(nn.Module):
    """Keeps the first l of the t per-frame outputs and zeroes the rest (``where``, not a product, so even a
    NaN in the padding cannot leak). The dense layer's weights on zeroed positions get no gradient: that is
    the paper's "dynamic routing"."""

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keep = torch.arange(h.shape[1], device=h.device)[None, :] < lengths.to(h.device)[:, None]
        return torch.where(keep[..., None], h, torch.zeros((), dtype=h.dtype, device=h.device))


class FaceRNet(nn.Module):
    """Per-frame REC representations -> RNN -> concatenation over t -> Mask -> dense -> ``n_out`` intensities
    (default the 7 ``REACTIONS``; a video data set's ``df.attrs["targets"]``, e.g. 6 ``MIMICRY_EMOTIONS``).

    - ``tasks``: which REC representations feed the RNN (Table 2), columns of ``REPRESENTATION_SLICES``;
      ``in_features`` instead takes any other [B, t, D] per-frame features whole.
    - ``rnn``: "gru" (the paper) or "lstm" (Table 3); ``hidden`` units, ``rnn_layers`` layers; ``dense``.
    - ``length_mode``: "mask" (the paper) or "fixed" — the ad-hoc baseline: every video truncated to its
      first ``fixed_len`` frames or looped to fill them, no mask (Table 3's "w/o Mask & Routing").
    - ``rec``: a REC run on frames ``[B, t, 3, H, W]`` for end-to-end training (only the l true frames of
      each video go through it, so BatchNorm never sees padding).
    """

    def __init__(self, t: int = 480, tasks: Sequence[str] | None = ("va", "expr", "au"),
                 in_features: int | None = None, rnn: str = "gru", hidden: int = 128, rnn_layers: int = 1,
                 dense: int = 32, length_mode: str = "mask", fixed_len: int | None = None,
                 rec: REC | None = None, n_out: int = len(REACTIONS), n_classes: int | None = None):
        super().__init__()
        # the REC's expression classes (7, or 8 with Other) set the width of its representation rows
        n_classes = n_classes or (rec.n_classes if rec is not None else len(EXPRESSIONS))
        self.slices = representation_slices(n_classes)
        self.representation_dim = self.slices["au"].stop
        if length_mode not in ("mask", "fixed"):
            raise ValueError(f"length_mode must be 'mask' or 'fixed', got {length_mode!r}")
        if rnn not in ("gru", "lstm"):
            raise ValueError(f"rnn must be 'gru' or 'lstm', got {rnn!r}")
        if in_features is None:
            unknown = set(tasks or ()) - set(self.slices)
            if not tasks or unknown:
                raise ValueError(f"tasks must be a non-empty subset of {tuple(self.slices)}, got {tasks}")
            columns = torch.cat([torch.arange(self.representation_dim)[self.slices[k]] for k in tasks])
            self.register_buffer("columns", columns, persistent=False)
            in_features = len(columns)
        else:
            self.columns = None
        self.t, self.length_mode = t, length_mode
        self.fixed_len = fixed_len or t
        if self.fixed_len > t:
            raise ValueError(f"fixed_len={self.fixed_len} exceeds t={t}")
        self.rec = rec
        rnn_cls = nn.GRU if rnn == "gru" else nn.LSTM
        self.rnn = rnn_cls(in_features, hidden, num_layers=rnn_layers, batch_first=True)
        self.mask = MaskLayer()
        steps = t if length_mode == "mask" else self.fixed_len
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(steps * hidden, dense), nn.ReLU())
        self.out = nn.Linear(dense, n_out)

    def frame_representations(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, t, 3, H, W] frames -> [B, t, 26] REC representations, computed on the true frames only."""
        keep = torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths.to(frames.device)[:, None]
        rows = rec_representations(self.rec(frames[keep]))
        out = rows.new_zeros(*frames.shape[:2], rows.shape[-1])
        out[keep] = rows
        return out

    def _fixed_length(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Truncate each video to ``fixed_len`` frames or loop it until it fills them."""
        steps = torch.arange(self.fixed_len, device=x.device)[None, :]
        idx = steps % lengths.to(x.device)[:, None]
        return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] != self.t:
            raise ValueError(f"FaceRNet(t={self.t}) got a batch padded to {x.shape[1]} frames")
        lengths = lengths.long()
        check_lengths(lengths.cpu(), self.t)
        if x.dim() == 5:
            if self.rec is None:
                raise ValueError("frames [B, t, 3, H, W] need FaceRNet(rec=REC(...)); or pass cached features")
            x = self.frame_representations(x, lengths)
        if self.columns is not None:
            if x.shape[-1] != self.representation_dim:
                raise ValueError(f"expected {self.representation_dim} REC representation columns, got {x.shape[-1]}")
            x = x[..., self.columns]
        if self.length_mode == "fixed":
            h, _ = self.rnn(self._fixed_length(x, lengths))
        else:
            # The RNN runs over all t steps as in the paper; it is causal, so outputs 0..l-1 never see the
            # padding, and the Mask drops the rest. Zeroing the padding first keeps a NaN in it out of the
            # backward pass too (plain runs beat packed sequences on CPU here).
            keep = torch.arange(self.t, device=x.device)[None, :] < lengths.to(x.device)[:, None]
            h, _ = self.rnn(torch.where(keep[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device)))
            h = self.mask(h, lengths)
        return {"intensity": torch.sigmoid(self.out(self.dense(h)))}


def masked_pearson_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 − mean Pearson ρ over the columns (eq. 4), each column over its rows with a finite target (a missing
    reaction value is NaN); columns with fewer than 2 such rows are left out."""
    valid = torch.isfinite(target)
    w = valid.to(pred.dtype)
    tgt = torch.where(valid, target, torch.zeros_like(target)).to(pred.dtype)
    n = w.sum(0).clamp_min(1)
    pc = (pred - (pred * w).sum(0) / n) * w
    tc = (tgt - (tgt * w).sum(0) / n) * w
    rho = (pc * tc).sum(0) / (pc.norm(dim=0) * tc.norm(dim=0) + eps)
    ok = valid.sum(0) >= 2
    if not ok.any():
        return pred.sum() * 0.0
    return 1 - rho[ok].mean()


class FaceRNetLoss:
    """The "intensity" head against ``y["intensity"]``: ``kind="pearson"`` (eq. 4) or ``"mse"`` (Table 3)."""

    def __init__(self, kind: str = "pearson"):
        if kind not in ("pearson", "mse"):
            raise ValueError(f"kind must be 'pearson' or 'mse', got {kind!r}")
        self.kind = kind

    def __call__(self, preds: dict, y: dict) -> torch.Tensor:
        pred, target = preds["intensity"].float(), y["intensity"].float()
        if self.kind == "pearson":
            return masked_pearson_loss(pred, target)
        valid = torch.isfinite(target)
        return F.mse_loss(pred[valid], target[valid]) if valid.any() else pred.sum() * 0.0
