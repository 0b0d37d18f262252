"""Paper 4's recipe (Gera & Balasubramanian, ABAW 2020): SCAN + CCI trained with the paper's optimiser.

The quick profile freezes the pre-trained backbone through conv4_x, caches its (conv3_x, conv4_x) maps once
(``cached_maps``) and trains only SCAN + CCI — or, for the plain ResNet baseline, conv5_x and its
classifier — on them (``maps_dls``, ``learner``). Chapter 06 and the claims step (``fit_and_score``) train on
these cached maps under every profile, ``profile="paper"`` included: there too only what follows conv4_x
learns. The paper's set-up, everything trained on images, is ``python -m affectlab.fit scan --profile paper``
(``command_job``).

    from affectlab.recipes import scan as recipe
    train_maps = recipe.cached_maps(face, train_df, "train", size, affectlab.cache.data_key(root), device)
    dls = recipe.maps_dls(train_maps, valid_maps, bs=S["batch_size"], sampler=..., device=device, seed=seed)
    learn = affectlab.train.fit(recipe.learner(S, recipe.make_scancci(face, S, seed), dls, device, seed))
    recipe.score(*affectlab.train.predict(learn))

The modules (``SCANCCI``, ``PlainResNet``, ``CachedMaps``, the attention blocks) and ``scancci_loss`` are in
``affectlab.models.scan``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from affectlab.data import editions
from affectlab.models.scan import SCANCCI, CachedMaps, MapsOf, PlainResNet, scancci_loss
from affectlab.cache import data_key, files_key, key
from affectlab.data.loaders import frame_batches
from affectlab.train import Plan, features, fit, make_learner, set_seed, weights_digest

OVERRIDES: dict[str, dict] = {
    # CPU: ResNet-18 at 64 px (conv3_x is 128×8×8, conv4_x 256×4×4); the pre-trained backbone frozen through
    # conv4_x and its maps cached, so only SCAN + CCI (and the baseline's conv5_x + classifier) train; one SCAN
    # shared by the 25 patches (the authors' code has this variant too), run as one batch per patch shape.
    "quick": dict(backbone="resnet18", image_size=64, m=25, k=4, lam=0.2, hidden=256, shared_local=True,
                  freeze_through="conv4_x", epochs=10, lr_backbone=1e-3, lr_heads=1e-2, decay=0.95, momentum=0.9,
                  weight_decay=1e-3, batch_size=64),
    # The paper: ResNet-50 (VGGFace2) at 224 px, SGD momentum 0.9, wd 1e-3, lr 1e-4 backbone / 1e-3
    # SCAN + CCI, ×0.95 every epoch, 20 epochs, batch 64, imbalanced-dataset sampler, everything trained.
    # Paper 4 = Gera & Balasubramanian, "Spatio-Channel Attention and Complementary Context Information"
    # (ABAW 2020).
    "paper": dict(
        backbone="resnet50",     # §3.2: a ResNet-50 pre-trained on VGGFace2
        image_size=224,          # §3.2: "resized to 224x224"
        m=25,                    # §2.1 and Algorithm 1: m = 25 local patches of conv3_x
        k=4,                     # §2.2 and Algorithm 1: conv4_x split into k = 4 blocks
        lam=0.2,                 # §2.2, Eq. 5: "λ is set to 0.2"
        hidden=256,              # §2.2: a 256-unit FC per CCI block
        shared_local=False,      # §2.1: one SCAN per patch
        freeze_through=None,     # §3.2: the whole network is optimised
        epochs=20,               # §3.2: "SGD for 20 epochs"
        lr_backbone=1e-4,        # §3.2: "Learning rate (lr) of backbone is initialized to 0.0001"
        lr_heads=1e-3,           # §3.2: "SCAN and CCI, lr is initialized to 0.001"
        decay=0.95,              # §3.2: "reduced by factor of 0.95 every epoch"
        momentum=0.9,            # §3.2: "Momentum for SGD is 0.9"
        weight_decay=1e-3,       # §3.2: "Weight decay with value 1e-3"
        batch_size=64),          # §3.2: "Batch size is fixed at 64"
}


def cached_maps(backbone: nn.Module, df, split: str, size: int, data_key: str = "", device="auto",
                bs: int = 256) -> dict[str, torch.Tensor]:
    """The (conv3_x, conv4_x) maps of ``backbone`` frozen through conv4_x for every row of ``df`` (float16,
    ``conv3`` and ``conv4``), cached under data/cache as ``scan-maps-<split>`` keyed by the backbone's
    weights, the image size, ``data_key`` and the rows' files (their identity, never their paths alone);
    ``expr`` holds the rows' labels."""
    # Built on a cache hit too: its (unused) heads draw from the RNG, which the numbers after it depend on (a
    # miss puts every random state back: affectlab.cache.cached).
    frozen = SCANCCI(copy.deepcopy(backbone), freeze_through="conv4_x")
    k = key(weights_digest(backbone), size, data_key, files_key(df["path"].tolist()))
    maps = dict(features(MapsOf(frozen), frame_batches(df, size, bs), device, cache=(f"scan-maps-{split}", k)))
    maps["expr"] = torch.as_tensor(df["expr"].to_numpy())
    return maps


