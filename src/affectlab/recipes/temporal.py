"""Paper 3's recipe (Do, Nguyen-Quynh & Kim, ABAW 2020): the multi-task temporal statistical model trained
on cached per-frame features — the frozen face model run once over every frame, then Table I's variants
fitted on ``[B, s, D]`` feature clips and scored with Table II's columns.

    from affectlab.recipes import temporal as recipe
    feats = recipe.frame_features(face, df, size, device, data_key=affectlab.cache.data_key(root))
    learn = affectlab.train.fit(recipe.learner(S, 6, dls, device, seed, feature_dim=face.feature_dim))
    preds, targs = affectlab.train.predict(learn, dls.valid)
    recipe.score(preds, targs)

The modules (``TemporalStatNet``, ``VARIANTS``, ``temporal_loss``, ``average_fusion``) are in
``affectlab.models.temporal_stat``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from affectlab.data import editions
from affectlab.labels import INVALID_VA
from affectlab.models.temporal_stat import TemporalStatNet, temporal_loss
from affectlab.cache import data_key, files_key, key
from affectlab.data.loaders import frame_batches
from affectlab.train import Plan, features, fit, make_learner, set_seed, weights_digest

OVERRIDES: dict[str, dict] = {
    # CPU: resnet18 features at 64 px (cached), small heads, a 16-frame window, heads trained on the cache.
    "quick": dict(backbone="resnet18", image_size=64, window=16, lstm_hidden=128, lstm_layers=1, dense=256,
                  dropout=0.2, epochs=3, lr=3e-3, batch_size=128, end_to_end=False),
    # The paper: VGGFace2 ResNet-50 (2048-d), 1024-unit bidirectional LSTM, a 16- or 32-frame window,
    # learning rate 1e-4, the last stage fine-tuned end-to-end. Dense widths are not given; 512 is ours.
    # Paper 3 = Do, Nguyen-Quynh & Kim, "Multi-Task Temporal Statistical Deep Learning Model" (ABAW 2020).
    "paper": dict(
        backbone="resnet50",     # §II.B-C: the VGGFace2 ResNet-50 face feature model
        image_size=224,          # not in the paper: the VGGFace2 ResNet-50's own input size
        window=16,               # §III.B: "previous block frames with size 16 or 32"
        lstm_hidden=1024,        # §II.C: "bidirectional LSTM cells with 1024 length"
        lstm_layers=2,           # §II.C: "one or two" LSTM cells (Table I's variant 6: the larger)
        dense=512,               # not in the paper (§II.C: "two dense layers", widths not given): ours
        dropout=0.2,             # not in the paper: ours
        epochs=10,               # not in the paper: ours
        lr=1e-4,                 # §III.A: "learning rate 0.0001 for all models"
        batch_size=64,           # not in the paper: ours
        end_to_end=True),        # §II.C: all frozen "exception the last stage", which trains with the heads
}


def frame_features(face_model: nn.Module, df, size: int, device="auto", bs: int = 256, data_key: str = "") -> torch.Tensor:
    """The frozen face model's features ``[len(df), D]`` of every row of ``df`` (in row order), computed once
    and cached under data/cache keyed by the model's weights, the image size, the rows and ``data_key``."""
    # files_key: a frame replaced under the same name (new size or mtime) invalidates the features
    k = key(weights_digest(face_model), size, data_key, files_key(df["path"].tolist()))
    return features(face_model, frame_batches(df, size, bs), device, cache=("temporal-frame-features", k))


def data(root: Path, S: dict, seed: int):
    """Chapter 05's Aff-Wild2 frames with expression and valence / arousal, ``(train_df, valid_df)``: every
    frame of every video, expressions in the settings' label space (``seed`` draws nothing here; it is the
    recipes' common signature). A multi-task-only release (sampled frames) is refused: the model reads clips."""
    from affectlab.data.abaw import read_abaw_multitask

    out = []
    for split in ("train", "val"):
        df = read_abaw_multitask(root, split, ("EXPR", "VA"))
        editions.require_consecutive_frames(df, "the temporal model", f"{S['window']}-frame clips of consecutive frames")
        out.append(editions.fit_labels(df, editions.space_of(S), "the temporal model's expression head")[0])
    return tuple(out)


