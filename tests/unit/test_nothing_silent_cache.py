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
