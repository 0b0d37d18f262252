"""One path per model: the chapter, the claims step and ``python -m affectlab.fit`` build each paper's Learner
with the same function, so they train it the same way — optimiser and its hyper-parameters (momentum
included), learning rate, schedule, epochs, loss and metrics — under both profiles.

Each path runs for real on the tiny world, with ``affectlab.train.fit`` replaced by a recorder that describes
the Learner it is given (``affectlab.train.describe``) instead of training it. Every path gets its own
empty cache for what it trains, so no path reads a model another path left (and no untrained model reaches a
real cache); the frozen inputs all paths compute alike are computed once for the file.
The chapter paths are the calls the chapters make; a check below asserts each chapter still makes them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import affectlab.train as train
from affectlab.models.facechannel import VARIANTS as FC_VARIANTS
from affectlab.models.temporal_stat import VARIANTS as TS_VARIANTS
from affectlab.recipes import recipe, settings, start

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SEED = 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


def model_id(learn) -> str:
    """Which model a Learner trains: its class, and the variant or heads that tell a paper's models apart."""
    m = getattr(learn.model, "model", learn.model)          # scan's CachedMaps wraps the SCAN+CCI it trains
    variant = getattr(m, "variant", None)
    variant = None if callable(variant) else getattr(variant, "name", variant)
    return f"{type(m).__name__}|{variant}|{getattr(m, 'tasks', None)}"


@pytest.fixture(scope="module")
def shared_inputs(tmp_path_factory):
    """One home for the frozen inputs of every test here: the untrained face model of each profile and the
    features and maps through it are the same whichever paper's paths ask for them."""
    home = tmp_path_factory.mktemp("shared-inputs")
    (home / "notebooks").mkdir()
    (home / "pyproject.toml").write_text("")
    return home


@pytest.fixture
def recorder(monkeypatch, tmp_path, request, shared_inputs):
    """Replace every recipe's ``fit`` by a recorder; ``run(label, fn)`` runs one path in its own cache and
    returns {model id: describe(learn)} of the first Learner of each model it fitted."""
    import importlib

    from affectlab.epoch_table import EpochTable

    seen: dict[str, dict] = {}

    def fake_fit(learn, cbs=(), quiet=False):
        seen.setdefault(model_id(learn), train.describe(learn))
        learn.recorder.losses, learn.recorder.values = [], []    # as after a fit of no epochs
        learn.epoch_table = EpochTable(["epoch", "train_loss", "valid_loss", "time"], [])   # as train.fit keeps it
        return learn

    def first_batch_predict(model, dl=None, device=None):
        """``train.predict`` with the model run on the first batch only, its rows repeated for the others (the
        targets are the loader's own): a path scores what it fitted, but the recorder leaves every model
        untrained, and running the paper-size ones over every batch took 56 of the paper SCAN test's 144 s on one
        thread."""
        if hasattr(model, "model") and hasattr(model, "dls"):
            dl, model = (dl if dl is not None else model.dls.valid), model.model
        first, preds, targs = None, {}, {}
        with torch.no_grad():
            for *xb, y in dl:
                y = y if isinstance(y, dict) else {"target": y}
                if first is None:
                    out = model.eval()(*xb)
                    first = {k: v.float().cpu() for k, v in (out if isinstance(out, dict) else {"out": out}).items()}
                n = len(next(iter(y.values())))
                for k, v in first.items():
                    preds.setdefault(k, []).append(v[torch.arange(n) % len(v)])
                for k, v in y.items():
                    targs.setdefault(k, []).append(v.cpu())
        return ({k: torch.cat(v) for k, v in preds.items()}, {k: torch.cat(v) for k, v in targs.items()})

    modules = [train] + [importlib.import_module(f"affectlab.recipes.{name}") for name in
                         ("facechannel", "temporal", "scan", "senet", "facernet", "pretrain")]
    patched = [(mod, name, getattr(mod, name)) for mod in modules for name in ("fit", "predict") if hasattr(mod, name)]
    for mod, name, _ in patched:
        monkeypatch.setattr(mod, name, fake_fit if name == "fit" else first_batch_predict)
    # and put every real fit and predict back by hand too: a later test module must never use the recorder's
    request.addfinalizer(lambda: [setattr(mod, name, real) for mod, name, real in patched])

    def make_home(label: str) -> Path:
        home = tmp_path / label
        (home / "notebooks").mkdir(parents=True)
        (home / "pyproject.toml").write_text("")
        return home

    # What a path trains (the cached FaceChannels, SCAN fits and FaceRNet variants, the claims' results) stays in the path's own cache; the
    # frozen inputs every path computes alike (the face model, which the recorder leaves untrained, and the
    # features and maps through it) are computed once for this file, in a cache the paths and tests share.
    from affectlab import cache as caching

    real_cached, inputs_home = caching.cached, shared_inputs

    def cached(name, key_, compute, **kw):
        if name.startswith(("facechannel-frame-model", "scan-fit", "facernet-variant", "claims/")):   # trained
            return real_cached(name, key_, compute, **kw)
        with monkeypatch.context() as m:
            m.setenv("AFFECTLAB_HOME", str(inputs_home))
            return real_cached(name, key_, compute, **kw)

    monkeypatch.setattr(caching, "cached", cached)

    def run(label: str, fn) -> dict[str, dict]:
        seen.clear()
        monkeypatch.setenv("AFFECTLAB_HOME", str(make_home(label)))      # its own data/cache
        fn()
        return dict(seen)

    return run


