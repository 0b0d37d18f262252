"""The FaceChannel recipe (Barros & Sciutti, ABAW 2020; chapter 03): settings, data, fits and scores.

The networks and their loss live in ``affectlab.models.facechannel``; this module trains them the paper's
way — Table I's frame variants from scratch on coherent, balanced frames, then FC-S on the trained FC's
per-frame features — and scores them on the whole validation set.

    from affectlab.recipes import facechannel as recipe, start
    run = start("facechannel", "quick")
    train_df, clean_df, valid_df, by_class, by_va = recipe.data(run.root, run.S, run.seed)
    valid_rows = recipe.validation_rows(valid_df)
    model, recorder, preds, targs = recipe.fit_frame_model(run.S, "FC_E", by_class, valid_rows, run.device, run.seed)
    recipe.score(preds, targs)        # {"f1", "accuracy"} (and "ccc_valence" / "ccc_arousal" with a VA head)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectlab import metrics as M
from affectlab.data import editions
from affectlab.data.clean import imbalanced_sampler, va_bins
from affectlab.data.loaders import clip_dls, frame_batches, frame_dls
from affectlab.models.facechannel import FaceChannel, FaceChannelS, facechannel_loss
from affectlab.train import Plan, features, fit, make_learner, predict, set_seed

# The paper's settings (120 px, 10-frame clips, batch 1024, SGD from the authors' TPE search) and the
# quick CPU profile (64 px, few epochs). Shared settings (workers, fp16) come from affectlab.train.
OVERRIDES = {
    # quick: 7 epochs of 2,000 frames. The paper's dropout (0.25 per block, 0.5 dense) starves a quarter-width
    # network (with it and 5 epochs seeds 1 and 2 stayed at chance), so quick uses 0.1 (0.05 per block). With
    # 15 epochs chapter 03 took 486 s on one thread of a 2-core AMD EPYC with nothing cached, with 8 about
    # 245 s; with 7, 210 s (seed 1, one thread, beside another chapter) and 182 s (seed 0, two threads). Only
    # the joint FC-S trains (``seq_variants``): Table I's three single-task FC-S add about 30 s each on one
    # thread. Adam at 5e-3: at 1e-2 the joint FC's validation loss jumped between epochs and its expression F1
    # ranged 0.165-0.279 over seeds 0-2 on one thread (0.165 is what shuffled labels reach); at 3e-3 one seed's
    # arousal CCC stayed at 0.04; at 5e-3 F1 0.196-0.285 and arousal CCC 0.275-0.379 over those three seeds on
    # one thread and seeds 0-1 on two (benchmarks/seed_spread.md has all six settings).
    "quick": dict(image_size=64, width=16, dropout=0.1, seq_len=10, batch_size=64, epochs=7, lr=5e-3,
                  seq_epochs=4, seq_lr=3e-3, max_train_frames=2000, seq_variants=["FC"]),
    # Paper 1 = Barros & Sciutti, "The FaceChannelS" (ABAW 2020). What it does not state is marked "not in
    # the paper" with where the value comes from.
    "paper": dict(
        image_size=120,          # §III.B: "the same original dimensions of (120,120,3) pixels"
        width=64,                # §II: "the standard FaceChannel definition [1]" (widths of [1]; ~2M parameters, §II.B)
        dropout=0.5,             # not in this paper's text: [1]'s 0.5 before the dense layer (0.25 per conv block)
        seq_len=10,              # §III.B: "a sequence with 10 images" for FC-S
        batch_size=1024,         # §III.B: "we maintain a batch size of 1024"
        epochs=30,               # not in the paper (its TPE search, §II.B, gives no epoch count): ours
        lr=0.0155,               # not in the paper's text: the TPE-found (§II.B) SGD rate of the authors' code
        momentum=0.74,           # idem: the TPE-found SGD momentum of the authors' code
        seq_epochs=30,           # not in the paper: ours, as epochs
        seq_lr=1e-3,             # not in the paper: ours (FC-S starts from the trained FC, §III.B)
        seq_variants=["FC_A", "FC_V", "FC_E", "FC"],   # Table I: an FC-S on each frame variant (a list, as JSON)
        max_train_frames=None),  # every balanced frame (§III.A's class and 21-bin VA balancing)
}
TARGETS = ("expr", "va")
VA_ONLY = ("FC_A", "FC_V")   # the single-dimension variants train on the VA-balanced set


def affwild2_dir(root: Path) -> Path:
    """Aff-Wild2's folder in a data root (the synthetic world's ``affwild2/``, or the root itself)."""
    return root / "affwild2" if (root / "affwild2").is_dir() else root


def budget(df: pd.DataFrame, n: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``n`` rows drawn without replacement, in their order: balanced sets are several times larger
    than the data, so the quick profile draws a fixed budget (``n=None``: all)."""
    return df if n is None or len(df) <= n else df.iloc[np.sort(rng.choice(len(df), n, replace=False))]


