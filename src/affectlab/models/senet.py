"""SE-ResNet-50 fine-tuning for the 7 expressions (Cafarelli et al., ABAW 2020; paper 2 of the course).

The paper: a SENet-50 pre-trained on VGGFace2, its last fully-connected layer reshaped to 7 outputs,
fine-tuned with SGD (momentum 0.9, weight decay 0.005) at lr 1e-3 on the new layer and 1e-6 on the rest,
256-sample batches accumulated from 4 micro-batches of 64, cross-entropy weighted by
count(most common class) / count(class), random horizontal flips and colour jitter (brightness 0.4,
contrast 0.3, saturation 0.25, hue 0.5), Aff-Wild2 merged with ExpW, validation every 3920 iterations and
the best validation checkpoint kept.

Here each piece is a fastai part: ``senet_splitter`` makes the two parameter groups (``lr=slice(1e-6, 1e-3)``
gives each its rate), ``paper_sgd`` the optimiser, ``GradientAccumulation(256)`` the large batch,
``PaperColorJitter`` the augmentation, ``ValidateEvery`` + ``SaveModelCallback`` the interval validation, and
``senet_loss`` the weighted loss. ``paper_learner`` puts them together.

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

PROFILES = {
    "quick": dict(arch="resnet18", image_size=64, micro_batch=32, batch=128, lr_head=1e-2, lr_body=1e-4,
                  epochs=1, validate_every=None, max_train_frames=2000, max_extra=400),
    "paper": dict(arch="seresnet50", image_size=112, micro_batch=64, batch=256, lr_head=1e-3, lr_body=1e-6,
                  epochs=20, validate_every=3920, max_train_frames=None, max_extra=None),
}
PAPER_JITTER = dict(brightness=0.4, contrast=0.3, saturation=0.25, hue=0.5)


class SENet50Classifier(nn.Module):
    """A (face-pre-trained) backbone with a new ``n_classes`` linear layer; returns ``{"expr": logits}``.

    ``backbone``: ``"seresnet50"`` (timm, the paper's), any name of ``backbones.BACKBONES``, or a ready
    ``nn.Module`` mapping images to ``[B, feature_dim]`` (e.g. ``face_feature_model(...)``).
    ``weights``: an optional VGGFace2 pickle, loaded safely (``load_vggface2``); the report is kept in
    ``self.load_report``.
    """

    def __init__(self, backbone: str | nn.Module = "seresnet50", n_classes: int = len(EXPRESSIONS),
                 weights: str | None = None):
        super().__init__()
        self.body = Backbone(backbone) if isinstance(backbone, str) else backbone
        dim = getattr(self.body, "feature_dim", None)
        if dim is None:
            raise ValueError("the backbone module must expose .feature_dim (the size of its pooled features)")
        self.load_report = load_vggface2(self.body, weights) if weights else None
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"expr": self.head(self.body(x))}


def senet_splitter(model: SENet50Classifier) -> list[list[nn.Parameter]]:
    """fastai splitter: [body, head] parameter groups, so ``lr=slice(body_lr, head_lr)`` sets both."""
    return [list(model.body.parameters()), list(model.head.parameters())]


def paper_sgd(params, lr=1e-3, **kw):
    """The paper's optimiser: SGD, momentum 0.9, weight decay 0.005 added to the gradient (PyTorch's
    ``torch.optim.SGD`` semantics, hence ``decouple_wd=False``)."""
    from fastai.optimizer import SGD

    kw = {"mom": 0.9, "wd": 0.005, "decouple_wd": False, **kw}
    return SGD(params, lr, **kw)


def senet_loss(class_weights: torch.Tensor | None = None) -> MultiTaskLoss:
    """Cross-entropy on the expression head, weighted per class when ``class_weights`` is given."""
    fn = partial(masked_cross_entropy, weight=torch.as_tensor(class_weights, dtype=torch.float32)) \
        if class_weights is not None else masked_cross_entropy
    return MultiTaskLoss(expr=(1.0, fn))


def _fastai_callback():
    from fastai.callback.core import Callback
    return Callback


class PaperColorJitter(_fastai_callback()):
    """Random horizontal flip + colour jitter on each training image (not on validation batches).

    Works on normalised batches: it undoes the ImageNet normalisation, jitters in [0, 1], and redoes it.
    One jitter draw per image (torchvision's ColorJitter draws once per call, so it is called per image).
    """
    order = 5  # after the batch is on the device, before the model sees it

    def __init__(self, p_flip: float = 0.5, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 **jitter):
        from torchvision.transforms import v2

        self.p_flip = p_flip
        self.jitter = v2.ColorJitter(**(jitter or PAPER_JITTER))
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def before_batch(self):
        if not self.training:
            return
        x = self.learn.xb[0]
        if x.dim() != 4:
            return
        mean, std = self.mean.to(x), self.std.to(x)
        img = (x * std + mean).clamp(0, 1)
        flip = torch.rand(img.shape[0], device=img.device) < self.p_flip
        img = torch.where(flip[:, None, None, None], img.flip(-1), img)
        img = torch.stack([self.jitter(im) for im in img])
        self.learn.xb = ((img - mean) / std, *self.learn.xb[1:])


class ValidateEvery(_fastai_callback()):
    """End each training "epoch" after ``n_iter`` optimiser steps, so fastai validates (and
    SaveModelCallback keeps the best model) every ``n_iter`` iterations, as the paper did every 3920."""

    def __init__(self, n_iter: int, n_acc_batches: int = 1):
        self.n_batches = n_iter * n_acc_batches

    def after_batch(self):
        from fastai.callback.core import CancelTrainException

        if self.training and self.iter + 1 >= self.n_batches:
            raise CancelTrainException()


def paper_learner(dls, model: SENet50Classifier, class_weights=None, *, micro_batch: int = 64,
                  batch: int = 256, validate_every: int | None = None, monitor: str = "expr_score",
                  augment: bool = True, device="auto", log_name: str | None = None, fname: str = "senet_best"):
    """A Learner with the paper's recipe; fit with ``learn.fit(n, lr=slice(lr_body, lr_head))``.

    ``dls`` should deliver micro-batches of ``micro_batch`` images; gradients are accumulated to ``batch``.
    The best model by ``monitor`` on the validation set is saved and re-loaded at the end of the fit.
    """
    from fastai.callback.training import GradientAccumulation
    from fastai.callback.tracker import SaveModelCallback

    from affectlab.metrics import expr_accuracy, expr_f1, expr_score
    from affectlab.train import make_learner

    cbs = [SaveModelCallback(monitor=monitor, comp=None, fname=fname)]
    if batch > micro_batch:
        cbs.append(GradientAccumulation(n_acc=batch))
    if augment:
        cbs.append(PaperColorJitter())
    if validate_every:
        cbs.append(ValidateEvery(validate_every, max(batch // micro_batch, 1)))
    return make_learner(dls, model, senet_loss(class_weights), [expr_f1(), expr_accuracy(), expr_score()],
                        device=device, cbs=cbs, log_name=log_name, splitter=senet_splitter, opt_func=paper_sgd,
                        wd_bn_bias=True)  # PyTorch's SGD (the paper's) decays biases and BatchNorm weights too
