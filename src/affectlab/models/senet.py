"""SE-ResNet-50 fine-tuning for the 7 expressions (Cafarelli et al., ABAW 2020; paper 2 of the course).

The paper: a SENet-50 pre-trained on VGGFace2, its last fully-connected layer reshaped to 7 outputs,
fine-tuned with SGD (momentum 0.9, weight decay 0.005) at lr 1e-3 on the new layer and 1e-6 on the rest,
256-sample batches accumulated from 4 micro-batches of 64, cross-entropy weighted by
count(most common class) / count(class), random horizontal flips and colour jitter (brightness 0.4,
contrast 0.3, saturation 0.25, hue 0.5), Aff-Wild2 merged with ExpW, validation every 3920 iterations and
the best validation checkpoint kept.

This module holds the network (``SENet50Classifier``) and its weighted loss (``senet_loss``); the training
recipe — the two parameter groups, the paper's SGD, gradient accumulation, colour jitter, interval
validation, and the settings — is ``affectlab.recipes.senet``.

Quick profile substitution (honest note): a SE-ResNet-50 at 112 px runs at a few images/s on a 2-core CPU,
far too slow for a 3-minute chapter, so the quick profile fine-tunes the course's own face feature model
(a ResNet-18 pre-trained on the synthetic static corpora, ``affectlab.recipes.pretrain``) with exactly the
same recipe; ``SENet50Classifier(backbone="seresnet50")`` is the paper's model and the ``paper`` profile uses it.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from affectlab.labels import EXPRESSIONS
from affectlab.losses import MultiTaskLoss, masked_cross_entropy
from affectlab.models.backbones import Backbone, load_vggface2


class SENet50Classifier(nn.Module):
    """A (face-pre-trained) backbone with a new ``n_classes`` linear layer; returns ``{"expr": logits}``.

    ``backbone``: ``"seresnet50"`` (timm, the paper's), any name of ``backbones.BACKBONES``, or a ready
    ``nn.Module`` mapping images to ``[B, feature_dim]`` (e.g. ``face_feature_model(...)``).
    ``weights``: an optional VGGFace2 pickle, loaded safely (``load_vggface2``) into the release network
    (``Backbone(backbone, vggface2=True)``); the report is kept in ``self.load_report``.
    """

    def __init__(self, backbone: str | nn.Module = "seresnet50", n_classes: int = len(EXPRESSIONS),
                 weights: str | None = None):
        super().__init__()
        # VGGFace2 weights are the release network's: a named backbone is built as that network to take them
        self.body = Backbone(backbone, vggface2=bool(weights)) if isinstance(backbone, str) else backbone
        dim = getattr(self.body, "feature_dim", None)
        if dim is None:
            raise ValueError("the backbone module must expose .feature_dim (the size of its pooled features)")
        self.load_report = load_vggface2(self.body, weights) if weights else None
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"expr": self.head(self.body(x))}


class FeatureHead(nn.Module):
    """A new ``n_classes``-way layer over frozen features, standardised by the training features' mean and
    standard deviation (a fixed affine map, kept as buffers): the ablations' head-only model."""

    def __init__(self, train_features: torch.Tensor, n_classes: int = len(EXPRESSIONS)):
        super().__init__()
        self.register_buffer("mean", train_features.mean(0))
        self.register_buffer("std", train_features.std(0) + 1e-6)
        self.fc = nn.Linear(train_features.shape[1], n_classes)

    def forward(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"expr": self.fc((f - self.mean) / self.std)}


def senet_loss(class_weights: torch.Tensor | None = None) -> MultiTaskLoss:
    """Cross-entropy on the expression head, weighted per class when ``class_weights`` is given."""
    fn = partial(masked_cross_entropy, weight=torch.as_tensor(class_weights, dtype=torch.float32)) \
        if class_weights is not None else masked_cross_entropy
    return MultiTaskLoss(expr=(1.0, fn))