# --- the chapters' calls --------------------------------------------------------------------------------

def chapter_facechannel(profile, root):
    fc = recipe("facechannel")
    run = start("facechannel", profile, root, "cpu", SEED)
    _, clean_df, valid_df, by_class, _ = fc.data(run.root, run.S, SEED)
    model, *_ = fc.fit_frame_model(run.S, "FC", by_class, fc.validation_rows(valid_df, 3), run.device, SEED)
    fc.fit_sequence_model(run.S, model, clean_df, valid_df, 3, run.device, SEED)


def chapter_senet(profile, root):
    import pandas as pd

    from affectlab.data.clean import class_weights
    from affectlab.data.loaders import frame_dls
    from affectlab.models import SENet50Classifier
    from affectlab.recipes.pretrain import face_feature_model

    sn = recipe("senet50")
    run = start("senet50", profile, root, "cpu", SEED)
    S = run.S
    train_aw, valid, extra = sn.data(run.root, S, SEED)
    merged = pd.concat([train_aw, extra], ignore_index=True)
    dls = frame_dls(merged, valid, targets=("expr",), size=S["image_size"], bs=S["micro_batch"], seed=SEED)
    body = face_feature_model(profile, root, "cpu")
    w = class_weights(merged.expr.to_numpy())
    train.fit(sn.learner(S, SENet50Classifier(body), dls, run.device, SEED, class_weights=w))
    f_train, f_valid = sn.frame_features(body, merged, S, "cpu"), sn.frame_features(body, valid, S, "cpu")
    y = torch.as_tensor(merged.expr.to_numpy())
    sn.train_head(S, f_train, y, torch.as_tensor(w, dtype=torch.float32), (f_valid, valid.expr.to_numpy()), "cpu", SEED)


def chapter_temporal(profile, root):
    from affectlab.cache import data_key
    from affectlab.data.abaw import read_abaw_multitask
    from affectlab.models import temporal_stat as ts
    from affectlab.recipes.pretrain import face_feature_model

    tp = recipe("temporal")
    run = start("temporal", profile, root, "cpu", SEED)
    tr, va = (read_abaw_multitask(run.root, s, ("EXPR", "VA")) for s in ("train", "val"))
    face = face_feature_model(profile, root, "cpu")
    size, key = face.pretrain_info["image_size"], data_key(run.root)
    feats = tuple(tp.frame_features(face, df, size, "cpu", data_key=key) for df in (tr, va))
    for v in ts.VARIANTS:
        tp.fit_and_score(v, tr, va, feats, run.S, face.feature_dim, run.device, SEED)


def chapter_scan(profile, root):
    from affectlab.cache import data_key
    from affectlab.recipes.pretrain import face_feature_model

    sc = recipe("scan")
    run = start("scan", profile, root, "cpu", SEED)
    tr, va = sc.data(run.root, run.S, SEED)
    face = face_feature_model(profile, root, "cpu")
    size, key = face.pretrain_info["image_size"], data_key(run.root)
    maps = [sc.cached_maps(face, df, s, size, key, "cpu") for s, df in (("train", tr), ("valid", va))]
    sc.fit_and_score(sc.make_scancci(face, run.S, SEED), *maps, run.S, run.device, SEED)
    sc.fit_and_score(sc.make_plain(face, run.S, SEED), *maps, run.S, run.device, SEED)


