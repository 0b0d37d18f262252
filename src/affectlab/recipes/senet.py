"""The SE-ResNet-50 fine-tuning recipe (Cafarelli et al., ABAW 2020; chapter 04) as fastai parts.

The network and its weighted loss live in ``affectlab.models.senet``. Here each piece of the paper's
recipe is a fastai part: ``senet_splitter`` makes the two parameter groups (``lr=slice(1e-6, 1e-3)`` gives
each its rate), ``paper_sgd`` the optimiser, ``GradientAccumulation(256)`` the large batch,
``PaperColorJitter`` the augmentation, ``ValidateEvery`` + ``SaveModelCallback`` the interval validation;
``paper_learner`` puts them together with ``senet_loss`` and ``learner`` adds the paper's schedule. ``data`` gives the chapter's Aff-Wild2
expressions with ExpW, ``train_head`` the ablations' head-only fits on frozen features, ``score`` the
paper's figures.

    from affectlab.recipes import senet as recipe, start
    run = start("senet50", "quick")
    learn = affectlab.train.fit(recipe.learner(run.S, model, dls, run.device, run.seed, class_weights=w))
    recipe.score(*affectlab.train.predict(learn))
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback, CancelTrainException
from torch import nn

from affectlab import metrics as M
from affectlab.data import editions
from affectlab.data.abaw import read_abaw
from affectlab.data.loaders import frame_batches, frame_dls
from affectlab.data.static import read_expw
from affectlab.models.senet import FeatureHead, SENet50Classifier, senet_loss
from affectlab.cache import files_key, key
from affectlab.train import Plan, features, fit, make_learner, weights_digest

# The paper: lr 1e-3 on the new layer and 1e-6 on the body, batches of 256 from 4 micro-batches of 64,
# validation every 3920 iterations, a SENet-50 at 112 px. The quick profile fine-tunes the course's
# ResNet-18 face feature model at 64 px for one epoch on a budget of frames (see models/senet.py).
OVERRIDES = {
    "quick": dict(arch="resnet18", image_size=64, micro_batch=32, batch=128, lr_head=1e-2, lr_body=1e-4,
                  epochs=1, validate_every=None, max_train_frames=2000, max_extra=400, head_steps=300, head_lr=0.05),
    # Paper 2 = Cafarelli et al., "Expression Recognition Analysis in the Wild" (ABAW 2020), §3.2.
    "paper": dict(
        arch="seresnet50",       # §3.2 "Implementation and Setup": SE-Net50 pre-trained on VGGFace2
        image_size=112,          # §3.2 "Data Processing": the competition's 112x112 cropped-aligned frames
        micro_batch=64,          # §3.2: the 256 batch "divided into 4 parts" with accumulated gradients
        batch=256,               # §3.2: "mini-batch size to 256"
        lr_head=1e-3,            # §3.2: "0.001 for the last layer"
        lr_body=1e-6,            # §3.2: "1e-6 for the rest of the network" (SGD, momentum 0.9, wd 0.005)
        epochs=20,               # not in the paper (it stops "on the best validation performance"): a cap of ours
        validate_every=3920,     # §3.2: "we validated our model every 3920 iterations"
        max_train_frames=None,   # all of Aff-Wild2's training frames ...
        max_extra=None,          # ... with all of ExpW merged in (§3.1)
        head_steps=300,          # not in the paper: the ablations' head-only fits on frozen features (ours)
        head_lr=0.05),           # idem
}
PAPER_JITTER = dict(brightness=0.4, contrast=0.3, saturation=0.25, hue=0.5)


def senet_splitter(model: SENet50Classifier) -> list[list[nn.Parameter]]:
    """fastai splitter: [body, head] parameter groups, so ``lr=slice(body_lr, head_lr)`` sets both."""
    return [list(model.body.parameters()), list(model.head.parameters())]


def paper_sgd(params, lr=1e-3, **kw):
    """The paper's optimiser: SGD, momentum 0.9, weight decay 0.005 added to the gradient (PyTorch's
    ``torch.optim.SGD`` semantics, hence ``decouple_wd=False``)."""
    from fastai.optimizer import SGD

    kw = {"mom": 0.9, "wd": 0.005, "decouple_wd": False, **kw}
    return SGD(params, lr, **kw)


class PaperColorJitter(Callback):
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


class ValidateEvery(Callback):
    """End each training "epoch" after ``n_iter`` optimiser steps, so fastai validates (and
    SaveModelCallback keeps the best model) every ``n_iter`` iterations, as the paper did every 3920."""

    def __init__(self, n_iter: int, n_acc_batches: int = 1):
        self.n_batches = n_iter * n_acc_batches

    def after_batch(self):
        if self.training and self.iter + 1 >= self.n_batches:
            raise CancelTrainException()


def paper_learner(dls, model: SENet50Classifier, class_weights=None, *, micro_batch: int = 64,
                  batch: int = 256, validate_every: int | None = None, monitor: str = "expr_score",
                  augment: bool = True, device="auto", log_name: str | None = None, fname: str = "senet_best",
                  space: editions.LabelSpace = editions.COURSE_DEFAULT):
    """A Learner with the paper's recipe (``learner`` adds its schedule: ``learn.plan``, run by ``train.fit``).

    ``dls`` should deliver micro-batches of ``micro_batch`` images; gradients are accumulated to ``batch``.
    The best model by ``monitor`` on the validation set is saved and re-loaded at the end of the fit.
    """
    from fastai.callback.tracker import SaveModelCallback
    from fastai.callback.training import GradientAccumulation

    cbs = [SaveModelCallback(monitor=monitor, comp=None, fname=fname)]
    if batch > micro_batch:
        cbs.append(GradientAccumulation(n_acc=batch))
    if augment:
        cbs.append(PaperColorJitter())
    if validate_every:
        cbs.append(ValidateEvery(validate_every, max(batch // micro_batch, 1)))
    return make_learner(dls, model, senet_loss(class_weights), expression_metrics(space),
                        device=device, cbs=cbs, log_name=log_name, splitter=senet_splitter, opt_func=paper_sgd,
                        wd_bn_bias=True)  # PyTorch's SGD (the paper's) decays biases and BatchNorm weights too


def expression_metrics(space: editions.LabelSpace) -> list:
    """What fastai reports each validation: macro-F1 over the label space's classes, accuracy, and the ABAW
    score of its edition's year (the monitor of the best model)."""
    from affectlab.metrics import expr_accuracy, expr_f1, expr_score

    return [expr_f1(n_classes=space.n_classes), expr_accuracy(), expr_score(year=space.year)]