def learner(S: dict, variant: int, dls, device, seed: int, *, feature_dim: int, backbone: nn.Module | None = None):
    """The one Learner of each Table I variant (1-6): a ``TemporalStatNet`` of the profile's widths over
    ``feature_dim``-d frame features (or over ``backbone`` end to end), the paper's loss, and ``learn.plan``:
    one cycle of ``epochs`` at ``lr`` with fastai's Adam. The chapter, the claims step and
    ``python -m affectlab.fit temporal`` all build it here; ``affectlab.train.fit(learn)`` trains it."""
    set_seed(seed)
    model = TemporalStatNet(variant, feature_dim, editions.space_of(S).n_classes,
                            lstm_hidden=S["lstm_hidden"], lstm_layers=S["lstm_layers"],
                            dense=S["dense"], dropout=S["dropout"], **({"backbone": backbone} if backbone is not None else {}))
    from affectlab.metrics import task_metrics

    metrics = task_metrics(("expr", "va") if model.variant.va else ("expr",), editions.space_of(S).n_classes)
    learn = make_learner(dls, model, temporal_loss(variant), metrics, device=device)
    learn.plan = Plan(S["epochs"], S["lr"], "one_cycle")
    return learn


def score(preds: dict, targs: dict, space=None) -> dict[str, float]:
    """The paper's Table II columns over the whole evaluation set (frames with a valid label only), the
    expression score by the formula of the label ``space``'s edition (by default the head's: 7 or 8 outputs)."""
    from affectlab.metrics import abaw_expr_score, accuracy, ccc, f1_macro

    out = {}
    space = space or editions.for_outputs(preds["expr"].shape[-1])
    keep = targs["expr"] >= 0
    y, p = targs["expr"][keep].numpy(), preds["expr"][keep].argmax(-1).numpy()
    out.update(accuracy=accuracy(y, p), f1=f1_macro(y, p, labels=range(space.n_classes)),
               expr_score=abaw_expr_score(y, p, year=space.year))
    if "va" in preds:
        keep = (targs["va"] != INVALID_VA).all(-1)
        t, q = targs["va"][keep].numpy(), preds["va"][keep].float().numpy()
        out.update(ccc_arousal=ccc(t[:, 1], q[:, 1]), ccc_valence=ccc(t[:, 0], q[:, 0]))
        out["va_score"] = (out["ccc_arousal"] + out["ccc_valence"]) / 2
    return out


def fit_and_score(variant: int, train_df, valid_df, feats, settings: dict, feature_dim: int, device="auto",
                  seed: int = 0, *, quiet: bool = False):
    """One variant on its own loaders (so every variant sees the same balanced clip order under ``seed``):
    the Learner, ``predict``'s ``(preds, targs)`` on the validation clips, and Table II's scores. ``quiet``: no
    progress bar or epoch table (the claims step)."""
    from affectlab.data.loaders import clip_dls
    from affectlab.train import predict

    dls = clip_dls(train_df, valid_df, s=settings["window"], targets=("expr", "va"), bs=settings["batch_size"],
                   features=feats, sampler="balanced", device=device, seed=seed)
    learn = fit(learner(settings, variant, dls, device, seed, feature_dim=feature_dim), quiet=quiet)
    preds, targs = predict(learn, dls.valid)
    return learn, preds, targs, score(preds, targs)


