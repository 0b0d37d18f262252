"""The course's face feature model: the stand-in for VGGFace2 / AffectNet pre-training (papers 2-4).

The papers start from a ResNet-50 or SENet-50 pre-trained on millions of faces. The course cannot ship those
weights, so it pre-trains its own backbone on the synthetic static corpora (AffectNet, RAF-DB and ExpW
formats: 7 expressions, plus valence / arousal where AffectNet has them), caches it under ``data/cache/``
keyed by its settings, the data and the training code (``affectlab.cache``), and trains it on first use — so every chapter runs
stand-alone and the second chapter to ask gets it in a second.

    from affectlab.recipes.pretrain import face_feature_model
    from affectlab.models.backbones import backbone_stages, freeze_all_but

    body = face_feature_model(profile="quick")          # a Backbone: images [B,3,64,64] -> [B, body.feature_dim]
    stages = backbone_stages(body)                      # stem, conv2_x, conv3_x, conv4_x, conv5_x
    freeze_all_but(body, ("conv5_x",))                  # paper 3: only the last stage trains
    body.pretrain_info                                  # {"arch", "image_size", "val_f1", "val_acc", ...}

Profiles: ``quick`` = a narrow ResNet-18 (BasicBlock [2,2,2,2], 16/32/64/128 channels) at 64 px, a few epochs
(well under a minute on a 2-core CPU); ``paper`` = ResNet-50 at 112 px (``arch="seresnet50"`` for paper 2).
With a real VGGFace2 pickle, ``face_feature_model(weights="resnet50_ft_weight.pkl", arch="resnet50")``
loads it safely instead (``backbones.load_vggface2``) and trains nothing.
"""
from __future__ import annotations

import os

import torch

from affectlab.data.static import static_corpus  # noqa: F401  (re-exported: where the pre-training mix lived)
from affectlab.models.backbones import Backbone, load_vggface2
from affectlab.models.pretrain import PretrainNet

# The recipe's overrides of the base profiles (affectlab.train.PROFILES); only these keys key the cache.
OVERRIDES = {
    "quick": dict(arch="resnet18", width=16, image_size=64, epochs=12, batch_size=64, lr=3e-3, va_weight=0.5),
    "paper": dict(arch="resnet50", width=64, image_size=112, epochs=20, batch_size=256, lr=1e-3, va_weight=0.5),
}


def _settings(profile: str, **overrides) -> dict:
    """The model's own settings (the keys of ``OVERRIDES``), which key its cache."""
    if profile not in OVERRIDES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(OVERRIDES)}")
    unknown = set(overrides) - set(OVERRIDES[profile])
    if unknown:
        raise ValueError(f"unknown face feature model setting(s) {sorted(unknown)}; known: {sorted(OVERRIDES[profile])}")
    return {**OVERRIDES[profile], **{k: v for k, v in overrides.items() if v is not None}}


def data(root, S: dict, seed: int):
    """The static corpora (AffectNet, RAF-DB, ExpW formats) the face feature model trains on,
    ``(train_df, valid_df)``: every face (``S`` and ``seed`` draw nothing here)."""
    return static_corpus(root, "train"), static_corpus(root, "val")


def learner(S: dict, model: PretrainNet, dls, device, seed: int):
    """The one Learner of the face feature model: expression cross-entropy plus ``va_weight`` × the CCC loss
    of valence and arousal, fastai's Adam, and ``learn.plan``: one cycle of ``epochs`` at ``lr``. The caller
    seeds before it builds the loaders and the model; ``affectlab.train.fit(learn)`` trains it."""
    from affectlab.losses import MultiTaskLoss, masked_ccc_loss, masked_cross_entropy
    from affectlab.train import Plan, make_learner

    loss = MultiTaskLoss(expr=(1.0, masked_cross_entropy), va=(S["va_weight"], masked_ccc_loss))
    learn = make_learner(dls, model, loss, device=device)
    learn.plan = Plan(S["epochs"], S["lr"], "one_cycle")
    return learn


def score(preds: dict, targs: dict) -> dict[str, float]:
    """Validation macro-F1 and accuracy of the expression head (unlabelled frames left out)."""
    from affectlab.metrics import accuracy, f1_macro

    keep = targs["expr"] >= 0
    return {"f1": f1_macro(targs["expr"][keep], preds["expr"][keep], labels=range(7)),
            "accuracy": accuracy(targs["expr"][keep], preds["expr"][keep])}