def learner(S: dict, model: SENet50Classifier | FeatureHead, dls, device, seed: int, *, class_weights=None,
            fname: str = "senet_best", log_name: str | None = None):
    """The one Learner of each model this recipe trains, with ``learn.plan``; ``affectlab.train.fit(learn)``
    trains it. The caller seeds before it builds the loaders and the model.

    - ``SENet50Classifier``: the fine-tuning (``paper_learner`` with the profile's micro-batch, accumulated
      batch and validation interval), ``epochs`` at the paper's two rates ``slice(lr_body, lr_head)``, held
      constant. The chapter and ``python -m affectlab.fit senet50`` build it here.
    - ``FeatureHead``: the ablations' new layer on frozen features (chapter 04 and the claims step), the
      paper's optimiser (``paper_sgd``) and loss, ``S["micro_batch"]`` rows a micro-batch, 4 of them
      accumulated per step, one pass of ``S["head_steps"]`` steps drawn with replacement (``head_dls``) at
      ``S["head_lr"]``, held constant."""
    from fastai.callback.training import GradientAccumulation

    space = editions.space_of(S)
    if isinstance(model, FeatureHead):
        learn = make_learner(dls, model, senet_loss(class_weights), expression_metrics(space),
                             device=device, opt_func=paper_sgd, wd_bn_bias=True,  # the paper's SGD decays biases
                             cbs=[GradientAccumulation(n_acc=4 * S["micro_batch"])], fp16=False)   # a linear layer
        learn.plan = Plan(1, S["head_lr"], "constant")
        return learn
    learn = paper_learner(dls, model, class_weights, micro_batch=S["micro_batch"], batch=S["batch"],
                          validate_every=S["validate_every"], device=device, log_name=log_name, fname=fname,
                          space=space)
    learn.plan = Plan(S["epochs"], slice(S["lr_body"], S["lr_head"]), "constant")
    return learn


# --- the chapter's data, ablations and scores -------------------------------------------------------------

def _subdir(root: Path, name: str) -> Path:
    return root / name if (root / name).is_dir() else root