def maps_dls(train: dict, valid: dict, bs: int = 64, sampler=None, device="cpu", seed: int = 0):
    """fastai DataLoaders of ``(conv3_x, conv4_x, {"expr": y})`` batches from cached maps (``n_inp`` = 2);
    ``train`` / ``valid`` hold ``conv3``, ``conv4`` and ``expr``. ``sampler``: e.g. the imbalanced sampler."""
    from affectlab.data.loaders import tensor_dls

    def pair(d):
        return (d["conv3"], d["conv4"]), {"expr": d["expr"]}

    return tensor_dls(pair(train), pair(valid), bs=bs, sampler=sampler, device=device, seed=seed)


def param_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """fastai splitter: [backbone, heads] — the paper's two learning rates (1e-4 backbone, 1e-3 SCAN + CCI).
    Accepts the model itself or a ``CachedMaps`` around it; frozen parameters are left out."""
    inner = model.model if isinstance(model, CachedMaps) else model
    head_ids = {id(p) for p in inner.head_parameters()}
    trainable = [p for p in inner.parameters() if p.requires_grad]
    return [[p for p in trainable if id(p) not in head_ids], [p for p in trainable if id(p) in head_ids]]


def epoch_decay(lrs, epochs: int, gamma: float = 0.95):
    """A fastai ``ParamScheduler`` schedule: the learning rates × γ after every epoch (pct runs 0 → 1)."""
    base = np.asarray(lrs, dtype=float)

    def sched(pct: float):
        return base * gamma ** min(int(pct * epochs), epochs - 1)

    return sched


def learner(S: dict, model: nn.Module, dls, device, seed: int):
    """The one Learner of both models this recipe trains — SCAN + CCI (``make_scancci``) and the plain ResNet
    (``make_plain``) — with the paper's optimisation: SGD (momentum 0.9, weight decay 1e-3) with two learning
    rates — backbone and heads — each × ``decay`` after every epoch (``learn.plan``: a constant schedule with
    that decay); loss λ·L_u + (1 − λ)·Σ L_i. On cached maps when ``dls`` is ``maps_dls``' (the quick profile,
    frozen through conv4_x), else end to end on images. The chapter, the claims step and
    ``python -m affectlab.fit scan`` all build it here; ``affectlab.train.fit(learn)`` trains it."""
    from functools import partial

    from fastai.callback.schedule import ParamScheduler
    from fastai.optimizer import SGD

    set_seed(seed)
    net = CachedMaps(model) if getattr(dls, "n_inp", 1) == 2 else model
    from affectlab.metrics import task_metrics

    learn = make_learner(dls, net, scancci_loss(S["lam"]), task_metrics(("expr",), editions.space_of(S).n_classes),
                         device=device, splitter=param_groups,
                         opt_func=partial(SGD, mom=S["momentum"], wd=S["weight_decay"]))
    lrs = [S["lr_backbone"], S["lr_heads"]]
    learn.plan = Plan(S["epochs"], lrs, "constant",
                      cbs=(ParamScheduler({"lr": epoch_decay(lrs, S["epochs"], S["decay"])}),))
    return learn


def score(preds: dict, targs: dict, occluded=None, space=None) -> dict[str, float]:
    """Table 2's figures over every validation frame (macro-F1 over the label ``space``'s classes, accuracy,
    the ABAW expression score of its edition; by default the head's 7 or 8 classes); with an ``occluded``
    mask, also accuracy and macro-F1 on the occluded and the unoccluded frames."""
    from affectlab.metrics import abaw_expr_score, accuracy, f1_macro

    space = space or editions.for_outputs(preds["expr"].shape[-1])
    n = space.n_classes
    y, p = targs["expr"].numpy(), preds["expr"].argmax(-1).numpy()
    r = {"f1": f1_macro(y, p, labels=range(n)), "accuracy": accuracy(y, p),
         "expr_score": abaw_expr_score(y, p, year=space.year)}
    if occluded is not None and occluded.any():
        for name, m in (("occluded", occluded), ("unoccluded", ~occluded)):
            r[f"accuracy_{name}"] = accuracy(y[m], p[m])
            r[f"f1_{name}"] = f1_macro(y[m], p[m], labels=range(n))
    return r