def paired_claims(seed: int, profile: str = "quick", data_root=None, device="auto", **overrides
                  ) -> dict[str, tuple[float, float]]:
    """Chapter 05's claims under one training seed, on the course's face model (its seed-0 pre-training):
    ``temporal_multitask`` (Table II model 2 vs model 1, expression score) and ``temporal_stat_va``
    (model 4 vs model 2, VA score); each variant trained by ``fit_and_score`` as the chapter does."""
    from affectlab.recipes import start
    from affectlab.recipes.pretrain import face_feature_model

    run = start("temporal", profile, data_root, device, seed, world_seed=0, **overrides)   # the course's world
    S, dev = run.S, run.device
    train_df, valid_df = data(run.root, S, seed)
    face = face_feature_model(profile, data_root, dev, 0)
    size, dk = face.pretrain_info["image_size"], data_key(run.root)
    feats = (frame_features(face, train_df, size, dev, data_key=dk), frame_features(face, valid_df, size, dev, data_key=dk))
    r = {v: fit_and_score(v, train_df, valid_df, feats, S, face.feature_dim, dev, seed, quiet=True)[3] for v in (1, 2, 4)}
    return {"temporal_multitask": (r[2]["expr_score"], r[1]["expr_score"]),
            "temporal_stat_va": (r[4]["va_score"], r[2]["va_score"])}


# --- the command's entry (python -m affectlab.fit temporal) ------------------------------------------------

def command_job(S: dict, root: Path, device, seed: int, limit: tuple[int, int] | None = None, weights=None):
    """Table I's variant 6 (STAT + LSTM, expression and VA branches), built by ``learner`` as the chapter's. ``end_to_end`` (the paper): on ``window``-frame image clips through the backbone,
    only its last stage trainable; otherwise on cached features of the frozen backbone. ``weights``: the
    VGGFace2 ResNet-50 pickle (without it a randomly initialised backbone, said in ``notes``);
    ``limit=(train clips, validation clips)`` (``--smoke``). Returns a ``recipes.Job``."""
    from affectlab.data.clean import imbalanced_sampler
    from affectlab.data.loaders import clip_dls
    from affectlab.models.backbones import Backbone, load_vggface2
    from affectlab.recipes import Job

    train_df, valid_df = data(root, S, seed)
    space = editions.space_of(S)
    n_train = len(train_df)
    stride = 1
    if limit is not None:    # the first validation video, a clip ending at every stride-th frame of it
        valid_df = valid_df[valid_df.video == valid_df.video.iloc[0]].reset_index(drop=True)
        stride = max(1, len(valid_df) // limit[1])
    set_seed(seed)
    backbone = Backbone(S["backbone"], vggface2=weights is not None)   # the release network takes its weights
    notes = [f"start weights: {load_vggface2(backbone, weights)}" if weights else
             f"start weights: none given (--weights): a randomly initialised {S['backbone']}",
             f"{space.n_classes} expression classes ({space.edition})"]
    other = editions.dropped_note(space, sum(df.attrs.get("dropped", {}).get("class Other (expr_classes=7)", 0)
                                             for df in (train_df, valid_df)), "frames (their VA labels kept)")
    notes += [other] if other else []
    sampler = imbalanced_sampler(train_df.expr.to_numpy(), num_samples=limit[0] if limit else None, seed=seed)
    common = dict(s=S["window"], targets=("expr", "va"), bs=S["batch_size"], device=device,
                  num_workers=S["num_workers"], seed=seed)
    if S["end_to_end"]:
        dls = clip_dls(train_df, valid_df, size=S["image_size"], sampler=sampler, **common)
        dls.valid = clip_dls(valid_df, valid_df, size=S["image_size"], stride=stride, **common).valid
    else:
        dk = data_key(root)
        feats = tuple(frame_features(backbone, df, S["image_size"], device, data_key=dk) for df in (train_df, valid_df))
        dls = clip_dls(train_df, valid_df, features=feats, sampler=sampler, **common)
        dls.valid = clip_dls(valid_df, valid_df, features=(feats[1], feats[1]), stride=stride, **common).valid
    notes.append(f"{len(dls.train.dataset)} training clips drawn per epoch by the balanced sampler, "
                 f"{len(dls.valid.dataset)} validation clips" + (" (end to end)" if S["end_to_end"] else
                                                                  " (cached frame features)"))
    learn = learner(S, 6, dls, device, seed, feature_dim=backbone.feature_dim,
                    backbone=backbone if S["end_to_end"] else None)
    return Job(learn, lambda cbs: fit(learn, cbs), lambda p, t: score(p, t, space),
               model="TemporalStatNet", variant="6", task={k: "VA" for k in ("ccc_arousal", "ccc_valence", "va_score")},
               n_train=n_train, notes=notes)
