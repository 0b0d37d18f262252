"""Papers 3 and 4: what caching per-frame features buys the temporal model, and what SCAN+CCI's attention
costs against the plain backbone — each figure beside its reference measured in the same run.

- temporal: TemporalStatNet (variant 4, STAT + VA) trained the same number of epochs on the same clips, (a)
  on cached per-frame features (the face model run once per frame, then heads only) and (b) end-to-end on
  frames (the face model's last stage fine-tuned, every frame of every clip through the CNN each epoch):
  wall time, speed-up, and the validation scores of both (their difference).
- scan: training images/s of SCANCCI and of the plain ResNet (same backbone, batch, image size), end-to-end
  on images and on cached (conv3_x, conv4_x) maps (the quick profile's set-up).
"""
from __future__ import annotations

import copy
import json

import torch

from benchmarks.timing import measure, stopwatch


def _temporal(window: int = 8, stride: int = 4, epochs: int = 2, seed: int = 0) -> dict:
    from affectlab.data.abaw import read_abaw_multitask
    from affectlab.data.loaders import clip_dls
    from affectlab.data.roots import resolve_data_root
    from affectlab.models import temporal_stat as ts
    from affectlab.recipes.pretrain import face_feature_model
    from affectlab.recipes.temporal import OVERRIDES, learner, score
    from affectlab.train import extract_features, fit, make_learner, predict, set_seed

    root = resolve_data_root(None)
    tr = read_abaw_multitask(root, "train", ("EXPR", "VA"))
    va = read_abaw_multitask(root, "val", ("EXPR", "VA"))
    face = face_feature_model("quick", None, "cpu", seed)
    size = face.pretrain_info["image_size"]
    settings = {**OVERRIDES["quick"], "epochs": epochs}
    out = {}

    # (a) cached: extract every frame once (timed, not read from the cache), then train the heads.
    from affectlab.data.loaders import frame_dls
    feats = []
    with stopwatch() as extract:
        for df in (tr, va):
            dl = frame_dls(df, df, targets=("expr",), size=size, bs=256, augment=False, device="cpu").valid
            feats.append(extract_features(face, (b[0] for b in dl), "cpu"))
    t_extract = extract.s
    dls = clip_dls(tr, va, s=window, stride=stride, targets=("expr", "va"), bs=64, features=tuple(feats),
                   device="cpu", seed=seed)
    with stopwatch() as heads:  # whole training runs are one-off costs: timed once, no warm-up
        learn = fit(learner(settings, 4, dls, "cpu", seed, feature_dim=face.feature_dim), quiet=True)
    t_heads = heads.s
    cached_scores = score(*predict(learn, dls.valid))

    # (b) end-to-end on frames: the same clips, the backbone's last stage trainable.
    set_seed(seed)
    dls_img = clip_dls(tr, va, s=window, stride=stride, targets=("expr", "va"), size=size, bs=64, augment=False,
                       device="cpu", seed=seed)
    model = ts.TemporalStatNet(4, face.feature_dim, backbone=copy.deepcopy(face),
                               lstm_hidden=settings["lstm_hidden"], dense=settings["dense"], dropout=settings["dropout"])
    learn = make_learner(dls_img, model, ts.temporal_loss(4), device="cpu")
    with stopwatch() as e2e, learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, settings["lr"])
    t_e2e = e2e.s
    e2e_scores = score(*predict(learn, dls_img.valid))

    n_clips = len(dls.train.dataset)
    out.update({
        "temporal_train_clips": n_clips, "temporal_window": window, "temporal_epochs": epochs,
        "temporal_cached_extract_s": t_extract, "temporal_cached_train_s": t_heads,
        "temporal_cached_total_s": t_extract + t_heads, "temporal_e2e_train_s": t_e2e,
        "temporal_speedup_train": t_e2e / t_heads, "temporal_speedup_incl_extraction": t_e2e / (t_extract + t_heads),
        "temporal_cached_expr_score": cached_scores["expr_score"], "temporal_e2e_expr_score": e2e_scores["expr_score"],
        "temporal_cached_va_score": cached_scores["va_score"], "temporal_e2e_va_score": e2e_scores["va_score"],
        "temporal_expr_score_diff_e2e_minus_cached": e2e_scores["expr_score"] - cached_scores["expr_score"],
        "temporal_va_score_diff_e2e_minus_cached": e2e_scores["va_score"] - cached_scores["va_score"],
    })
    return out


def _images_per_s(step, batch: int, reps: int = 5) -> float:
    """Images per second of the best of ``reps`` training steps after one warm-up step."""
    return measure(step, warmup=1, repeat=reps).per_s(batch, stat="min")


def _scan(batch: int = 64, size: int = 64, seed: int = 0) -> dict:
    from affectlab.models.backbones import make_backbone
    from affectlab.models.scan import SCANCCI, CachedMaps, PlainResNet, scancci_loss

    torch.manual_seed(seed)
    arch = dict(arch="resnet18", width=16)  # the quick profile's face model
    x = torch.randn(batch, 3, size, size)
    y = {"expr": torch.randint(0, 7, (batch,))}
    loss = scancci_loss(0.2)
    out = {}
    for name, make in (("scancci", lambda f: SCANCCI(make_backbone(**arch), freeze_through=f)),
                       ("plain", lambda f: PlainResNet(make_backbone(**arch), freeze_through=f))):
        for mode, freeze in (("e2e", None), ("cached_maps", "conv4_x")):
            model = make(freeze).train()
            net = CachedMaps(model) if freeze else model
            with torch.no_grad():
                inputs = tuple(t.clone() for t in model.maps(x)) if freeze else (x,)
            opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

            def step():
                opt.zero_grad()
                loss(net(*inputs), y).backward()
                opt.step()

            out[f"{name}_{mode}_train_images_per_s"] = _images_per_s(step, batch)
    for mode in ("e2e", "cached_maps"):
        out[f"scancci_vs_plain_{mode}_throughput_ratio"] = (out[f"scancci_{mode}_train_images_per_s"]
                                                            / out[f"plain_{mode}_train_images_per_s"])
    out["scan_batch"], out["scan_image_size"] = batch, size
    return out


def run() -> dict:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return {**_scan(), **_temporal()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
