"""Nothing silent in the loaders: damaged images are dropped and named (never a half-grey frame trained on),
a damaged image read later is an error naming the file, and decoded images are not reused for a file that
changed since."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from affectlab.data import loaders
from affectlab.data.hume import read_hume
from affectlab.data.loaders import (check_image_file, clip_dls, denormalize, frame_dls, image_store, load_image,
                                    video_dls)

from data_fixtures import hume, jpg


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    return f"image {path} is a truncated JPEG (no end-of-image marker)"


def _frames(tmp_path, n=6, video="v"):
    paths = [str(jpg(tmp_path / video / f"{i:05d}.jpg", color=(10 * i, 80, 60))) for i in range(n)]
    return pd.DataFrame({"path": paths, "video": video, "frame": range(n), "expr": range(n)})


@pytest.fixture(autouse=True)
def fresh_stores():
    loaders._STORES.clear()
    yield
    loaders._STORES.clear()


def test_a_truncated_jpeg_and_png_are_found_by_the_cheap_check_and_by_decoding(tmp_path):
    import cv2

    good = str(jpg(tmp_path / "good.jpg"))
    bad = str(jpg(tmp_path / "bad.jpg"))
    msg = _truncate(bad)
    assert check_image_file(good) is None
    assert check_image_file(bad) == "is a truncated JPEG (no end-of-image marker)"
    assert check_image_file(str(tmp_path / "gone.jpg")) == "does not exist"
    with pytest.raises(ValueError) as e:
        load_image(bad, 16)
    assert str(e.value) == msg
    png = tmp_path / "cut.png"
    cv2.imwrite(str(png), np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    png.write_bytes(png.read_bytes()[:-20])
    assert check_image_file(str(png)) == "is a truncated PNG (no IEND chunk)"
    with pytest.raises(ValueError, match=r"cut\.png is a truncated PNG"):
        load_image(str(png), 16)


def test_image_store_by_default_refuses_damaged_images_naming_the_first_and_counting(tmp_path):
    df = _frames(tmp_path)
    msg = _truncate(df["path"][1])
    _truncate(df["path"][4])
    with pytest.raises(ValueError) as e:
        image_store(df["path"], [None] * 6, 16)
    assert str(e.value) == msg + " (and 1 other damaged image(s) of 6)"
    store = image_store(df["path"], [None] * 6, 16, damaged="keep")
    assert list(store.damaged) == [1, 4] and store.kept().tolist() == [0, 2, 3, 5]
    with pytest.raises(ValueError, match=r"00001\.jpg is a truncated JPEG"):
        store.get(np.array([0, 1]))


@pytest.mark.parametrize("cache", [True, False])
def test_clips_drop_damaged_frames_and_reach_back_past_them(tmp_path, cache):
    df = _frames(tmp_path)
    msg = _truncate(df["path"][2])
    with pytest.warns(UserWarning, match=r"dropped 2 damaged image\(s\) \(1 train, 1 valid\)"):
        dls = clip_dls(df, df, s=3, size=8, bs=6, targets=("expr",), device="cpu", augment=False, cache=cache)
    assert dls.damaged["train"] == [(df["path"][2], msg)]
    x, y = next(iter(dls.valid))
    assert y["expr"].tolist() == [0, 1, 3, 4, 5]                     # row 2 is gone
    red = denormalize(x)[..., 0, :, :].mean((-1, -2)) * 255            # frame i has red 10 * i
    assert torch.allclose(red[2], torch.tensor([0.0, 10, 30]), atol=3)  # the clip of frame 3 skips frame 2


def test_videos_lose_their_damaged_frames_and_say_so(tmp_path):
    hume(tmp_path, [("00001", "Train", [0.5] * 7), ("00002", "Train", [0.2] * 7)], frames={"00001": 4, "00002": 2})
    tr = read_hume(tmp_path, "train")
    msgs = [_truncate(tmp_path / "00001" / "00001.jpg"), _truncate(tmp_path / "00002" / "00001.jpg"),
            _truncate(tmp_path / "00002" / "00002.jpg")]
    with pytest.warns(UserWarning, match=r"dropped 6 damaged image\(s\) \(3 train, 3 valid\)"):
        dls = video_dls(tr, tr, t=4, size=8, bs=2, device="cpu")
    assert [m for _, m in dls.damaged["train"]] == msgs
    assert dls.skipped == {"train": 1, "valid": 1}                     # 00002 has no usable frame left
    x, lengths, _ = next(iter(dls.valid))
    assert lengths.tolist() == [3] and x.shape == (1, 4, 3, 8, 8)


def test_damaged_raise_is_an_error_naming_the_file_for_row_aligned_callers(tmp_path):
    df = _frames(tmp_path)
    msg = _truncate(df["path"][2])
    _truncate(df["path"][5])
    with pytest.raises(ValueError) as e:
        frame_dls(df, df, targets=("expr",), size=8, device="cpu", damaged="raise")
    assert str(e.value) == msg + " (and 1 other damaged train image(s) of 6)"


def test_a_split_with_every_image_damaged_is_an_error(tmp_path):
    df = _frames(tmp_path, n=2)
    for p in df["path"]:
        _truncate(p)
    with pytest.raises(ValueError, match=r"all 2 train image\(s\) are damaged, e\.g\. image .*00000\.jpg is a truncated"):
        frame_dls(df, df, targets=("expr",), size=8, device="cpu")


def test_an_image_damaged_after_building_is_named_by_the_dataloader_worker(tmp_path):
    df = _frames(tmp_path)
    dls = frame_dls(df, df, targets=("expr",), size=8, bs=6, device="cpu", cache=False, num_workers=1,
                    augment=False)
    with open(df["path"][3], "wb") as f:          # damaged on disk after the loaders were built
        f.write(b"\xff\xd8 garbage")
    with pytest.raises(ValueError, match=r"image .*00003\.jpg is a truncated JPEG"):
        next(iter(dls.valid))


def test_a_file_replaced_under_the_same_name_is_decoded_again(tmp_path):
    df = _frames(tmp_path, n=2)
    first = frame_dls(df, df, targets=("expr",), size=8, bs=2, device="cpu", augment=False)
    red = lambda dls: (denormalize(next(iter(dls.valid))[0])[:, 0].mean((1, 2)) * 255).round().tolist()  # noqa: E731
    assert red(first) == pytest.approx([0, 10], abs=3)
    st = os.stat(df["path"][1])
    jpg(Path(df["path"][1]), color=(200, 80, 60))                     # same name, new pixels
    assert os.stat(df["path"][1]).st_size == st.st_size and os.stat(df["path"][1]).st_ino == st.st_ino
    os.utime(df["path"][1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # as written a second later
    again = frame_dls(df, df, targets=("expr",), size=8, bs=2, device="cpu", augment=False)
    assert red(again) == pytest.approx([0, 200], abs=3)
    assert len(loaders._STORES) == 2
    # the same files at the same size: decoded once, reused; another size or crop: decoded again
    frame_dls(df, df, targets=("expr",), size=8, bs=2, device="cpu")
    assert len(loaders._STORES) == 2
    frame_dls(df.assign(box_left=0, box_top=0, box_right=12, box_bottom=12), df, targets=("expr",), size=8,
              device="cpu")
    assert len(loaders._STORES) == 3
