"""One recipe per paper: its profile overrides, data preparation, fit and scoring, written against
``affectlab.train``. Chapters and commands ask for a paper's settings here:

    from affectlab.recipes import settings, start
    S = settings("facechannel", "quick", epochs=20)   # one flat, printable configuration
    run = start("facechannel", profile, data_root, device, seed)   # seeded; run.S, run.root, run.device

Every recipe exposes the same interface (CONTRIBUTING.md, "One recipe interface"): ``OVERRIDES``,
``data(root, S, seed)``, ``learner(S, model, dls, device, seed, ...)`` — the one Learner of each model it trains, with the paper's
schedule as ``learn.plan`` that ``affectlab.train.fit`` runs — ``score(preds, targs)``, ``paired_claims`` and
``command_job``. The layer order of the package is in CONTRIBUTING.md and ``tests/unit/test_layers.py``.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

# recipe name -> (module under affectlab.recipes, the paper it follows)
RECIPES: dict[str, tuple[str, str]] = {
    "pretrain": ("pretrain", "The course's face feature model (stand-in for VGGFace2 / AffectNet pre-training)"),
    "facechannel": ("facechannel", "Barros & Sciutti: The FaceChannelS (FaceChannel and FaceChannelS)"),
    "senet50": ("senet", "Cafarelli et al.: SE-ResNet-50 fine-tuned on Aff-Wild2 expressions with ExpW merged (ABAW)"),
    "temporal": ("temporal", "Do et al.: multi-task temporal statistical model (ABAW)"),
    "scan": ("scan", "Gera & Balasubramanian: spatio-channel attention + complementary context (SCAN+CCI)"),
    "facernet": ("facernet", "Kollias et al.: FaceRNET, reaction intensity estimation"),
}


# The papers whose models train on Aff-Wild2's expression labels (FaceRNET's REC does): their settings carry the
# label space of the release they read (``with_labels``).
AFFWILD2_PAPERS = ("facechannel", "senet50", "temporal", "scan", "facernet")


def with_labels(S: dict, root: Path) -> dict:
    """``S`` with ``labels``: the expression classes its models train and the ABAW year their scores use,
    from the edition of the Aff-Wild2 release under ``root`` and the ``expr_classes`` setting
    (``affectlab.data.editions``). Unchanged for a paper that reads no Aff-Wild2 or a root without one."""
    from affectlab.data import editions
    from affectlab.data.abaw import detect_layout

    if S.get("paper") not in AFFWILD2_PAPERS:
        return S
    root = Path(root)
    try:
        layout, base = detect_layout(root / "affwild2" if (root / "affwild2").is_dir() else root)
    except FileNotFoundError:
        return S
    space = editions.label_space(editions.detect(base, layout), S.get("expr_classes"))
    return {**S, "labels": editions.settings_labels(space)}


def recipe(paper: str):
    """The recipe module of ``paper`` (a key of ``RECIPES``)."""
    if paper not in RECIPES:
        raise ValueError(f"unknown paper {paper!r}; choose one of {sorted(RECIPES)}")
    return importlib.import_module(f"affectlab.recipes.{RECIPES[paper][0]}")


def settings(paper: str | None, profile: str = "quick", **overrides) -> dict:
    """One flat configuration for ``paper`` under ``profile``: the base profile (``train.PROFILES``), then
    the recipe's ``OVERRIDES[profile]``, then ``overrides`` (an unknown key is an error naming the known).
    ``paper=None``: the base profile alone (the chapters that train no paper's model)."""
    from affectlab.train import merge_settings, profile_settings

    base = profile_settings(profile)
    own = recipe(paper).OVERRIDES[profile] if paper is not None else {}
    if paper in AFFWILD2_PAPERS:
        # None: the classes of the edition read (8 with Other from the 3rd ABAW on); 7: drop Other (counted)
        own = {"expr_classes": None, **own}
    return {"paper": paper or "course", "profile": profile,
            **merge_settings(base, own, overrides, f"{paper or 'course'} setting(s)")}


@dataclass
class Run:
    """What a chapter's set-up cell needs: the flat settings, the data root, the device, where the data
    came from, and when the chapter started."""
    S: dict
    root: Path
    device: str
    data: str
    seed: int
    started: float = field(default_factory=time.time)

    def __repr__(self) -> str:
        return (f"{self.S['paper']} · profile={self.S['profile']} · device={self.device} · seed={self.seed} · "
                f"data={self.data} ({self.root.name})")


def start(paper: str | None, profile: str = "quick", data_root=None, device="auto", seed: int = 0, *,
          world_seed: int = 0, **overrides) -> Run:
    """A chapter's set-up in one call: settings, seeds set, the data root resolved (the synthetic world of
    the profile's preset when ``data_root`` is None), the device resolved.

    ``seed`` is the training seed (data order, augmentation, initial weights); the data stay the course's
    world whatever it is, as a real dataset does. ``world_seed`` draws another world (other subjects, other
    validation videos): a different question — how much the figures move with the draw of 16 validation
    subjects — than how much they move with training (chapter 03's valence CCC, for one, falls below its
    floor on world 2's validation set even for a model trained on world 0; see the README)."""
    from affectlab.data.roots import resolve_data_root
    from affectlab.train import resolve_device, set_seed

    S = settings(paper, profile, **overrides)
    dev = str(resolve_device(device))
    set_seed(seed)
    root = resolve_data_root(data_root, S["preset"], world_seed)
    S = with_labels(S, root)
    return Run(S, root, dev, "synthetic" if data_root is None else "real", seed)


@dataclass
class Job:
    """What ``python -m affectlab.fit`` trains for a paper, built by its recipe's ``command_job``: the Learner
    of the recipe's ``learner`` (the chapter's), how it is fitted (``fit(cbs)``: ``train.fit`` of its plan, with
    the command's callbacks added for that fit), and how the paper scores ``train.predict``'s output (``score(preds, targs)``
    -> {metric: value} over the whole evaluation set). ``model`` / ``variant`` / ``task`` name the metric
    records; ``notes`` says what the recipe chose that a reader should know (data used, start weights); ``n_train``
    sizes an epoch for the command's time estimate."""
    learn: object
    fit: object
    score: object
    model: str
    variant: str
    task: dict
    notes: list = field(default_factory=list)
    n_train: int = 0          # training samples per epoch of the full data (before any --smoke limit)
    labels: dict = field(default_factory=dict)   # edition, classes and head outputs (set by affectlab.fit)
