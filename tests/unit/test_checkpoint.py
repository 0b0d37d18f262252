"""affectlab.checkpoint without training: random states stored without pickle, activation (context, the
runner's environment, never under pytest), keys, atomic files."""
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlab import checkpoint as ckpt
from affectlab import rng


def _weights_only_roundtrip(obj, tmp_path):
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    return torch.load(path, weights_only=True)


def test_every_kind_of_generator_roundtrips_through_weights_only(tmp_path):
    gens = {"python": random.Random(3), "numpy": np.random.RandomState(4), "numpy_gen": np.random.default_rng(5),
            "torch": torch.Generator().manual_seed(6)}
    gens["python"].gauss(0, 1)            # a cached gaussian is part of the state
    gens["numpy"].standard_normal()
    enc = _weights_only_roundtrip({k: rng.encode(g) for k, g in gens.items()}, tmp_path)
    assert isinstance(enc["python"]["state"], torch.Tensor) and isinstance(enc["numpy"]["key"], torch.Tensor)
    want = [gens["python"].random(), gens["numpy"].rand(), gens["numpy_gen"].random(),
            torch.rand(1, generator=gens["torch"]).item()]
    fresh = {"python": random.Random(0), "numpy": np.random.RandomState(0), "numpy_gen": np.random.default_rng(0),
             "torch": torch.Generator()}
    for k, g in fresh.items():
        rng.decode_into(g, enc[k])
    got = [fresh["python"].random(), fresh["numpy"].rand(), fresh["numpy_gen"].random(),
           torch.rand(1, generator=fresh["torch"]).item()]
    assert got == want


def test_global_random_states_roundtrip(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = _weights_only_roundtrip(rng.capture_rng(), tmp_path)
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    rng.restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want


def test_loader_generators_are_found_and_a_mismatch_is_an_error():
    class Sampler:
        def __init__(self):
            self.generator = torch.Generator().manual_seed(1)

    class DL:
        def __init__(self):
            self.rng, self.gen, self.sampler = random.Random(0), torch.Generator(), Sampler()

    class DLs:
        loaders = [DL(), DL()]

    dls = DLs()
    assert sorted(rng.loader_generators(dls)) == ["0.gen", "0.rng", "0.sampler.generator",
                                              "1.gen", "1.rng", "1.sampler.generator"]
    state = rng.capture_rng(dls)
    want = dls.loaders[0].rng.random()
    rng.restore_rng(state, dls)
    assert dls.loaders[0].rng.random() == want
    del dls.loaders[1].sampler
    with pytest.raises(RuntimeError, match="random generators"):
        rng.restore_rng(state, dls)


def test_plain_makes_numpy_and_fastcore_values_weights_only(tmp_path):
    from fastcore.foundation import L

    obj = {"hypers": L({"lr": np.float64(0.1), "mom": np.array([0.9, 0.8])}), "t": (np.int64(3), [np.bool_(True)])}
    back = _weights_only_roundtrip(ckpt._plain(obj), tmp_path)
    assert back["hypers"][0]["lr"] == 0.1 and torch.equal(back["hypers"][0]["mom"], torch.tensor([0.9, 0.8],
                                                                                              dtype=torch.float64))
    assert back["t"] == (3, [True])


def test_atomic_save_leaves_no_temporary_and_keeps_the_old_file_on_failure(tmp_path):
    from affectlab.cache import atomic_save

    path = tmp_path / "a.pt"
    atomic_save({"x": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"x": Unsaveable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_load_checkpoint_refuses_other_formats(tmp_path):
    torch.save({"format": "something else"}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="not an affectlab-checkpoint"):
        ckpt.load_checkpoint(tmp_path / "a.pt")


def test_session_from_the_runners_environment(tmp_path):
    env = {ckpt.ENV: str(tmp_path), ckpt.ENV_KEY: json.dumps({"chapter": "03", "seed": 0})}
    s = ckpt.session_from_env(env)
    assert s.folder == tmp_path and s.key_parts == {"chapter": "03", "seed": 0}
    assert ckpt.session_from_env(env) is s               # one per process: learners keep counting
    assert ckpt.session_from_env({}) is None
    with pytest.raises(ValueError, match="not JSON"):
        ckpt.session_from_env({ckpt.ENV: str(tmp_path), ckpt.ENV_KEY: "{oops"})


def test_the_environment_is_ignored_under_pytest(tmp_path, monkeypatch):
    monkeypatch.setenv(ckpt.ENV, str(tmp_path))
    with pytest.warns(UserWarning, match="ignored under pytest"):
        assert ckpt.active_session() is None
    with ckpt.checkpointing(tmp_path / "explicit", {"a": 1}) as s:
        assert ckpt.active_session() is s
    assert not ckpt._CONTEXT


def test_make_learner_attaches_a_checkpoint_only_when_active(tmp_path):
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner

    from affectlab.train import make_learner

    ds = [(torch.randn(3), torch.tensor(0))] * 8
    dls = DataLoaders(DataLoader(ds, bs=4), DataLoader(ds, bs=4))

    def mk(**kw):
        return make_learner(dls, torch.nn.Linear(3, 2), torch.nn.CrossEntropyLoss(), device="cpu", **kw)

    assert not any(isinstance(c, ckpt.Checkpoint) for c in mk().cbs)
    with ckpt.checkpointing(tmp_path, {"k": 1}) as s:
        a, b, c = mk(), mk(checkpoint=False), mk()
    got = [next((x for x in learn.cbs if isinstance(x, ckpt.Checkpoint)), None) for learn in (a, b, c)]
    assert got[0].index == 0 and got[1] is None and got[2].index == 2 and s.n_learners == 3
    assert got[0].folder == tmp_path and got[0].key_parts == {"k": 1}
    assert {type(learn) for learn in (a, b, c)} == {Learner}     # fastai's own Learner: no subclass


def test_only_fastais_public_api_is_used():
    """A fastai release that renames its internals cannot break a resume: the module names none of them."""
    src = Path(ckpt.__file__).read_text()
    private = r"\b_(do_fit|with_events|do_epoch\w*|do_one_batch|split|backward|step|end_cleanup|call_one)\b"
    assert not re.search(private, src)
    assert not re.search(r"\._[a-z]", src)          # no private attribute of anything (fastai's, NumPy's ...)


def test_chapter_env_points_at_the_runs_checkpoint_folder(tmp_path):
    from affectlab.course import chapter_checkpoint_env

    nb = tmp_path / "03_x.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["a = 1\n"], "metadata": {}},
                                        {"cell_type": "markdown", "source": "text", "metadata": {}}]}))
    env = chapter_checkpoint_env(tmp_path / "runs" / "quick", nb, "quick", {"seed": 0})
    assert env[ckpt.ENV] == str(tmp_path / "runs" / "quick" / "checkpoints" / "03_x")
    key = json.loads(env[ckpt.ENV_KEY])
    assert key["chapter"] == "03_x" and key["profile"] == "quick" and key["params"] == {"seed": 0}
    # markdown and outputs do not change the key; code does
    doc = json.loads(nb.read_text())
    doc["cells"][1]["source"] = "other text"
    nb.write_text(json.dumps(doc))
    assert json.loads(chapter_checkpoint_env(tmp_path, nb, "quick", {"seed": 0})[ckpt.ENV_KEY])["code"] == key["code"]
    doc["cells"][0]["source"] = ["a = 2\n"]
    nb.write_text(json.dumps(doc))
    assert json.loads(chapter_checkpoint_env(tmp_path, nb, "quick", {"seed": 0})[ckpt.ENV_KEY])["code"] != key["code"]
