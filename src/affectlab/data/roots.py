"""The chapters' ``data_root`` parameter: the synthetic world (generated on first use) or a user's folder."""
from __future__ import annotations

import os
from pathlib import Path

from affectlab.paths import existing_dir, synthetic_root


def resolve_data_root(data_root: str | os.PathLike | None, preset: str = "quick", seed: int = 0) -> Path:
    """``None`` means the synthetic world of ``preset`` generated with ``seed`` (generated on first use, a
    no-op when it is already there); anything else must be an existing directory."""
    if data_root is None:
        from affectlab.data.synth import make_world  # the generator (OpenCV drawing) only when it is needed

        return make_world(synthetic_root(preset, seed), preset=preset, seed=seed)
    return existing_dir(data_root, "data_root")
