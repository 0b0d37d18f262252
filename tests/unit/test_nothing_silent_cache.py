"""Cache keys of computed results change when the files they were computed from change."""
import os

from affectlab.cache import files_key, key as cache_key


def test_files_key_follows_the_files_not_only_their_names(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"12345")
    b.write_bytes(b"xyz")
    k = files_key([a, b])
    assert files_key([str(a), str(b)]) == k and len(k) == 16          # str or Path, stable
    assert files_key([b, a]) != k                                       # order matters (rows)
    st = os.stat(a)
    a.write_bytes(b"54321")                                             # same name, same size, new content ...
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # ... written a second later
    assert files_key([a, b]) != k
    k2 = files_key([a, b])
    b.write_bytes(b"xyzw")                                              # another size
    assert files_key([a, b]) != k2
    b.unlink()
    assert files_key([a, b]) not in (k, k2)
    # in a cache key with the seed and the settings
    assert cache_key("features", files_key([a]), {"size": 64}, 0) != cache_key("features", files_key([a]), {"size": 64}, 1)


def test_a_cache_miss_leaves_the_random_states_of_a_hit(tmp_path, monkeypatch):
    """Computing a cached result draws from the global random states (loaders are seeded from them, trainings
    seed them); a miss must put them back, so what is drawn after a cached result does not depend on whether
    the cache was warm — for features (train.features) and any other cached result (cache.cached)."""
    import random

    import numpy as np
    import torch

    import affectlab.cache as cache
    from affectlab.train import features

    monkeypatch.setattr(cache, "cache_dir", lambda: tmp_path)
    net = torch.nn.Linear(3, 2)

    def batches():
        torch.rand(1), np.random.rand(), random.random()       # a loader's draws
        yield torch.ones(4, 3)

    def after(seed):
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
        features(net, batches(), "cpu", cache=("t", "k"))
        return torch.rand(1).item(), np.random.rand(), random.random()

    miss, hit = after(0), after(0)
    assert list(tmp_path.glob("t-*.pt")) and miss == hit

    def trained():
        torch.manual_seed(123), np.random.seed(123), random.seed(123)   # a training seeds and draws
        return {"w": torch.rand(2)}

    def after_model(seed):
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
        cache.cached("m", "k", trained)
        return torch.rand(1).item(), np.random.rand(), random.random()

    assert after_model(1) == after_model(1)


def test_every_module_left_out_of_the_code_key_exists():
    # a renamed module left in NOT_TRAINING would silently start invalidating every cache again (or, renamed
    # into the list by mistake, stop invalidating any)
    from pathlib import Path

    import affectlab.cache
    from affectlab.cache import NOT_TRAINING

    pkg = Path(affectlab.cache.__file__).parent
    missing = sorted(n for n in NOT_TRAINING if not (pkg / n).is_file())
    assert not missing, f"NOT_TRAINING names modules that do not exist: {missing}"