def validation_rows(valid_df: pd.DataFrame, stride: int = 3) -> pd.DataFrame:
    """Every ``stride``-th frame of each validation video (neighbouring frames are near-duplicates): the
    rows both the frame and the sequence models are scored on."""
    rank = valid_df.groupby("video", sort=False).cumcount().to_numpy()
    return valid_df[rank % stride == stride - 1].reset_index(drop=True)


def score(preds: dict, targs: dict, space=None) -> dict[str, float]:
    """Table I's metrics over the whole validation set (never per-batch averages): CCC of each VA column the
    model predicts, macro-F1 (over every class of the label ``space``: 8 with ``Other`` from the 3rd ABAW on;
    by default the head's) and accuracy of its expressions; unlabelled rows (VA -5, expression -1) left out."""
    out = {}
    if "va" in preds:
        va_t, va_p = targs["va"].numpy(), preds["va"].numpy()
        ok = (va_t != -5).all(1)
        out["ccc_valence"] = M.ccc(va_t[ok, 0], va_p[ok, 0])
        out["ccc_arousal"] = M.ccc(va_t[ok, 1], va_p[ok, 1])
    if "expr" in preds:
        e_t, e_p = targs["expr"].numpy(), preds["expr"].numpy()
        ok = e_t >= 0
        n = (space or editions.for_outputs(e_p.shape[1])).n_classes
        out["f1"] = M.f1_macro(e_t[ok], e_p[ok], labels=range(n))
        out["accuracy"] = M.accuracy(e_t[ok], e_p[ok])
    return out


def make_fc(S: dict, tasks, device="cpu") -> FaceChannel:
    """The FaceChannel variant with ``tasks`` at the profile's size, width and dropout, in the memory format
    that is fastest on ``device``: channels-last on a GPU; on a CPU the default one, as channels-last made a
    training step of the quick FaceChannel (8-16 channels, whose BatchNorms dominate) 1.5x slower on two
    threads of this course's 2-core machine (``python -m benchmarks.run --only models``: ``quick_channels_*``)."""
    from affectlab.train import resolve_device

    fmt = torch.channels_last if resolve_device(device).type == "cuda" else torch.contiguous_format
    return FaceChannel(tasks=tasks, image_size=S["image_size"], width=S["width"], dropout=S["dropout"],
                       n_classes=editions.space_of(S).n_classes).to(memory_format=fmt)


