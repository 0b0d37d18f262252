"""The static-image readers on trees laid out as the real AffectNet, RAF-DB and ExpW archives unzip."""
from pathlib import Path

import pandas as pd
import pytest

from affectlab.data.report import dropped_rows
from affectlab.data.static import expw_split, expw_splits, read_affectnet, read_expw, read_rafdb
from affectlab.labels import INVALID_VA
from affectlab.data.static import static_corpus

from static_release_fixtures import (AFFECTNET_TRAIN, AFFECTNET_VAL, affectnet_2017, affectnet_2021,
                                     expw, rafdb_basic, rafdb_compound)

BOX = ["box_left", "box_top", "box_right", "box_bottom"]
CONTEMPT, NONE, UNCERTAIN, NONFACE = (f"class {c} (not in the 7 classes)" for c in ("Contempt", "None", "Uncertain", "No-Face"))
VA_NAN, VA_RANGE = "valence/arousal missing or not a number", "valence/arousal outside [-1, 1] (and not -2)"


def detail(df) -> set[tuple]:
    """(reason, file name, line) of every dropped row."""
    t = dropped_rows(df)
    return {(r, Path(f).name, None if pd.isna(ln) else int(ln)) for r, f, ln in t.itertuples(index=False)}


def by_file(df) -> dict:
    return {Path(p).name: e for p, e in zip(df["path"], df["expr"])}


# ------------------------------------------------------------------------------------------------ AffectNet

def test_affectnet_2017_training_with_header_found_at_depth(tmp_path):
    root = affectnet_2017(tmp_path)   # AffectNet/Manually_Annotated/Manually_Annotated_Images/...
    df = read_affectnet(root, "train")
    assert len(df) == 3 and df.attrs["layout"] == "csv"
    names = [AFFECTNET_TRAIN[i][0].split("/")[1] for i in (0, 1, 10)]
    assert by_file(df) == {names[0]: 0, names[1]: 4, names[2]: 2}    # Neutral, Happy -> Happiness, Disgust
    assert all("Manually_Annotated/Manually_Annotated_Images/" in p and Path(p).is_file() for p in df["path"])
    assert df[BOX].iloc[1].tolist() == [4, 4, 28, 28]
    assert df["valence"].iloc[1] == pytest.approx(0.785714) and df["arousal"].iloc[1] == pytest.approx(-0.055556)
    assert df["valence"].iloc[2] == INVALID_VA and df["arousal"].iloc[2] == INVALID_VA   # -2: not applicable
    assert df.attrs["dropped"] == {CONTEMPT: 1, NONE: 1, UNCERTAIN: 1, NONFACE: 1, VA_RANGE: 1, VA_NAN: 2,
                                   "image missing": 1}
    assert detail(df) == {(CONTEMPT, "training.csv", 4), (NONE, "training.csv", 5), (UNCERTAIN, "training.csv", 6),
                          (NONFACE, "training.csv", 7), (VA_RANGE, "training.csv", 8), (VA_NAN, "training.csv", 9),
                          (VA_NAN, "training.csv", 10), ("image missing", "training.csv", 11)}


def test_affectnet_2017_validation_without_header(tmp_path):
    root = affectnet_2017(tmp_path)
    df = read_affectnet(root / "AffectNet", "val")   # pointed at the dataset folder itself
    assert len(df) == 2
    assert by_file(df) == {AFFECTNET_VAL[0][0].split("/")[1]: 0, AFFECTNET_VAL[1][0].split("/")[1]: 1}
    assert df[BOX].iloc[0].tolist() == [5, 6, 25, 16]                 # the first row is data, not a header
    assert df["valence"].tolist() == pytest.approx([0.1, -0.7])
    assert df.attrs["dropped"] == {VA_RANGE: 1} and detail(df) == {(VA_RANGE, "validation.csv", 3)}


def test_affectnet_2017_other_depths(tmp_path):
    # the lists and the images folder side by side, under a lower-case folder one level down
    affectnet_2017(tmp_path, top="data/affectnet", images="")
    assert len(read_affectnet(tmp_path, "train")) == 3 and len(read_affectnet(tmp_path / "data", "val")) == 2


def test_affectnet_2017_all_images_missing_is_an_error(tmp_path):
    affectnet_2017(tmp_path, images="elsewhere")
    import shutil
    shutil.rmtree(tmp_path / "AffectNet" / "elsewhere")
    with pytest.raises(ValueError, match=r"no usable AffectNet faces.*no Manually_Annotated_Images folder.*image missing: 4"):
        read_affectnet(tmp_path, "train")


