import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the fixture writers


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The synthetic world's ``tiny`` preset, generated once per test session."""
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)