def learner(S: dict, name: str, dls, device, seed: int, *, fc: FaceChannel | None = None):
    """The one Learner of each model this recipe trains — a frame variant of Table I (``name`` a key of
    ``VARIANTS``: ``FC``, ``FC_E``, ``FC_A``, ``FC_V``) from scratch, or ``"FC-S"`` started from the trained
    ``fc`` with its trunk frozen — with the paper's loss and ``learn.plan``: a one-cycle schedule over
    ``epochs`` at ``lr`` (``seq_epochs`` / ``seq_lr`` for FC-S). When the profile sets the paper's SGD
    ``momentum`` (the authors' TPE search), the optimiser is SGD with it, held there (``fit_one_cycle`` would
    cycle it); otherwise fastai's Adam. The chapter, the claims step and ``python -m affectlab.fit`` all build
    it here; ``affectlab.train.fit(learn)`` trains it. The caller seeds (``set_seed``) before building the
    loaders, as the initial weights are drawn here after them."""
    from functools import partial

    from fastai.optimizer import SGD

    from affectlab.models.facechannel import VARIANTS

    if name == "FC-S":
        if fc is None:
            raise ValueError("FC-S starts from a trained FaceChannel: pass fc=")
        tasks, model = fc.tasks, FaceChannelS.from_facechannel(fc, freeze_trunk=True)
        epochs, lr = S["seq_epochs"], S["seq_lr"]
    else:
        tasks, model = VARIANTS[name], make_fc(S, VARIANTS[name], device)
        epochs, lr = S["epochs"], S["lr"]
    mom = S.get("momentum")
    opt = {"opt_func": partial(SGD, mom=mom)} if mom else {}
    metrics = M.task_metrics(tasks, editions.space_of(S).n_classes)   # Table I's columns in the epoch table
    learn = make_learner(dls, model, facechannel_loss(tasks), metrics, device=device, **opt)
    learn.plan = Plan(epochs, lr, "one_cycle", moms=(mom, mom, mom) if mom else None)
    return learn


# What trains a frame model: a change to any of it retrains instead of reading the cache (affectlab.cache).
_CODE = "facechannel"


def fit_frame_model(S: dict, name: str, train_df: pd.DataFrame, valid_rows: pd.DataFrame, device, seed: int, *,
                    quiet: bool = False, retrain: bool = False):
    """One frame variant (``name``: ``FC``, ``FC_E``, ``FC_A``, ``FC_V``) trained from scratch by ``learner``
    and predicted on ``valid_rows``. Returns the model (CPU, eval mode), its training record (``losses`` per
    batch and ``values`` per epoch — [train loss, valid loss] — as fastai's recorder, ``table`` the epoch
    table fastai printed while it trained, ``reused`` whether it came from the cache), and ``predict``'s
    ``(preds, targs)``.

    The result is cached under data/cache, keyed by the settings, the variant, the seed, the device type and
    thread count, the rows and the training code (``affectlab.cache``): the chapter and the claims step
    (chapter 03's seed is one of the claims' seeds) train each model once. ``retrain``: train it again here
    (and store that). ``quiet``: no progress bar or epoch table while it trains (the claims step)."""
    from types import SimpleNamespace

    from affectlab.cache import cached, code_key, is_cached, key, rows_key
    from affectlab.epoch_table import EpochTable
    from affectlab.models.facechannel import VARIANTS
    from affectlab.train import resolve_device

    tasks = VARIANTS[name]
    # The thread count too: one thread sums in another order and trains to other numbers (the seed spread
    # measures both, so a one-thread run must never read a default-thread run's model).
    k = key(S, list(tasks), seed, resolve_device(device).type, torch.get_num_threads(), rows_key(train_df),
            rows_key(valid_rows), code_key(_CODE))
    reused = is_cached("facechannel-frame-model", k) and not retrain
    out = cached("facechannel-frame-model", k,
                 lambda: _pack(*_fit_frame_model(S, name, train_df, valid_rows, device, seed, quiet)), refresh=retrain)
    model = make_fc(S, tasks, device)   # as it trained
    model.load_state_dict({k[6:]: v for k, v in out.items() if k.startswith("model.")})
    curve = SimpleNamespace(losses=out["curve.losses"].tolist(), values=out["curve.values"].tolist(),
                            table=EpochTable.from_tensor(out["curve.table"]), reused=reused)
    unpack = lambda p: {k[len(p):]: v for k, v in out.items() if k.startswith(p)}  # noqa: E731
    return model.eval(), curve, unpack("preds."), unpack("targs.")