def pretrain(root, settings: dict, device="auto", seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor]:
    """Train the backbone on the static corpora; returns its state dict plus ``meta.*`` scalars."""
    import fastai.callback.progress  # noqa: F401  (adds Learner.no_bar)

    from affectlab.data.loaders import frame_dls
    from affectlab.epoch_table import SayHowLong
    from affectlab.train import fit, predict, set_seed

    set_seed(seed)
    train_df, valid_df = data(root, settings, seed)
    dls = frame_dls(train_df, valid_df, targets=("expr", "va"), size=settings["image_size"],
                    bs=settings["batch_size"], augment=True, seed=seed, device=None)
    net = PretrainNet(Backbone(settings["arch"], settings["width"]))
    net = net.to(memory_format=torch.channels_last)
    # shown: its bar and epoch table, and after the first epoch about how long all of them take
    learn = fit(learner(settings, net, dls, device, seed), quiet=not progress,
                cbs=[SayHowLong("pre-training the face model")] if progress else ())
    with learn.no_bar():
        preds, targs = predict(learn, dls.valid)
    r = score(preds, targs)
    state = {f"body.{k}": v.detach().cpu().contiguous() for k, v in net.body.state_dict().items()}
    state.update({"meta.val_f1": torch.tensor(r["f1"]), "meta.val_acc": torch.tensor(r["accuracy"]),
                  "meta.n_train": torch.tensor(len(train_df)), "meta.n_valid": torch.tensor(len(valid_df))})
    return state


def face_feature_model(profile: str = "quick", data_root=None, device="auto", seed: int = 0, *,
                       arch: str | None = None, width: int | None = None, image_size: int | None = None,
                       epochs: int | None = None, weights: str | os.PathLike | None = None,
                       progress: bool = False, world_seed: int = 0) -> Backbone:
    """The pre-trained face backbone for ``profile`` (trained on first use, then read from the cache).

    Returns a ``Backbone`` in eval mode on the CPU (move it where you need it): images normalised with
    ``affectlab.data.loaders.MEAN/STD`` at ``body.pretrain_info["image_size"]`` -> ``[B, body.feature_dim]``.
    ``arch`` / ``width`` / ``image_size`` / ``epochs`` override the profile; ``weights`` loads a VGGFace2
    pickle instead of pre-training. ``seed`` is the pre-training seed: the chapters, the claims step and
    ``affectlab.fit`` all use the seed-0 model, as they would one released weight file, whatever seed they train
    at; the static corpora it trains on are the course's world's whatever the seed (``world_seed`` draws another
    world).
    """
    from affectlab.data.roots import resolve_data_root
    from affectlab.cache import cached, code_key, data_key, is_cached, key as cache_key
    from affectlab.train import profile_settings

    settings = _settings(profile, arch=arch, width=width, image_size=image_size, epochs=epochs)
    if weights is not None:
        settings["width"] = 64                                  # the release's; the quick profile's 16 is not
        body = Backbone(settings["arch"], vggface2=True)
        report = load_vggface2(body, weights)
        body.pretrain_info = {**settings, "source": "vggface2", "load_report": str(report)}
        return body.eval()
    root = resolve_data_root(data_root, profile_settings(profile)["preset"], world_seed)   # seed: training only
    key = cache_key("face_feature_model", code_key("pretrain"), settings, data_key(root), seed)
    if not is_cached(f"face-feature-{profile}", key):
        # said, and shown: a chapter that finds no cached face model trains one here, before its own models
        print(f"pre-training the course's face model (seed {seed}): a {settings['arch']} of width {settings['width']} "
              f"learns the 7 expressions and valence/arousal of the static corpora (AffectNet, RAF-DB, ExpW formats) "
              f"at {settings['image_size']} px for {settings['epochs']} epochs; after the first epoch it says about how "
              "long all of them take. "
              "It is cached: every later chapter, whatever its seed, reuses it (`make course` / `make test` build it "
              "first).", flush=True)
        progress = True
    state = cached(f"face-feature-{profile}", key, lambda: pretrain(root, settings, device, seed, progress))
    body = Backbone(settings["arch"], settings["width"])
    body.load_state_dict({k[len("body."):]: v for k, v in state.items() if k.startswith("body.")})
    body.pretrain_info = {**settings, "source": "synthetic static corpora", "cache_key": key,
                          **{k[len("meta."):]: float(v) for k, v in state.items() if k.startswith("meta.")}}
    return body.eval()


def main(argv=None) -> int:
    """``python -m affectlab.recipes.pretrain --profile quick``: build the cached face feature model now
    (``make course`` / ``make test`` do, so that no chapter pays for it)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m affectlab.recipes.pretrain", description=main.__doc__)
    p.add_argument("--profile", default="quick", choices=sorted(OVERRIDES))
    p.add_argument("--data-root", default=None, help="a real data root (default: the synthetic world)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    body = face_feature_model(args.profile, args.data_root, args.device, args.seed)
    info = body.pretrain_info
    print(f"face feature model ({info['arch']}, width {info['width']}, {info['image_size']} px): "
          f"validation macro-F1 {info.get('val_f1', float('nan')):.3f}, accuracy {info.get('val_acc', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