def test_affectnet_bad_expression_and_fields_name_the_line(tmp_path):
    lists = tmp_path / "Manually_Annotated_file_lists"
    lists.mkdir()
    (lists / "validation.csv").write_text("1/a.jpg,0,0,10,10,1;2,0,0.1,0.1\n1/b.jpg,0,0,10,10,1;2,Happy,0.1,0.1\n")
    with pytest.raises(ValueError, match=r"validation.csv, line 2: .*not an integer"):
        read_affectnet(tmp_path, "val")
    (lists / "validation.csv").write_text("1/a.jpg,0,0,10,10,1;2,0,0.1,0.1\n1/b.jpg,0,0,10,10,1;2,12,0.1,0.1\n")
    with pytest.raises(ValueError, match=r"validation.csv, line 2: .*outside the label space"):
        read_affectnet(tmp_path, "val")
    (lists / "validation.csv").write_text("1/a.jpg,0,0,10,10,0,0.1\n")
    with pytest.raises(ValueError, match=r"validation.csv, line 1: expected 9 fields"):
        read_affectnet(tmp_path, "val")


def test_affectnet_newer_release_npy(tmp_path):
    root = affectnet_2021(tmp_path)
    df = read_affectnet(root, "train")
    assert df.attrs["layout"] == "npy"
    assert [Path(p).name for p in df["path"]] == ["0.jpg", "2.jpg", "10.jpg"]   # numeric order, not string
    assert df["expr"].tolist() == [4, 1, 0]                                        # Happiness, Anger, Neutral
    assert df["valence"].tolist() == pytest.approx([0.785714, -0.6, 0.05])
    assert df[BOX].isna().all().all()                                              # cropped faces: no box
    assert df.attrs["dropped"] == {CONTEMPT: 1, "annotation .npy unreadable without unpickling, or not one value": 1,
                                   VA_RANGE: 1, "image missing": 1}
    assert detail(df) == {(CONTEMPT, "3_exp.npy", None),
                          ("annotation .npy unreadable without unpickling, or not one value", "4_exp.npy", None),
                          (VA_RANGE, "5_val.npy", None), ("image missing", "6_exp.npy", None)}
    va = read_affectnet(root, "val")
    assert by_file(va) == {"100.jpg": 5, "101.jpg": 6} and va.attrs["dropped"] == {}


def test_affectnet_original_release_wins_over_the_newer(tmp_path):
    affectnet_2021(tmp_path)
    affectnet_2017(tmp_path)
    assert read_affectnet(tmp_path, "train").attrs["layout"] == "csv"


