"""The papers' models, one module per paper, sharing ``backbones``.

    from affectlab.models import FaceChannel, FaceChannelS, SENet50Classifier, TemporalStatNet, SCANCCI, REC, FaceRNet

Modules and their losses only: training, data and caching live in ``affectlab.recipes`` (the course's
pre-trained face backbone: ``affectlab.recipes.pretrain.face_feature_model``).

Names are imported lazily (PEP 562): ``import affectlab.models`` stays cheap, and a model whose module
fails to import only fails when that model is asked for, with the module named in the error.
"""
from __future__ import annotations

import importlib

# public name -> module (relative to this package) that defines it
_EXPORTS = {
    "FaceChannel": "facechannel",
    "FaceChannelS": "facechannel",
    "SENet50Classifier": "senet",
    "TemporalStatNet": "temporal_stat",
    "SCANCCI": "scan",
    "REC": "facernet",
    "FaceRNet": "facernet",
    "PretrainNet": "pretrain",
    "make_backbone": "backbones",
    "backbone_stages": "backbones",
    "load_vggface2": "backbones",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'affectlab.models' has no attribute {name!r}")
    try:
        mod = importlib.import_module(f".{module}", __name__)
    except ImportError as e:
        raise ImportError(f"affectlab.models.{name} lives in affectlab/models/{module}.py, "
                          f"which could not be imported: {e}") from e
    value = getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