def data(root: Path, S: dict, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Aff-Wild2's expression frames (training: at most ``S["max_train_frames"]``; validation: every third
    frame of each video, neighbours being near-duplicates) and ExpW's training faces (at most
    ``S["max_extra"]``), as ``(train_aw, valid, extra)``."""
    rng = np.random.default_rng(seed)

    def budget(df, n):
        return df if n is None or len(df) <= n else \
            df.iloc[np.sort(rng.choice(len(df), n, replace=False))].reset_index(drop=True)

    aw = _subdir(root, "affwild2")
    train_aw, valid = (expressions(aw, split, S) for split in ("train", "val"))
    train_aw = budget(train_aw, S["max_train_frames"])
    valid = valid[valid.groupby("video").cumcount() % 3 == 2].reset_index(drop=True)
    extra = budget(read_expw(_subdir(root, "expw"), "train"), S["max_extra"])
    return train_aw, valid, extra


def expressions(aw: Path, split: str, S: dict) -> pd.DataFrame:
    """Aff-Wild2's expression frames of ``split`` in the settings' label space: every class of the edition
    (8 with Other from the 3rd ABAW on), or the 7 with ``expr_classes=7`` (Other's frames dropped, counted)."""
    return editions.fit_labels(read_abaw(aw, "EXPR", split), editions.space_of(S), "the SE-ResNet's expression head")[0]


def score(preds: dict, targs: dict, space=None) -> dict[str, float]:
    """``score_classes`` of a model's ``predict`` output (``expr`` logits against ``expr`` labels)."""
    return score_classes(targs["expr"], preds["expr"].argmax(1), space or editions.for_outputs(preds["expr"].shape[1]))


def score_classes(t, p, space: editions.LabelSpace = editions.COURSE_DEFAULT) -> dict[str, float]:
    """The paper's figures of predicted classes ``p`` against labels ``t``: macro-F1 over the label space's
    classes, accuracy, the ABAW expression score of its edition (the 2020 formula on 7 classes, macro-F1 over
    8 from 2022) and each class's F1 (``f1_<expression>``, Table 2)."""
    t, p = np.asarray(t), np.asarray(p)
    return {"f1": M.f1_macro(t, p, labels=range(space.n_classes)), "accuracy": M.accuracy(t, p),
            "expr_score": M.abaw_expr_score(t, p, year=space.year),
            **{f"f1_{e}": M.f1_macro(t, p, labels=[k]) for k, e in enumerate(space.classes)}}


def frame_features(net: nn.Module, df: pd.DataFrame, S: dict, device) -> torch.Tensor:
    """A (frozen) body's features of every row of ``df``, in order; cached under data/cache, keyed by the
    body's weights, the image size and the frames' files (the claims step reuses them across seeds)."""
    k = key(weights_digest(net), S["image_size"], files_key(df["path"].tolist()))
    return features(net, frame_batches(df, S["image_size"]), device=device, cache=("senet-frame-features", k))


def head_dls(S: dict, train: tuple, valid: tuple, seed: int):
    """Loaders of frozen features ``(features, labels)`` for a ``FeatureHead``: one pass of
    ``S["head_steps"]`` × 4 micro-batches of ``S["micro_batch"]`` rows drawn uniformly with replacement (a
    generator seeded with ``seed``), and the validation rows in order."""
    from affectlab.data.loaders import IndexDraws, tensor_dls

    n, mb, draws = len(train[1]), S["micro_batch"], 4 * S["head_steps"]
    sampler = IndexDraws(lambda g: torch.cat([torch.randint(0, n, (mb,), generator=g) for _ in range(draws)]).tolist(),
                         draws * mb, torch.Generator().manual_seed(seed))
    return tensor_dls(((train[0],), {"expr": train[1]}), ((valid[0],), {"expr": valid[1]}), bs=mb, sampler=sampler,
                      seed=seed, drop_last=False)


def train_head(S: dict, feats: torch.Tensor, y: torch.Tensor, class_weights, valid: tuple, device, seed: int, *,
               quiet: bool = False):
    """A ``FeatureHead`` (initialised under ``seed``, so paired heads start alike) on frozen ``feats``,
    trained by ``learner`` on ``head_dls`` (``valid``: the validation ``(features, labels)`` fastai reports
    on). Returns ``features -> classes``."""
    torch.manual_seed(seed)
    head = FeatureHead(feats, editions.space_of(S).n_classes)
    dls = head_dls(S, (feats, torch.as_tensor(y)), (valid[0], torch.as_tensor(valid[1])), seed)
    fit(learner(S, head, dls, device, seed, class_weights=class_weights), quiet=quiet)
    head = head.cpu().eval()
    return lambda f: head(f)["expr"].argmax(1)


RARE = ("Anger", "Disgust", "Fear")   # the classes the weights are meant for (Aff-Wild2's rarest three)


def paired_claims(seed: int, profile: str = "quick", data_root=None, device="auto", **overrides
                  ) -> dict[str, tuple[float, float]]:
    """Chapter 04's claim under one training seed: ``senet_weighted_rare``, the mean F1 of Anger, Disgust and
    Fear with the class-weighted loss vs without, the same head (``train_head``, same draws) on the course's
    face model's frozen features (its seed-0 pre-training). Scored on every validation frame, not the
    chapter's every third: the rare classes have few frames."""
    from affectlab.data.clean import class_weights
    from affectlab.recipes import start
    from affectlab.recipes.pretrain import face_feature_model

    run = start("senet50", profile, data_root, device, seed, world_seed=0, **overrides)   # the course's world
    S, dev = run.S, run.device
    train_aw, _, extra = data(run.root, S, seed)
    merged = pd.concat([train_aw, extra], ignore_index=True)
    valid = expressions(_subdir(run.root, "affwild2"), "val", S)
    space = editions.space_of(S)
    body = face_feature_model(profile, data_root, dev, 0)
    f_train, f_valid = frame_features(body, merged, S, dev), frame_features(body, valid, S, dev)
    y = torch.as_tensor(merged.expr.to_numpy())
    rare_f1 = {}
    for weighted in (True, False):
        w = torch.as_tensor(class_weights(y.numpy(), space.n_classes), dtype=torch.float32) if weighted else None
        head = train_head(S, f_train, y, w, (f_valid, valid.expr.to_numpy()), dev, seed, quiet=True)
        s = score_classes(valid.expr.to_numpy(), head(f_valid).numpy(), space)
        rare_f1[weighted] = float(np.mean([s[f"f1_{e}"] for e in RARE]))
    return {"senet_weighted_rare": (rare_f1[True], rare_f1[False])}


# --- the command's entry (python -m affectlab.fit senet50) -------------------------------------------------

def command_job(S: dict, root: Path, device, seed: int, limit: tuple[int, int] | None = None, weights=None):
    """The paper's fine-tuning as chapter 04 runs it (``paper_learner``: two learning rates, SGD, 4
    accumulated micro-batches, colour jitter, validation every ``validate_every`` steps, the best model
    kept) on Aff-Wild2's expression frames merged with ExpW, from ``weights`` (the VGGFace2 SE-ResNet-50
    pickle; without it a randomly initialised body, said in ``notes``). Returns a ``recipes.Job``."""
    from affectlab.data.clean import class_weights
    from affectlab.models.backbones import Backbone, load_vggface2
    from affectlab.recipes import Job
    from affectlab.train import set_seed

    train_aw, valid, extra = data(root, S, seed)
    space = editions.space_of(S)
    merged = pd.concat([train_aw, extra], ignore_index=True)
    n_train = len(merged)
    if limit is not None:
        merged = merged.sample(n=min(limit[0], len(merged)), random_state=seed).reset_index(drop=True)
        valid = valid.iloc[:limit[1]]
    w = class_weights(merged.expr.to_numpy(), space.n_classes)
    set_seed(seed)
    dls = frame_dls(merged, valid, targets=("expr",), size=S["image_size"], bs=S["micro_batch"], augment=False,
                    device=device, num_workers=S["num_workers"], seed=seed)
    body = Backbone(S["arch"], vggface2=weights is not None)   # the release network takes its weights
    notes = [f"{len(merged)} training frames (Aff-Wild2 + ExpW), {len(valid)} validation frames; "
             f"{space.n_classes} classes ({space.edition})"]
    if space.n_classes == 8:
        notes.append("ExpW labels 7 classes: its faces never teach Other, which only Aff-Wild2's frames do; the "
                     "class weights count(most common) / count(class) are taken over the merged labels, so Other's "
                     "weight comes from Aff-Wild2's Other frames alone")
    other = editions.dropped_note(space, sum(df.attrs.get("dropped", {}).get("class Other (expr_classes=7)", 0)
                                             for df in (train_aw, valid)))
    notes += [other] if other else []
    notes.append(f"start weights: {load_vggface2(body, weights)}" if weights else
                 f"start weights: none given (--weights): a randomly initialised {S['arch']}")
    learn = learner(S, SENet50Classifier(body, space.n_classes), dls, device, seed, class_weights=w, fname="best")
    return Job(learn, lambda cbs: fit(learn, cbs), lambda p, t: score(p, t, space), model="SENet50Classifier",
               variant=S["arch"], task={}, n_train=n_train, notes=notes)
