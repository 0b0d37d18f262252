"""read_hume on a tree laid out as the Hume-Reaction release: data_info.csv with bracketed File_IDs."""
from pathlib import Path

import pandas as pd
import pytest

from affectlab.data.hume import frame_order, read_hume
from affectlab.data.report import dropped_rows
from affectlab.labels import REACTIONS

from static_release_fixtures import hume_release

RANGE, NO_FRAMES, TWICE = "reaction intensity outside [0, 1]", "video has no frames", "File_ID listed twice (later line dropped)"


def detail(df) -> set[tuple]:
    return {(r, Path(f).name, None if pd.isna(ln) else int(ln)) for r, f, ln in dropped_rows(df).itertuples(index=False)}


def test_hume_release_train(tmp_path):
    root = hume_release(tmp_path)   # Hume-Reaction/data_info.csv, found one level down
    tr = read_hume(root, "train")
    assert tr["video"].tolist() == ["00001"] and tr["length"].tolist() == [12]
    frames = [Path(f).name for f in tr["frames"].item()]
    assert frames == [f"frame_{i}.jpg" for i in range(1, 13)]          # frame_10 after frame_9, not after frame_1
    assert tr[list(REACTIONS)].iloc[0].tolist() == pytest.approx([0.12, 0.05, 0.3, 0.0, 0.41, 1.0, 0.27])
    assert tr.attrs["dropped"] == {RANGE: 2, NO_FRAMES: 1, TWICE: 1}
    assert detail(tr) == {(RANGE, "data_info.csv", 3), (RANGE, "data_info.csv", 4), (NO_FRAMES, "data_info.csv", 7),
                          (TWICE, "data_info.csv", 8)}


def test_hume_release_val(tmp_path):
    va = read_hume(hume_release(tmp_path) / "Hume-Reaction", "val")
    assert va["video"].tolist() == ["00004", "00007"] and va["length"].tolist() == [3, 3]
    assert [Path(f).name for f in va["frames"].iloc[1]] == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]
    assert va.loc[1, "Surprise"] == pytest.approx(0.6) and va.attrs["dropped"] == {}
    with pytest.raises(ValueError, match="split must be"):
        read_hume(tmp_path, "test")   # Test is unlabelled


def test_frame_order():
    names = ["frame_10.jpg", "frame_9.jpg", "frame_1.jpg", "frame_100.jpg"]
    assert sorted(names, key=frame_order) == ["frame_1.jpg", "frame_9.jpg", "frame_10.jpg", "frame_100.jpg"]
    assert sorted(["00010.jpg", "00002.jpg"], key=frame_order) == ["00002.jpg", "00010.jpg"]


def test_hume_nan_and_text_in_train_are_errors(tmp_path):
    hume_release(tmp_path, rows=[("00001", "Train", [0.1, "nan", 0, 0, 0, 0, 0], ["00001.jpg"])])
    with pytest.raises(ValueError, match=r"data_info.csv, line 2: video 00001: missing reaction value\(s\) \['Amusement'\]"):
        read_hume(tmp_path, "train")
    hume_release(tmp_path, rows=[("00001", "Val", [0.1, 0, "high", 0, 0, 0, 0], ["00001.jpg"])])
    with pytest.raises(ValueError, match=r"line 2: video 00001: non-numeric reaction intensity Anxiety='high'"):
        read_hume(tmp_path, "val")


def test_hume_split_with_nothing_usable_is_an_error(tmp_path):
    hume_release(tmp_path, rows=[("00001", "Train", [0.1] * 7, []), ("00002", "Test", None, ["00001.jpg"]),
                                 ("00003", "Train", [2.0] * 7, ["00001.jpg"])])
    with pytest.raises(ValueError, match=r"no usable Hume-Reaction train videos.*2 Train rows of 3.*video has no frames: 1"):
        read_hume(tmp_path, "train")
    with pytest.raises(ValueError, match=r"no usable Hume-Reaction val videos.*0 Val rows"):
        read_hume(tmp_path, "val")


def test_hume_frames_under_a_face_images_folder(tmp_path):
    root = hume_release(tmp_path, top="hume", rows=[("00001", "Train", [0.3] * 7, [])])
    for f in ("frame_2.jpg", "frame_1.jpg"):
        from data_fixtures import jpg
        jpg(root / "hume" / "face_images" / "00001" / f, size=(8, 8))
    tr = read_hume(root, "train")
    assert [Path(f).name for f in tr["frames"].item()] == ["frame_1.jpg", "frame_2.jpg"]
    assert "face_images" in tr["frames"].item()[0]