def chapter_facernet(profile, root):
    from affectlab.data.loaders import video_dls
    from affectlab.recipes.pretrain import face_feature_model

    fr = recipe("facernet")
    run = start("facernet", profile, root, "cpu", SEED)
    trunk = face_feature_model(profile, root, "cpu")
    hume_tr, hume_va, feats = fr.hume_rec_features(run.root, trunk, run.S, "cpu", SEED)
    dls = video_dls(hume_tr, hume_va, t=run.S["t"], bs=run.S["batch_size"],
                    features={k: v.numpy() for k, v in feats.items()}, device="cpu", seed=SEED)
    fr.fit_variant(run.S, dls, run.device, SEED, loss="pearson", quiet=False)


CHAPTERS = {"facechannel": (chapter_facechannel, "03_facechannel", ["recipe.fit_frame_model(", "recipe.fit_sequence_model("]),
            "senet50": (chapter_senet, "04_senet50_finetune", ["recipe.learner(", "fit(learn)", "recipe.train_head("]),
            "temporal": (chapter_temporal, "05_multitask_temporal", ["recipe.fit_and_score("]),
            "scan": (chapter_scan, "06_scan_cci", ["recipe.fit_and_score(", "recipe.make_scancci(", "recipe.make_plain("]),
            "facernet": (chapter_facernet, "07_facernet", ["recipe.fit_rec_heads(", "recipe.fit_variant("])}
# The models each pair of paths must both train (so the comparison can never pass on nothing).
JOINT_FC = f"FaceChannel|None|{tuple(FC_VARIANTS['FC'])}"
SHARED = {"facechannel": {"chapter-claims": [JOINT_FC, "FaceChannelS|"], "chapter-fit": [JOINT_FC]},
          "senet50": {"chapter-claims": ["FeatureHead"], "chapter-fit": ["SENet50Classifier"]},
          "temporal": {"chapter-claims": [f"TemporalStatNet|{TS_VARIANTS[v].name}|" for v in (1, 2, 4)],
                       "chapter-fit": [f"TemporalStatNet|{TS_VARIANTS[6].name}|"]},
          "scan": {"chapter-claims": ["SCANCCI", "PlainResNet"], "chapter-fit": ["SCANCCI"]},
          "facernet": {"chapter-claims": ["RECHeads", "FaceRNet"], "chapter-fit": ["FaceRNet"]}}


def test_the_chapters_make_the_calls_this_test_makes():
    for paper, (_, notebook, calls) in CHAPTERS.items():
        cells = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for call in calls:
            assert call in code, f"{notebook} no longer calls {call}: update this test's chapter path"


def test_no_chapter_builds_or_fits_a_learner_by_hand():
    """Every model a chapter trains comes from a recipe's ``learner`` (and its plan, run by ``train.fit``)."""
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for hand in ("make_learner(", "Learner(", "fit_one_cycle(", ".fit(", "paper_learner("):
            assert hand not in code, f"{nb.name} calls {hand} itself: build the model with its recipe's learner"


def _pick(models: dict, prefix: str) -> dict:
    hits = [k for k in models if k.startswith(prefix)]
    assert hits, f"no model {prefix!r} among {sorted(models)}"
    return models[hits[0]]


@pytest.mark.parametrize("profile", ["quick", "paper"])
@pytest.mark.parametrize("paper", sorted(CHAPTERS))
def test_chapter_claims_and_fit_build_the_same_learner(paper, profile, world, recorder):
    chapter_fn = CHAPTERS[paper][0]
    paths = {"chapter": recorder("chapter", lambda: chapter_fn(profile, world))}
    if "chapter-claims" in SHARED[paper]:
        paths["claims"] = recorder("claims", lambda: recipe(paper).paired_claims(SEED, profile, world, "cpu"))

    def by_fit():
        S = settings(paper, profile)
        job = recipe(paper).command_job(S, Path(world), "cpu", SEED)
        job.fit([])

    paths["fit"] = recorder("fit", by_fit)
    for pair, models in SHARED[paper].items():
        a, b = pair.split("-")
        for m in models:
            da, db = _pick(paths[a], m), _pick(paths[b], m)
            assert da == db, f"{paper} {profile}: {a} and {b} train {m} differently"
    if paper == "facechannel" and profile == "paper":   # the paper's SGD with its momentum, on every path
        for p in paths.values():
            d = _pick(p, JOINT_FC)
            assert d["opt"]["func"] == "SGD" and d["moms"] == (0.74, 0.74, 0.74) and d["lr"] == "0.0155"