def data(root: Path, S: dict, seed: int):
    """Chapter 06's Aff-Wild2 expression frames ``(train_df, valid_df)``: every frame (``S`` and ``seed`` draw
    nothing here; they are the recipes' common signature). In the synthetic world the validation frames carry
    ``occluded`` / ``occluder`` from its ground truth (a real release has none). Expressions in the settings'
    label space: the edition's classes (8 with Other from the 3rd ABAW on), or 7 with ``expr_classes=7``."""
    from affectlab.data.abaw import read_abaw

    space = editions.space_of(S)
    train_df, valid_df = (editions.fit_labels(read_abaw(root, "EXPR", split), space, "SCAN+CCI's expression heads")[0]
                          for split in ("train", "val"))
    if (Path(root) / "manifest.json").is_file():
        from affectlab.data.synth import read_ground_truth

        truth = read_ground_truth(root, "val")[["video", "frame", "occluded", "occluder"]]
        valid_df = valid_df.merge(truth, on=["video", "frame"], how="left")
    return train_df, valid_df


def fit_and_score(model: nn.Module, train_maps: dict, valid_maps: dict, settings: dict, device="auto", seed: int = 0,
                  occluded=None, *, quiet: bool = False, retrain: bool = False, learner_out: list | None = None):
    """``model`` trained on cached maps (rare classes drawn more often, as the paper's imbalanced sampler) and
    scored on every validation frame: ``(scores, predicted classes)``; with an ``occluded`` mask, also
    accuracy and macro-F1 on the occluded and the unoccluded frames. ``quiet``: no progress bar or epoch
    table (the claims step).

    The fit goes through ``fit_or_reuse``, keyed by the model's initial weights, the settings, the seed and the
    maps: a model the claims step (or an earlier run) trained exactly so is read from data/cache with its epoch
    table and learning curve (``retrain``: train it again). ``learner_out``: a list the Learner is appended to
    (``reused``, ``epoch_table``, ``curve``), for a chapter to show its training."""
    from affectlab.cache import tensors_key
    from affectlab.data.clean import imbalanced_sampler
    from affectlab.train import fit_or_reuse
    from affectlab.train import predict

    dls = maps_dls(train_maps, valid_maps, bs=settings["batch_size"],
                   sampler=imbalanced_sampler(train_maps["expr"].numpy(), seed=seed), device=device, seed=seed)
    learn = fit_or_reuse(learner(settings, model, dls, device, seed), "scan-fit", settings, seed,
                         tensors_key(train_maps), tensors_key(valid_maps), code="scan", retrain=retrain, quiet=quiet)
    if learner_out is not None:
        learner_out.append(learn)
    preds, targs = predict(learn, dls.valid)
    return score(preds, targs, occluded), preds["expr"].argmax(-1).numpy()


def make_scancci(body: nn.Module, settings: dict, seed: int | None = None) -> SCANCCI:
    """SCAN + CCI on a copy of ``body`` with the profile's m, k, hidden width, shared local SCAN and frozen
    stages; with ``seed``, its new layers drawn under that seed (``set_seed`` first), whatever was drawn
    before: the chapter and the claims step then build the same model at the same seed."""
    S = settings
    if seed is not None:
        set_seed(seed)
    return SCANCCI(copy.deepcopy(body), editions.space_of(S).n_classes, m=S["m"], k=S["k"], hidden=S["hidden"],
                   shared_local=S["shared_local"], freeze_through=S["freeze_through"])


def make_plain(body: nn.Module, settings: dict, seed: int | None = None) -> PlainResNet:
    """The plain baseline on a copy of ``body`` with the same trainable budget as SCAN+CCI: the same stages
    frozen, and, when the backbone is frozen (quick), conv5_x too — SCAN+CCI has no conv5_x, so both then
    train only their heads on the same frozen pre-trained maps; with nothing frozen (paper) both train all.
    ``seed``: its classifier drawn under that seed, as ``make_scancci``."""
    if seed is not None:
        set_seed(seed)
    frozen = settings["freeze_through"] is not None
    return PlainResNet(copy.deepcopy(body), editions.space_of(settings).n_classes,
                       freeze_through=settings["freeze_through"], train_conv5=not frozen)


def random_body(face: nn.Module, seed: int = 0) -> nn.Module:
    """The face model's architecture with random weights drawn under ``seed`` (Table 4's "no pretraining").
    The chapter and the claims step draw it once, at seed 0, as the face model is pre-trained once: its frozen
    maps are then computed once and cached, and a run's seed draws only what trains on them."""
    from affectlab.models.backbones import make_backbone

    info = face.pretrain_info
    set_seed(seed)
    return make_backbone(info["arch"], **({"width": info["width"]} if "width" in info else {}))


