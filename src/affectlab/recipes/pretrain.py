"""The course's face feature model: the stand-in for VGGFace2 / AffectNet pre-training (papers 2-4).

The papers start from a ResNet-50 or SENet-50 pre-trained on millions of faces. The course cannot ship those
weights, so it pre-trains its own backbone on the synthetic static corpora (AffectNet, RAF-DB and ExpW
formats: 7 expressions, plus valence / arousal where AffectNet has them), caches it under ``data/cache/``
keyed by its settings and the data's fingerprint, and trains it on first use — so every chapter runs
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

import hashlib
import json
import os
from pathlib import Path

import torch

from affectlab.data.static import static_corpus  # noqa: F401  (re-exported: where the pre-training mix lived)
from affectlab.models.backbones import Backbone, load_vggface2
from affectlab.models.pretrain import PretrainNet

# The recipe's overrides of the base profiles (affectlab.train.PROFILES); only these keys key the cache.
OVERRIDES = {
    "quick": dict(arch="resnet18", width=16, image_size=64, epochs=12, batch_size=64, lr=3e-3, va_weight=0.5),
    "paper": dict(arch="resnet50", width=64, image_size=112, epochs=20, batch_size=256, lr=1e-3, va_weight=0.5),
}
VERSION = 3  # bump when the training recipe changes, so old caches are not reused


# Label files the readers open (AffectNet's lists, RAF-DB's, ExpW's, Hume-Reaction's), found by name in the
# folders the readers search; image folders are fingerprinted by their listing's stats, not file by file.
_LABEL_FILES = frozenset({"training.csv", "validation.csv", "list_patition_label.txt", "label.lst", "data_info.csv"})
_IMAGE_DIRS = frozenset({"manually_annotated_images", "images", "image", "origin", "aligned", "original"})


def _tree_stats(d: Path, root: Path, h) -> None:
    """An image folder and every folder below it: path, mtime and entry count (not each image's stat:
    AffectNet has ~450k). Adding, removing or renaming an image (also replacing it by a rename, as most
    tools do) changes its folder's mtime."""
    stack = [d]
    while stack:
        cur = stack.pop()
        try:
            with os.scandir(cur) as it:
                entries = list(it)
            mtime = cur.stat().st_mtime_ns
        except OSError as e:
            h.update(f"dir {cur.relative_to(root)} unreadable {e.errno}\n".encode())
            continue
        h.update(f"dir {cur.relative_to(root)} {mtime} {len(entries)}\n".encode())
        stack.extend(sorted((Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)), reverse=True))


def _listing_stats(d: Path, root: Path, h) -> None:
    """Every entry of a folder of per-face label files (AffectNet's ``*_set/annotations/*.npy``) with its
    size and mtime: one stat per file, none read."""
    with os.scandir(d) as it:
        entries = sorted(it, key=lambda e: e.name)
    h.update(f"listing {d.relative_to(root)} {len(entries)}\n".encode())
    for e in entries:
        st = e.stat()
        h.update(f"{e.name} {st.st_size} {st.st_mtime_ns}\n".encode())


def data_fingerprint(root: str | os.PathLike) -> str:
    """What the cached face feature model depends on: the synthetic world's content hash (its manifest), or
    for real data a hash over every label file the static readers read (AffectNet's ``training.csv`` /
    ``validation.csv`` and its newer ``{train,val}_set/annotations/*.npy``, RAF-DB's
    ``list_patition_label.txt``, ExpW's ``label.lst``, Hume-Reaction's ``data_info.csv``: path, size, mtime)
    and the image folders' stats (each folder's path, mtime and entry count). Files elsewhere (notes,
    scripts) do not change it. The folders searched are the readers' own (``static._dirs``, one level deeper
    since ``static_corpus`` may start a reader in ``root/<dataset>``)."""
    from affectlab.data.static import _SEARCH_DEPTH, _dirs

    root = Path(root)
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            meta = {}
        # Only the generator's own manifest: a manifest.json shipped with real data must not stand for it.
        if isinstance(meta, dict) and meta.get("generator_version") and meta.get("content_hash"):
            return meta["content_hash"]
    h = hashlib.sha256(b"affectlab data fingerprint 2\n")
    for d in _dirs(root, _SEARCH_DEPTH + 1):
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            p = Path(e.path)
            if e.is_file() and e.name in _LABEL_FILES:
                st = e.stat()
                h.update(f"file {p.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
            elif e.is_dir() and e.name.lower() in _IMAGE_DIRS:
                _tree_stats(p, root, h)
            elif e.is_dir() and e.name == "annotations" and d.name.endswith("_set"):
                _listing_stats(p, root, h)
    return h.hexdigest()


def _settings(profile: str, **overrides) -> dict:
    """The model's own settings (the keys of ``OVERRIDES``), which key its cache."""
    if profile not in OVERRIDES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(OVERRIDES)}")
    unknown = set(overrides) - set(OVERRIDES[profile])
    if unknown:
        raise ValueError(f"unknown face feature model setting(s) {sorted(unknown)}; known: {sorted(OVERRIDES[profile])}")
    return {**OVERRIDES[profile], **{k: v for k, v in overrides.items() if v is not None}}


def pretrain(root, settings: dict, device="auto", seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor]:
    """Train the backbone on the static corpora; returns its state dict plus ``meta.*`` scalars."""
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar / no_logging)

    from affectlab.data.loaders import frame_dls
    from affectlab.losses import MultiTaskLoss, masked_ccc_loss, masked_cross_entropy
    from affectlab.metrics import accuracy, f1_macro
    from affectlab.train import make_learner, predict, set_seed

    set_seed(seed)
    train_df, valid_df = static_corpus(root, "train"), static_corpus(root, "val")
    dls = frame_dls(train_df, valid_df, targets=("expr", "va"), size=settings["image_size"],
                    bs=settings["batch_size"], augment=True, seed=seed, device=None)
    net = PretrainNet(Backbone(settings["arch"], settings["width"]))
    net = net.to(memory_format=torch.channels_last)
    loss = MultiTaskLoss(expr=(1.0, masked_cross_entropy), va=(settings["va_weight"], masked_ccc_loss))
    learn = make_learner(dls, net, loss, device=device)
    if progress:
        learn.fit_one_cycle(settings["epochs"], settings["lr"])
    else:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(settings["epochs"], settings["lr"])
    with learn.no_bar():
        preds, targs = predict(learn, dls.valid)
    keep = targs["expr"] >= 0
    f1 = f1_macro(targs["expr"][keep], preds["expr"][keep], labels=range(7))
    acc = accuracy(targs["expr"][keep], preds["expr"][keep])
    state = {f"body.{k}": v.detach().cpu().contiguous() for k, v in net.body.state_dict().items()}
    state.update({"meta.val_f1": torch.tensor(f1), "meta.val_acc": torch.tensor(acc),
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
    pickle instead of pre-training. ``seed`` is the pre-training seed; the static corpora it trains on are the
    course's world's whatever the seed (``world_seed`` draws another world).
    """
    from affectlab.data.roots import resolve_data_root
    from affectlab.train import cache_key, cached, profile_settings

    settings = _settings(profile, arch=arch, width=width, image_size=image_size, epochs=epochs)
    if weights is not None:
        body = Backbone(settings["arch"], settings["width"])
        report = load_vggface2(body, weights)
        body.pretrain_info = {**settings, "source": "vggface2", "load_report": str(report)}
        return body.eval()
    root = resolve_data_root(data_root, profile_settings(profile)["preset"], world_seed)   # seed: training only
    key = cache_key("face_feature_model", VERSION, settings, data_fingerprint(root), seed)
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