def _pack(model, learn, preds, targs) -> dict[str, torch.Tensor]:
    recorder = learn.recorder
    return {**{f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            "curve.losses": torch.tensor([float(x) for x in recorder.losses]),
            "curve.values": torch.tensor([[float(x) for x in v[:2]] for v in recorder.values]),
            "curve.table": learn.epoch_table.to_tensor(),
            **{f"preds.{k}": v for k, v in preds.items()}, **{f"targs.{k}": v for k, v in targs.items()}}


def frame_dls_of(S: dict, train_df: pd.DataFrame, valid_rows: pd.DataFrame, seed: int, **kw):
    """The frame models' loaders: augmented training frames, the validation rows in order."""
    set_seed(seed)
    return frame_dls(train_df, valid_rows, targets=TARGETS, size=S["image_size"], bs=S["batch_size"],
                     augment=True, seed=seed, **kw)


def _fit_frame_model(S: dict, name: str, train_df: pd.DataFrame, valid_rows: pd.DataFrame, device, seed: int,
                     quiet: bool):
    dls = frame_dls_of(S, train_df, valid_rows, seed)
    learn = fit(learner(S, name, dls, device, seed), quiet=quiet)
    preds, targs = predict(learn, dls.valid)
    return learn.model.cpu().eval(), learn, preds, targs


def frame_features(fc: FaceChannel, df: pd.DataFrame, S: dict, device) -> torch.Tensor:
    """The trained FC's 500-d features of every row of ``df``, row-aligned (a damaged frame is an error,
    never a dropped row that would shift every later one)."""
    return features(fc.trunk, frame_batches(df, S["image_size"]), device=device)


def va_sampler(df: pd.DataFrame, seed: int):
    """Clips drawn with weights 1 / (count of their 21x21 VA cell): the clip-level VA balancing."""
    from torch.utils.data import WeightedRandomSampler

    cells = va_bins(df, 21)
    w = 1.0 / pd.Series(cells).map(pd.Series(cells).value_counts()).to_numpy()
    return WeightedRandomSampler(torch.as_tensor(w), len(df), generator=torch.Generator().manual_seed(seed))


def fit_sequence_model(S: dict, fc: FaceChannel, clean_df: pd.DataFrame, valid_df: pd.DataFrame,
                       stride: int, device, seed: int, va_balanced: bool = False, *, quiet: bool = False):
    """FC-S (``learner(S, "FC-S", ..., fc=fc)``) trained on ``fc``'s cached per-frame features of
    ``S["seq_len"]``-frame clips of ``clean_df`` (rare classes, or rare VA cells when ``va_balanced``, drawn
    more often) and predicted on the clips ending at every ``stride``-th validation frame. Returns the model
    (CPU, eval mode), its fastai recorder, and ``predict``'s ``(preds, targs)``. A multi-task-only release
    (sampled frames, no clips) is refused."""
    for df in (clean_df, valid_df):
        editions.require_consecutive_frames(df, "FC-S", f"{S['seq_len']}-frame clips of consecutive frames")
    set_seed(seed)
    feats = (frame_features(fc, clean_df, S, device), frame_features(fc, valid_df, S, device))
    sampler = va_sampler(clean_df, seed) if va_balanced else imbalanced_sampler(clean_df.expr.to_numpy(), seed=seed)
    dls = clip_dls(clean_df, valid_df, s=S["seq_len"], targets=TARGETS, features=feats, bs=S["batch_size"],
                   sampler=sampler, seed=seed)
    dls.valid = clip_dls(valid_df, valid_df, s=S["seq_len"], stride=stride, targets=TARGETS,
                         features=(feats[1], feats[1]), bs=256, seed=seed).valid
    learn = fit(learner(S, "FC-S", dls, device, seed, fc=fc), quiet=quiet)
    preds, targs = predict(learn, dls.valid)
    return learn.model.cpu().eval(), learn.recorder, preds, targs


def data(root: Path, S: dict, seed: int):
    """Chapter 03's data: ``(train_df, clean_df, valid_df, by_class, by_va)`` — Aff-Wild2's expression + VA
    frames, the coherence-filtered training frames, and the class- and VA-balanced budgets drawn from them."""
    from affectlab.data.abaw import read_abaw_multitask
    from affectlab.data.clean import coherence_filter, oversample_classes, oversample_va_bins

    aw = affwild2_dir(root)
    space = editions.space_of(S)
    train_df, valid_df = (editions.fit_labels(read_abaw_multitask(aw, split, tasks=TARGETS_ABAW), space,
                                              "the FaceChannel's expression head")[0] for split in ("train", "val"))
    clean_df = coherence_filter(train_df)
    rng = np.random.default_rng(seed)
    by_class = budget(oversample_classes(clean_df, "expr", seed=seed), S["max_train_frames"], rng)
    by_va = budget(oversample_va_bins(clean_df, bins=21, seed=seed), S["max_train_frames"], rng)
    return train_df, clean_df, valid_df, by_class, by_va


TARGETS_ABAW = ("EXPR", "VA")
TABLE_I_METRICS = ("f1", "ccc_arousal", "ccc_valence")


def paired_claims(seed: int, profile: str = "quick", data_root=None, device="auto", **overrides
                  ) -> dict[str, tuple[float, float]]:
    """Chapter 03's claims under one training seed (Table I), each the mean of macro-F1, CCC arousal and CCC
    valence: ``fc_joint`` — the joint FC against the single-task FC of each metric (FC_E for F1, FC_A for
    arousal, FC_V for valence) — and ``fc_sequence`` — FC-S (from the joint FC) against FC. Every model is
    fitted by the chapter's functions on the chapter's data under ``seed``."""
    from affectlab.recipes import start

    run = start("facechannel", profile, data_root, device, seed, world_seed=0, **overrides)   # the course's world
    S, dev = run.S, run.device
    _, clean_df, valid_df, by_class, by_va = data(run.root, S, seed)
    stride = 3
    rows = validation_rows(valid_df, stride)
    r, fc = {}, None
    for name in ("FC", "FC_E", "FC_A", "FC_V"):
        model, _, preds, targs = fit_frame_model(S, name, by_va if name in VA_ONLY else by_class, rows, dev, seed,
                                                 quiet=True)
        r[name] = score(preds, targs)
        fc = model if name == "FC" else fc
    *_, preds, targs = fit_sequence_model(S, fc, clean_df, valid_df, stride, dev, seed, quiet=True)
    r["FC-S"] = score(preds, targs)
    single = {"f1": "FC_E", "ccc_arousal": "FC_A", "ccc_valence": "FC_V"}
    mean = lambda name_of: float(np.mean([r[name_of(m)][m] for m in TABLE_I_METRICS]))  # noqa: E731
    return {"fc_joint": (mean(lambda m: "FC"), mean(lambda m: single[m])),
            "fc_sequence": (mean(lambda m: "FC-S"), mean(lambda m: "FC"))}


# --- the command's entry (python -m affectlab.fit facechannel) ---------------------------------------------

def command_job(S: dict, root: Path, device, seed: int, limit: tuple[int, int] | None = None, weights=None):
    """The joint FaceChannel (Table I's ``FC``) as the chapter trains it: ``data``'s coherent,
    class-balanced Aff-Wild2 frames, ``learner(S, "FC", ...)``, scored on every third validation frame.
    ``limit=(train, valid)`` rows (``--smoke``). Returns a ``recipes.Job``."""
    from affectlab.recipes import Job

    if weights is not None:
        raise ValueError("the FaceChannel trains from scratch (the paper's Table I): it takes no --weights")
    train_df, _, valid_df, train, _ = data(root, S, seed)
    valid = validation_rows(valid_df)
    space = editions.space_of(S)
    n_train = len(train)
    if limit is not None:
        train, valid = budget(train, limit[0], np.random.default_rng(seed)), valid.iloc[:limit[1]]
    dls = frame_dls_of(S, train, valid, seed, device=device, num_workers=S["num_workers"])
    learn = learner(S, "FC", dls, device, seed)
    other = editions.dropped_note(space, sum(df.attrs.get("dropped", {}).get("class Other (expr_classes=7)", 0)
                                             for df in (train_df, valid_df)))
    return Job(learn, lambda cbs: fit(learn, cbs), lambda p, t: score(p, t, space), model="FaceChannel",
               variant="FC", task={"ccc_valence": "VA", "ccc_arousal": "VA", "f1": "EXPR", "accuracy": "EXPR"},
               n_train=n_train, notes=[f"{len(train)} class-balanced training frames, {len(valid)} validation rows, "
                                       f"{space.n_classes} classes ({space.edition})", *([other] if other else [])])