def paired_claims(seed: int, profile: str = "quick", data_root=None, device="auto", **overrides
                  ) -> dict[str, tuple[float, float]]:
    """Chapter 06's claims under one training seed on the course's face model (its seed-0 pre-training), every
    model frozen through conv4_x on the same cached maps: ``scan_vs_plain`` (SCAN+CCI vs the plain ResNet with
    the same trainable budget, ``make_plain``; macro-F1, Table 2), ``scan_pretraining`` (SCAN+CCI on the
    pre-trained vs a random body drawn once at seed 0, macro-F1, Table 4) and ``scan_occlusion`` (minus each
    model's accuracy drop from unoccluded to occluded frames)."""
    from affectlab.recipes import start
    from affectlab.recipes.pretrain import face_feature_model

    run = start("scan", profile, data_root, device, seed, world_seed=0, **overrides)   # the course's world
    S, dev = run.S, run.device
    train_df, valid_df = data(run.root, S, seed)
    occluded = valid_df["occluded"].to_numpy().astype(bool) if "occluded" in valid_df else None
    face = face_feature_model(profile, data_root, dev, 0)
    size, dk = face.pretrain_info["image_size"], data_key(run.root)
    maps = {s: cached_maps(face, df, s, size, dk, dev) for s, df in (("train", train_df), ("valid", valid_df))}

    # each fit kept in data/cache: chapter 06 at this seed reads the ones it trains too (fit_or_reuse)
    scan, _ = fit_and_score(make_scancci(face, S, seed), maps["train"], maps["valid"], S, dev, seed, occluded,
                            quiet=True)
    plain, _ = fit_and_score(make_plain(face, S, seed), maps["train"], maps["valid"], S, dev, seed, occluded,
                             quiet=True)
    body = random_body(face)   # drawn once (seed 0), as the face model is pre-trained once
    rmaps = {s: cached_maps(body, df, s, size, dk, dev) for s, df in (("train", train_df), ("valid", valid_df))}
    scratch, _ = fit_and_score(make_scancci(body, S, seed), rmaps["train"], rmaps["valid"], S, dev, seed, quiet=True)
    out = {"scan_vs_plain": (scan["f1"], plain["f1"]), "scan_pretraining": (scan["f1"], scratch["f1"])}
    if occluded is not None and occluded.any():
        drop = lambda r: r["accuracy_unoccluded"] - r["accuracy_occluded"]  # noqa: E731
        out["scan_occlusion"] = (-drop(scan), -drop(plain))
    return out


# --- the command's entry (python -m affectlab.fit scan) ----------------------------------------------------

def command_job(S: dict, root: Path, device, seed: int, limit: tuple[int, int] | None = None, weights=None):
    """SCAN + CCI on Aff-Wild2's expression frames with ``learner``'s optimisation (SGD, two learning
    rates × ``decay`` per epoch, the imbalanced sampler), on images: the backbone trains from
    ``freeze_through`` on (the paper: everything). ``weights``: the VGGFace2 ResNet-50 pickle (without it a
    randomly initialised backbone, said in ``notes``); ``limit=(train, valid)`` frames (``--smoke``).
    Returns a ``recipes.Job``."""
    from affectlab.data.clean import imbalanced_sampler
    from affectlab.data.loaders import frame_dls
    from affectlab.models.backbones import Backbone, load_vggface2
    from affectlab.recipes import Job

    train_df, valid_df = data(root, S, seed)
    space = editions.space_of(S)
    n_train = len(train_df)
    if limit is not None:
        valid_df = valid_df.iloc[:limit[1]]
    set_seed(seed)
    backbone = Backbone(S["backbone"], vggface2=weights is not None)   # the release network takes its weights
    notes = [f"start weights: {load_vggface2(backbone, weights)}" if weights else
             f"start weights: none given (--weights): a randomly initialised {S['backbone']}",
             f"{len(train_df)} training frames (drawn by the imbalanced sampler), {len(valid_df)} validation frames; "
             f"{space.n_classes} classes ({space.edition})"]
    other = editions.dropped_note(space, sum(df.attrs.get("dropped", {}).get("class Other (expr_classes=7)", 0)
                                             for df in (train_df, valid_df)))
    notes += [other] if other else []
    sampler = imbalanced_sampler(train_df.expr.to_numpy(), num_samples=limit[0] if limit else None, seed=seed)
    dls = frame_dls(train_df, valid_df, targets=("expr",), size=S["image_size"], bs=S["batch_size"], augment=True,
                    sampler=sampler, device=device, num_workers=S["num_workers"], seed=seed)
    learn = learner(S, make_scancci(backbone, S, seed), dls, device, seed)
    return Job(learn, lambda cbs: fit(learn, cbs), lambda p, t: score(p, t, space=space), model="SCANCCI", variant=S["backbone"], task={},
               n_train=n_train, notes=notes)
