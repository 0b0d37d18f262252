import pytest

from affectlab.data.hume import read_hume
from affectlab.labels import REACTIONS

from data_fixtures import hume


def test_read_hume(tmp_path):
    root = hume(tmp_path / "hume", [("00001", "Train", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
                                    ("00002", "Val", None), ("00003", "Train", None)],
                frames={"00001": 4, "00003": 0})
    tr = read_hume(tmp_path, "train")
    assert tr["video"].tolist() == ["00001"] and tr["length"].tolist() == [4]
    assert tr["frames"].item()[0].endswith("00001/00001.jpg") and tr["frames"].item() == sorted(tr["frames"].item())
    assert tr[list(REACTIONS)].iloc[0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert tr.attrs["dropped"] == {"video has no frames": 1}
    assert read_hume(root, "val")["video"].tolist() == ["00002"]


def test_missing_reaction_names_the_video(tmp_path):
    hume(tmp_path, [("00005", "Train", [0.1, None, 0.3, 0.4, 0.5, 0.6, 0.7])])
    with pytest.raises(ValueError, match=r"video 00005: missing reaction value\(s\) \['Amusement'\]"):
        read_hume(tmp_path, "train")


def test_no_data_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_info.csv"):
        read_hume(tmp_path, "train")
