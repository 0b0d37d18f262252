"""One settings path: the base profiles, each recipe's overrides, start(). (The layers: test_layers.py.)"""
import ast
from pathlib import Path

import pytest

from affectlab.recipes import RECIPES, recipe, settings, start

SRC = Path(__file__).resolve().parents[2] / "src" / "affectlab"


def test_one_base_profile_table_outside_recipes():
    tables = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
              if "recipes" not in p.parts and any(isinstance(n, (ast.Assign, ast.AnnAssign)) and
                                                 "PROFILES" in ast.unparse(n).split("=")[0]
                                                 for n in ast.parse(p.read_text()).body)]
    assert tables == ["train.py"]


@pytest.mark.parametrize("paper", sorted(RECIPES))
def test_every_recipe_overrides_both_profiles_and_merges_flat(paper):
    mod = recipe(paper)
    assert set(mod.OVERRIDES) == {"quick", "paper"}
    for profile in ("quick", "paper"):
        s = settings(paper, profile)
        assert s["paper"] == paper and s["profile"] == profile
        assert all(not isinstance(v, dict) or k == "label_shares" for k, v in s.items())
        for k, v in mod.OVERRIDES[profile].items():      # the recipe's values win over the base profile
            assert s[k] == v


def test_overrides_win_and_a_typo_is_an_error():
    assert settings("facechannel", "quick", epochs=1)["epochs"] == 1
    with pytest.raises(ValueError, match=r"unknown facechannel setting\(s\) \['epoch'\]; known: .*'epochs'"):
        settings("facechannel", "quick", epoch=1)
    with pytest.raises(ValueError, match="unknown paper 'facechanel'"):
        settings("facechanel", "quick")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        settings("facechannel", "fast")


def test_start_seeds_and_resolves(tmp_path):
    import torch

    run = start(None, "quick", data_root=tmp_path, device="cpu", seed=3)
    a = torch.rand(3)
    start(None, "quick", data_root=tmp_path, device="cpu", seed=3)
    assert torch.equal(a, torch.rand(3))
    assert run.root == tmp_path.resolve() and run.device == "cpu" and run.data == "real"
    assert "profile=quick" in repr(run)


def test_a_training_seed_keeps_the_course_world(monkeypatch):
    """``seed`` varies training only: every seed trains and validates on the course's world (world 0), so a
    chapter's seed spread measures training, not another draw of validation subjects."""
    import affectlab.data.roots as roots

    asked = []
    monkeypatch.setattr(roots, "resolve_data_root", lambda data_root, preset, seed: asked.append(seed) or Path("."))
    for seed in (0, 1, 2):
        start("facechannel", "quick", None, "cpu", seed)
    start("facechannel", "quick", None, "cpu", 1, world_seed=2)
    assert asked == [0, 0, 0, 2]

    # The face model too: its seed is a pre-training seed on the course's world (stopped once it has asked).
    from affectlab.recipes.pretrain import face_feature_model

    class Asked(Exception):
        pass

    def ask(data_root, preset, seed):
        asked.append(seed)
        raise Asked

    monkeypatch.setattr(roots, "resolve_data_root", ask)
    for kw in (dict(seed=2), dict(seed=1, world_seed=3)):
        with pytest.raises(Asked):
            face_feature_model("quick", None, "cpu", **kw)
    assert asked[-2:] == [0, 3]