def test_affectnet_absent(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(FileNotFoundError, match="no AffectNet train labels"):
        read_affectnet(tmp_path, "train")


# --------------------------------------------------------------------------------------------------- RAF-DB

@pytest.mark.parametrize("folder, images", [("basic", "Image/aligned"), ("raf-basic", "aligned"), ("", "Image/aligned"),
                                            ("RAF-DB/basic", "Image/original")])
def test_rafdb_layouts(tmp_path, folder, images):
    root = rafdb_basic(tmp_path, folder=folder, images=images)
    tr, te = read_rafdb(root, "train"), read_rafdb(root, "test")
    suffix = "" if images.endswith("original") else "_aligned"
    assert by_file(tr) == {f"train_00001{suffix}.jpg": 6, f"train_00002{suffix}.jpg": 4, f"train_00003{suffix}.jpg": 0}
    assert by_file(te) == {f"test_0001{suffix}.jpg": 3, f"test_0002{suffix}.jpg": 1}       # Fear, Anger
    assert read_rafdb(root, "val")["path"].tolist() == te["path"].tolist()
    assert tr.attrs["dropped"] == {"image missing": 1}
    assert detail(tr) == {("image missing", "list_patition_label.txt", 4)} and te.attrs["dropped"] == {}


def test_rafdb_compound_is_refused(tmp_path):
    rafdb_compound(tmp_path)
    with pytest.raises(ValueError, match="compound-emotion list"):
        read_rafdb(tmp_path, "train")
    with pytest.raises(ValueError, match="compound-emotion list"):   # pointed at it directly
        read_rafdb(tmp_path / "compound", "train")
    rafdb_basic(tmp_path)                                               # both present: the basic set is read
    assert len(read_rafdb(tmp_path, "train")) == 3


def test_rafdb_compound_labels_in_a_basic_place_are_refused(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_0001.jpg 3\ntrain_0002.jpg 9\n")
    with pytest.raises(ValueError, match=r"line 2: label 9 .*compound-emotion list"):
        read_rafdb(tmp_path, "train")


def test_rafdb_no_images_is_an_error(tmp_path):
    rafdb_basic(tmp_path, images="Image/aligned")
    import shutil
    shutil.rmtree(tmp_path / "basic" / "Image")
    with pytest.raises(ValueError, match=r"no usable RAF-DB test_\* faces.*image missing: 2"):
        read_rafdb(tmp_path, "test")


# ----------------------------------------------------------------------------------------------------- ExpW

def test_expw_release_layout(tmp_path):
    assert {expw_split(n) for n in ("neutral_face_4.jpg", "smiling_woman_5.jpg")} == {"val"}
    root = expw(tmp_path)   # ExpW/data/label/label.lst, ExpW/data/image/origin/
    tr = read_expw(root, "train")
    assert tr.attrs["split_rule"] == "hash"
    assert list(zip([Path(p).name for p in tr["path"]], tr["face_id"], tr["expr"])) == [
        ("angry_actor_104.jpg", 0, 1), ("angry_actor_104.jpg", 1, 4), ("happy_family_21.jpg", 0, 4),
        ("surprised_girl_33.jpg", 1, 6)]
    assert tr[BOX].iloc[0].tolist() == [20, 10, 60, 50]
    assert tr.attrs["dropped"] == {"one face (image, face_id) with conflicting lines": 2, "duplicate line": 1,
                                   "image missing": 1, "empty face box": 1}
    assert detail(tr) == {("one face (image, face_id) with conflicting lines", "label.lst", 4),
                          ("one face (image, face_id) with conflicting lines", "label.lst", 9),
                          ("duplicate line", "label.lst", 5), ("image missing", "label.lst", 6),
                          ("empty face box", "label.lst", 7)}
    va = read_expw(root, "val")
    assert by_file(va) == {"neutral_face_4.jpg": 0, "smiling_woman_5.jpg": 4} and va.attrs["dropped"] == {}


def test_expw_label_at_root_and_images_in_origin(tmp_path):
    root = expw(tmp_path, top="expw", data="", images="origin")
    assert len(read_expw(root, "train")) == 4 and len(read_expw(root / "expw", "val")) == 2


def test_expw_small_list_never_leaves_val_empty(tmp_path):
    lines = ["angry_boss_3.jpg 0 5 5 40 40 0.9 0", "crying_baby_15.jpg 0 5 5 40 40 0.9 4",
             "crying_baby_15.jpg 1 5 50 90 40 0.8 6"]
    assert {expw_split(n) for n in ("angry_boss_3.jpg", "crying_baby_15.jpg")} == {"train"}
    root = expw(tmp_path, lines=lines)
    tr, va = read_expw(root, "train"), read_expw(root, "val")
    assert tr.attrs["split_rule"] == va.attrs["split_rule"] == "sorted order"
    assert by_file(tr) == {"angry_boss_3.jpg": 1}
    assert sorted(zip(va["face_id"], va["expr"])) == [(0, 5), (1, 0)]   # the last image of the sorted names
    assert expw_splits(["b.jpg", "a.jpg"])[0] == {"a.jpg": "train", "b.jpg": "val"}


def test_expw_single_image_cannot_fill_both_splits(tmp_path):
    name = next(n for n in (f"im{i}.jpg" for i in range(100)) if expw_split(n) == "train")
    root = expw(tmp_path, lines=[f"{name} 0 5 5 40 40 0.9 3"])
    assert len(read_expw(root, "train")) == 1
    with pytest.raises(ValueError, match=r"no usable ExpW val faces.*split rule: hash"):
        read_expw(root, "val")


@pytest.mark.parametrize("line, message", [
    ("a.jpg 0 1 2 3", r"label.lst, line 2: expected 'image_name face_id top left right bottom confidence label'"),
    ("a.jpg 0 1 2 x 4 0.9 3", r"label.lst, line 2: non-numeric face id, box or confidence"),
    ("a.jpg 0 1 2 3 4 high 3", r"label.lst, line 2: non-numeric"),
    ("a.jpg 0 1 2 3 4 0.9 7", r"label.lst, line 2: .*outside the label space"),
])
def test_expw_malformed_line_names_file_and_line(tmp_path, line, message):
    root = expw(tmp_path, lines=["neutral_face_4.jpg 0 4 4 44 44 0.97 6", line])
    with pytest.raises(ValueError, match=message):
        for split in ("train", "val"):
            read_expw(root, split)


# ------------------------------------------------------------------------------------------ static_corpus

@pytest.mark.parametrize("write, n_train, n_val", [
    (affectnet_2017, 3, 2), (affectnet_2021, 3, 2), (lambda r: rafdb_basic(r, folder="RAF-DB/basic"), 3, 2),
    (expw, 4, 2)])
def test_static_corpus_on_each_release_tree(tmp_path, write, n_train, n_val):
    root = write(tmp_path)
    tr, va = static_corpus(root, "train"), static_corpus(root, "val")
    assert len(tr) == n_train and len(va) == n_val and tr["source"].nunique() == 1
    assert tr["expr"].between(0, 6).all() and va["expr"].between(0, 6).all()


def test_static_corpus_on_all_releases_together(tmp_path):
    affectnet_2017(tmp_path)
    rafdb_basic(tmp_path, folder="RAF-DB/basic")
    rafdb_compound(tmp_path / "RAF-DB")
    expw(tmp_path)
    tr = static_corpus(tmp_path, "train")
    assert tr["source"].value_counts().to_dict() == {"expw": 4, "affectnet": 3, "rafdb": 3}
    assert tr.loc[tr["source"] == "rafdb", "valence"].isna().all()          # no VA where the dataset has none
    assert len(static_corpus(tmp_path, "val")) == 2 + 2 + 2
