"""Paper 4 (Gera & Balasubramanian, ABAW 2020): spatio-channel attention (SCAN) with complementary context
information (CCI) on a ResNet.

- SCAN: W = σ(BN(PReLU(Conv(I)))), O = I ⊙ W — one attention weight per channel per location. It runs on
  conv3_x (512×28×28 for ResNet-50 at 224 px) over m = 25 local patches (each its own SCAN, then global
  average pooling, then a max over the patches: V_l) and over the whole map (V_g); [V_l, V_g] → classifier
  (loss L_u). No landmarks are needed: the patches are a fixed grid.
- CCI: efficient channel attention (ECA) on conv4_x (1024×14×14), split into k = 4 blocks, each
  global-average-pooled → a 256-unit layer → a classifier (losses L_1..L_k).
- Loss λ·L_u + (1 − λ)·Σ L_i, λ = 0.2. Prediction: the mean of the 1 + k branches' logits (the authors'
  released test script averages them). conv4_x's output is where Grad-CAM looks.

Choices the paper leaves open, taken from the authors' released code: the attention conv is 3×3 without
bias; [V_l, V_g] is L2-normalised before its classifier; ECA's 1-D kernel has size 5. Their code shares one
256-unit block classifier across the four blocks; we give each block its own, as the paper's text says.
The 25-patch grid generalises the authors' 28×28 split (four 6-wide rows/columns, then the 4-wide rest) to
any map size (see ``patch_bounds``).

The settings, the cached maps, the optimiser (two learning rates, ×0.95 per epoch) and the fit are the
recipe's: ``affectlab.recipes.scan``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.labels import EXPRESSIONS
from affectlab.losses import masked_cross_entropy

__all__ = ["patch_bounds", "patch_grid", "SpatioChannelAttention", "LocalGlobalAttention",
           "CCIBranch", "SCANCCI", "PlainResNet", "MapsOf", "CachedMaps", "scancci_loss"]


def patch_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """Split 0..n into ``parts`` contiguous, non-empty, non-overlapping ranges that cover it exactly once.

    The authors' rule (28 -> 6, 6, 6, 6, 4: parts − 1 ranges of ceil(n / parts), the rest last) is used when
    it leaves a non-empty last range; otherwise (e.g. 8 -> 2, 2, 2, 2, 0) an even split (8 -> 2, 2, 2, 1, 1).
    """
    if parts < 1 or n < parts:
        raise ValueError(f"cannot split a feature map side of {n} into {parts} non-empty patches; "
                         f"use a larger image or fewer patches")
    size = math.ceil(n / parts)
    if n - size * (parts - 1) > 0:
        edges = [i * size for i in range(parts)] + [n]
    else:
        base, extra = divmod(n, parts)
        sizes = [base + (i < extra) for i in range(parts)]
        edges = [0] + list(torch.tensor(sizes).cumsum(0).tolist())
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def patch_grid(h: int, w: int, m: int) -> list[tuple[int, int, int, int]]:
    """m patches (m a square: 25 -> 5×5) as (row0, row1, col0, col1), row-major, covering h×w exactly once."""
    side = math.isqrt(m)
    if side * side != m:
        raise ValueError(f"the number of patches must be a square (25 = 5×5, 4 = 2×2), got {m}")
    return [(r0, r1, c0, c1) for r0, r1 in patch_bounds(h, side) for c0, c1 in patch_bounds(w, side)]


class SpatioChannelAttention(nn.Module):
    """SCAN (Eq. 1-2): O = I ⊙ σ(BN(PReLU(Conv(I)))), a 'same' convolution keeping C×H×W."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.prelu = nn.PReLU(channels)
        self.bn = nn.BatchNorm2d(channels)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.prelu(self.conv(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class LocalGlobalAttention(nn.Module):
    """SCAN over m local patches (V_l: GAP each, then max across patches) and the whole map (V_g: GAP);
    [V_l, V_g] → expression logits (the L_u branch)."""

    def __init__(self, channels: int, m: int = 25, n_classes: int = len(EXPRESSIONS), shared_local: bool = False):
        super().__init__()
        self.m = m
        n_local = 1 if shared_local else m
        self.local = nn.ModuleList(SpatioChannelAttention(channels) for _ in range(n_local))
        self.glob = SpatioChannelAttention(channels)
        self.fc = nn.Linear(2 * channels, n_classes)

    def _local_scan(self, i: int) -> SpatioChannelAttention:
        return self.local[i if len(self.local) > 1 else 0]

    def forward(self, fu: torch.Tensor) -> torch.Tensor:
        grid = patch_grid(fu.shape[-2], fu.shape[-1], self.m)
        if len(self.local) == 1:  # one shared SCAN: run all patches of one shape as one batch (speed)
            pooled = self._shared_local_pooled(fu, grid)
        else:
            pooled = [self.local[i](fu[..., r0:r1, c0:c1]).mean((2, 3)) for i, (r0, r1, c0, c1) in enumerate(grid)]
        v_local = torch.stack(pooled, dim=2).amax(dim=2)      # [B, C]
        v_global = self.glob(fu).mean((2, 3))                 # [B, C]
        # [V_l, V_g] straight into the classifier, as the paper's §3 says (an L2 normalisation here shrank this
        # branch's logits ~15x below CCI's, so it barely voted in the mean of the branches)
        return self.fc(torch.cat([v_local, v_global], dim=1))

    def _shared_local_pooled(self, fu: torch.Tensor, grid) -> list[torch.Tensor]:
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, (r0, r1, c0, c1) in enumerate(grid):
            by_shape.setdefault((r1 - r0, c1 - c0), []).append(i)
        pooled: list[torch.Tensor] = [None] * len(grid)  # type: ignore[list-item]
        b = fu.shape[0]
        for idx in by_shape.values():
            patches = torch.cat([fu[..., grid[i][0]:grid[i][1], grid[i][2]:grid[i][3]] for i in idx])
            out = self.local[0](patches).mean((2, 3)).split(b)
            for i, o in zip(idx, out):
                pooled[i] = o
        return pooled

    @torch.no_grad()
    def attention(self, fu: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention weights, channel-averaged, [B, H, W]: ``local`` (each patch's SCAN, assembled — the
        patches tile the map) and ``global``."""
        local = torch.zeros_like(fu[:, 0])
        for i, (r0, r1, c0, c1) in enumerate(patch_grid(fu.shape[-2], fu.shape[-1], self.m)):
            local[:, r0:r1, c0:c1] = self._local_scan(i).weights(fu[..., r0:r1, c0:c1]).mean(1)
        return {"local": local, "global": self.glob.weights(fu).mean(1)}


class CCIBranch(nn.Module):
    """ECA on conv4_x, k blocks (a √k×√k grid), GAP, then a 256-unit layer and a classifier per block."""

    def __init__(self, channels: int, k: int = 4, hidden: int = 256, n_classes: int = len(EXPRESSIONS),
                 eca_kernel: int = 5):
        super().__init__()
        from timm.layers import EcaModule  # ECA-Net's module, as timm ships it

        self.k = k
        self.eca = EcaModule(channels, kernel_size=eca_kernel)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_classes))
            for _ in range(k))

    def forward(self, fl: torch.Tensor) -> torch.Tensor:
        g = self.eca(fl)
        grid = patch_grid(g.shape[-2], g.shape[-1], self.k)
        return torch.stack([head(g[..., r0:r1, c0:c1].mean((2, 3)))
                            for head, (r0, r1, c0, c1) in zip(self.heads, grid)], dim=1)  # [B, k, classes]


def _resnet_stages(backbone: str | nn.Module):
    """The stages (stem, conv2_x … conv5_x) of a ResNet given by name (random weights: nothing downloads) or
    as a module — a course ``Backbone`` (e.g. the pre-trained face feature model) or a bare ResNet."""
    from affectlab.models.backbones import backbone_stages, make_backbone

    if isinstance(backbone, str):
        if not backbone.startswith(("resnet", "seresnet")):
            raise ValueError(f"SCANCCI needs a ResNet backbone (conv3_x / conv4_x stages), got {backbone!r}")
        backbone = make_backbone(backbone)
    return backbone_stages(backbone)


def _out_channels(stage: nn.Module) -> int:
    return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


FREEZE_CHOICES = (None, "conv3_x", "conv4_x")


class _ResNetMixin:
    """Shared by SCANCCI and the plain baseline: ``stem`` = conv1 … conv3_x (layer2) and ``layer3`` = conv4_x.
    ``freeze_through`` freezes the backbone up to that stage (its BatchNorms stay in eval mode), so its output
    maps can be cached once and ``forward_maps(conv3_x, conv4_x)`` trained on them (the quick profile)."""

    def _build(self, stages, freeze_through: str | None) -> None:
        if freeze_through not in FREEZE_CHOICES:
            raise ValueError(f"freeze_through must be one of {FREEZE_CHOICES}, got {freeze_through!r}")
        self.stem = nn.Sequential(stages["stem"], stages["conv2_x"], stages["conv3_x"])
        self.layer3 = stages["conv4_x"]  # conv4_x: Grad-CAM's target layer in the paper
        self.frozen = [self.stem] + ([self.layer3] if freeze_through == "conv4_x" else []) if freeze_through else []
        for m in self.frozen:
            m.requires_grad_(False)

    def train(self, mode: bool = True):
        nn.Module.train(self, mode)
        for m in self.frozen:
            m.eval()
        return self

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conv3_x, conv4_x) feature maps of images ``x``."""
        fu = self.stem(x)
        return fu, self.layer3(fu)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_maps(*self.maps(x))


class SCANCCI(_ResNetMixin, nn.Module):
    """SCAN (conv3_x) + CCI (conv4_x) on a ResNet. ``forward(images)`` -> ``{"expr": mean logits,
    "expr_branches": [B, 1 + k, classes]}`` (branch 0 is SCAN's L_u branch)."""

    def __init__(self, backbone: str | nn.Module = "resnet18", n_classes: int = len(EXPRESSIONS), *, m: int = 25,
                 k: int = 4, hidden: int = 256, shared_local: bool = False, freeze_through: str | None = None):
        super().__init__()
        stages = _resnet_stages(backbone)
        self._build(stages, freeze_through)
        self.scan = LocalGlobalAttention(_out_channels(stages["conv3_x"]), m, n_classes, shared_local)
        self.cci = CCIBranch(_out_channels(stages["conv4_x"]), k, hidden, n_classes)

    def forward_maps(self, fu: torch.Tensor, fl: torch.Tensor) -> dict[str, torch.Tensor]:
        branches = torch.cat([self.scan(fu)[:, None], self.cci(fl)], dim=1)
        return {"expr": branches.mean(1), "expr_branches": branches}

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """SCAN's channel-averaged attention weights on conv3_x for images ``x``: ``local`` and ``global``
        [B, H', W'], and ``grid`` — the patch boundaries (row0, row1, col0, col1) in conv3_x cells."""
        was_training = self.training
        self.eval()  # BatchNorm on a single image's 1×1 patch needs running statistics
        fu = self.stem(x)
        out = self.scan.attention(fu)
        self.train(was_training)
        out["grid"] = torch.tensor(patch_grid(fu.shape[-2], fu.shape[-1], self.scan.m))
        return out

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.scan.parameters(), *self.cci.parameters()]


class PlainResNet(_ResNetMixin, nn.Module):
    """The paper's baseline (Table 2): the same ResNet, fine-tuned with a 7-way classifier."""

    def __init__(self, backbone: str | nn.Module = "resnet18", n_classes: int = len(EXPRESSIONS), *,
                 freeze_through: str | None = None, train_conv5: bool = True):
        super().__init__()
        stages = _resnet_stages(backbone)
        self._build(stages, freeze_through)
        self.layer4 = stages["conv5_x"]
        if not train_conv5:   # only the classifier trains (SCAN+CCI, which has no conv5_x, trains only its heads)
            self.frozen.append(self.layer4)
            self.layer4.requires_grad_(False)
        self.fc = nn.Linear(_out_channels(stages["conv5_x"]), n_classes)

    def forward_maps(self, fu: torch.Tensor, fl: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"expr": self.fc(self.layer4(fl).mean((2, 3)))}

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.fc.parameters())


class MapsOf(nn.Module):
    """``forward(images) = {"conv3": conv3_x, "conv4": conv4_x}`` of a SCANCCI / PlainResNet, as float16 (half
    the size of a cache of maps): what ``CachedMaps`` trains on."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fu, fl = self.model.maps(x)
        return {"conv3": fu.half(), "conv4": fl.half()}


class CachedMaps(nn.Module):
    """Train a SCANCCI / PlainResNet on cached maps: ``forward(conv3_x, conv4_x) = model.forward_maps(...)``
    (only valid when the backbone is frozen through conv4_x, so the cached maps are what it would compute)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fu: torch.Tensor, fl: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_maps(fu.float(), fl.float())


def scancci_loss(lam: float = 0.2, weight: torch.Tensor | None = None):
    """L = λ·L_u + (1 − λ)·Σ_i L_i over the branches (branch 0 = SCAN); a model with only ``"expr"`` (the
    plain baseline) gets plain cross-entropy. Invalid labels (−1) are masked."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ must lie in [0, 1], got {lam}")

    def loss(preds: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
        target = y["expr"]
        if "expr_branches" not in preds:
            return masked_cross_entropy(preds["expr"], target, weight)
        br = preds["expr_branches"]
        l_u = masked_cross_entropy(br[:, 0], target, weight)
        l_cci = sum(masked_cross_entropy(br[:, i], target, weight) for i in range(1, br.shape[1]))
        return lam * l_u + (1 - lam) * l_cci

    return loss
