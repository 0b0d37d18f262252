"""The pre-training network of the course's face feature model (trained by ``affectlab.recipes.pretrain``)."""
from __future__ import annotations

import torch
from torch import nn

from affectlab.models.backbones import Backbone


class PretrainNet(nn.Module):
    """Backbone + the pre-training heads (7 expressions, valence / arousal); only the backbone is kept."""

    def __init__(self, body: Backbone):
        super().__init__()
        self.body = body
        self.expr = nn.Linear(body.feature_dim, 7)
        self.va = nn.Linear(body.feature_dim, 2)

    def forward(self, x):
        f = self.body(x)
        return {"expr": self.expr(f), "va": torch.tanh(self.va(f))}
