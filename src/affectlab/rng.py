"""Random states captured and restored without pickle — as tensors, numbers and strings, so a checkpoint that
holds them loads with ``torch.load(weights_only=True)``: torch's CPU and CUDA generators, NumPy's and Python's
global ones, and every generator a DataLoader draws from (fastai's shuffling ``rng``, affectlab's augmentation
``gen``, a sampler's generator, those of a loader wrapped for data-parallel training). ``affectlab.checkpoint``
uses it to resume a fit exactly."""
from __future__ import annotations

import json
import random

import numpy as np
import torch


def _json(o):
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    return o.item() if isinstance(o, np.generic) else str(o)


def encode(obj) -> dict:
    """A weights_only-loadable form of a generator's state (also of the ``random`` and ``np.random`` modules')."""
    if isinstance(obj, torch.Generator):
        return {"kind": "torch", "state": obj.get_state()}
    if isinstance(obj, np.random.Generator):
        return {"kind": "numpy_generator", "json": json.dumps(obj.bit_generator.state, default=_json)}
    if hasattr(obj, "get_state"):          # a RandomState, or np.random's global one
        name, key, pos, has_gauss, gauss = obj.get_state(legacy=True)
        return {"kind": "numpy", "name": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                "has_gauss": int(has_gauss), "gauss": float(gauss)}
    version, state, gauss = obj.getstate()  # a random.Random, or the module's hidden one
    return {"kind": "python", "version": int(version), "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss}


def decode_into(obj, enc: dict) -> None:
    kind = enc["kind"]
    if kind == "python":
        obj.setstate((enc["version"], tuple(enc["state"].tolist()), enc["gauss"]))
    elif kind == "numpy":
        obj.set_state((enc["name"], enc["key"].numpy().astype(np.uint32), enc["pos"], enc["has_gauss"], enc["gauss"]))
    elif kind == "numpy_generator":
        state = json.loads(enc["json"])
        if isinstance(state.get("state", {}).get("key"), list):
            state["state"]["key"] = np.asarray(state["state"]["key"], np.uint32)
        obj.bit_generator.state = state
    elif kind == "torch":
        obj.set_state(enc["state"])
    else:
        raise ValueError(f"unknown random state kind {kind!r}")


def loader_generators(dls) -> dict:
    """Every random generator a DataLoader draws from (fastai's ``rng``, affectlab's ``gen``, any other, its
    sampler's, and those of a loader it wraps for data-parallel training), keyed '<loader>.<attr>'."""
    out = {}
    for i, dl in enumerate(getattr(dls, "loaders", None) or []):
        inner = getattr(dl, "dl", None)
        for owner, prefix in ((dl, f"{i}"), (getattr(dl, "sampler", None), f"{i}.sampler"),
                              (inner, f"{i}.dl"), (getattr(inner, "sampler", None), f"{i}.dl.sampler")):
            for name, val in sorted(vars(owner).items()) if hasattr(owner, "__dict__") else ():
                if isinstance(val, (random.Random, np.random.RandomState, np.random.Generator, torch.Generator)):
                    out[f"{prefix}.{name}"] = val
    return out


def capture_rng(dls=None) -> dict:
    """Every random state of this process (torch CPU and CUDA, NumPy, Python) and of ``dls``' loaders."""
    return {"torch": torch.get_rng_state(), "numpy": encode(np.random), "python": encode(random),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
            "loaders": {k: encode(v) for k, v in loader_generators(dls).items()} if dls is not None else {}}


def restore_rng(state: dict, dls=None) -> None:
    """Set every random state captured by ``capture_rng`` (a generator missing on either side is an error)."""
    torch.set_rng_state(state["torch"])
    decode_into(np.random, state["numpy"])
    decode_into(random, state["python"])
    if state["cuda"]:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n != len(state["cuda"]):
            raise RuntimeError(f"the checkpoint holds the random states of {len(state['cuda'])} CUDA device(s); "
                               f"this machine has {n}")
        torch.cuda.set_rng_state_all(state["cuda"])
    if dls is not None:
        have = loader_generators(dls)
        if sorted(have) != sorted(state["loaders"]):
            raise RuntimeError(f"the data loaders' random generators {sorted(have)} are not the checkpoint's "
                               f"{sorted(state['loaders'])}")
        for k, gen in have.items():
            decode_into(gen, state["loaders"][k])
