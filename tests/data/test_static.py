import numpy as np
import pytest

from affectlab.data.loaders import read_rgb
from affectlab.data.static import expw_split, read_affectnet, read_expw, read_rafdb
from affectlab.labels import INVALID_VA

from data_fixtures import jpg

AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"


def test_affectnet(tmp_path):
    root = tmp_path / "affectnet"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        jpg(root / "Manually_Annotated_Images" / "1" / name, size=(40, 30))
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    (lists / "training.csv").write_text(AFFECTNET_HEADER + "1/a.jpg,2,3,20,20,\"1;2\",1,0.5,0.25\n"
                                        "1/b.jpg,0,0,10,10,,7,0.1,0.1\n"   # Contempt: dropped
                                        "1/c.jpg,0,0,10,10,,8,-2,-2\n"     # None: dropped
                                        "1/missing.jpg,0,0,10,10,,0,0,0\n")
    df = read_affectnet(tmp_path, "train")   # found from the world root
    assert df["expr"].tolist() == [4]        # AffectNet 1 = Happy -> Happiness
    assert df[["box_left", "box_top", "box_right", "box_bottom"]].iloc[0].tolist() == [2, 3, 22, 23]
    assert df["valence"].item() == pytest.approx(0.5)
    assert df.attrs["dropped"] == {"class Contempt (not in the 7 classes)": 1, "class None (not in the 7 classes)": 1,
                                   "image missing": 1}


def test_affectnet_bad_rows(tmp_path):
    (tmp_path / "training.csv").write_text(AFFECTNET_HEADER + "a.jpg,0,0,1,1,,11,0,0\n")
    with pytest.raises(ValueError, match=r"training.csv, line 2: .*outside the label space"):
        read_affectnet(tmp_path, "train")
    (tmp_path / "training.csv").write_text("path,expression\n")
    with pytest.raises(ValueError, match="missing column"):
        read_affectnet(tmp_path, "train")
    (tmp_path / "validation.csv").write_text(AFFECTNET_HEADER + "a.jpg,0,0,1,1,,1,-2,-2\n")
    jpg(tmp_path / "a.jpg")
    assert read_affectnet(tmp_path, "val")["valence"].item() == INVALID_VA


def test_rafdb(tmp_path):
    root = tmp_path / "rafdb"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 1\ntrain_00002.jpg 7\ntest_0001.jpg 4\n")
    for n in ("train_00001", "train_00002", "test_0001"):
        jpg(root / "Image" / "aligned" / f"{n}_aligned.jpg")
    tr, te = read_rafdb(tmp_path, "train"), read_rafdb(tmp_path, "test")
    assert tr["expr"].tolist() == [6, 0] and te["expr"].tolist() == [4]   # Surprise, Neutral; Happiness
    assert read_rafdb(tmp_path, "val")["path"].tolist() == te["path"].tolist()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 0\n")
    with pytest.raises(ValueError, match="line 1"):
        read_rafdb(tmp_path, "train")


def test_expw_box_order_and_crop(tmp_path):
    root = tmp_path / "expw"
    img = np.zeros((60, 80, 3), np.uint8)
    img[10:30, 40:70] = (0, 0, 255)           # a red face box (BGR) at top=10 left=40 right=70 bottom=30
    (root / "image" / "origin").mkdir(parents=True)
    import cv2
    name = next(n for n in (f"im{i}.jpg" for i in range(100)) if expw_split(n) == "train")
    cv2.imwrite(str(root / "image" / "origin" / name), img)
    (root / "label").mkdir()
    (root / "label" / "label.lst").write_text(f"{name} 0 10 40 70 30 0.9 3\n{name} 1 5 5 5 5 0.9 3\n")
    df = read_expw(tmp_path, "train")
    assert df["expr"].tolist() == [4] and df.attrs["dropped"] == {"empty face box": 1}
    box = df[["box_left", "box_top", "box_right", "box_bottom"]].iloc[0].tolist()
    assert box == [40, 10, 70, 30]
    crop = read_rgb(df["path"].item(), 16, box)
    assert crop[..., 0].mean() > 200 and crop[..., 2].mean() < 50   # all red: the reader's box is the face


def test_expw_malformed_line(tmp_path):
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "label.lst").write_text("a.jpg 0 1 2 3\n")
    with pytest.raises(ValueError, match=r"label.lst, line 1: expected"):
        read_expw(tmp_path, "train")
