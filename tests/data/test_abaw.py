import numpy as np
import pytest

from affectlab.data.abaw import detect_layout, read_abaw, read_abaw_multitask
from affectlab.labels import AUS_ABAW, EXPRESSIONS, EXPRESSIONS_8

from data_fixtures import abaw_2020, jpg, write_ann


def test_2020_layout_reads_every_task(tmp_path):
    abaw_2020(tmp_path, videos={"v1": 5, "v2": 3})
    e = read_abaw(tmp_path, "EXPR", "train")
    assert list(e.columns) == ["path", "video", "frame", "subject", "expr"]
    assert len(e) == 8 and e["frame"].min() == 1
    assert e.loc[(e.video == "v1") & (e.frame == 3), "expr"].item() == 3
    assert e["path"].iloc[0].endswith("cropped_aligned/v1/00001.jpg")
    va = read_abaw(tmp_path, "VA", "train")
    assert np.allclose(va[["valence", "arousal"]].to_numpy(), [0.1, -0.1])
    au = read_abaw(tmp_path, "AU", "train")
    assert au.attrs["aus"] == AUS_ABAW and au["AU1"].tolist()[:3] == [1, 0, 1]
    assert e.attrs["layout"] == "2020" and e.attrs["dropped"] == {}


def test_world_root_or_affwild_subfolder(tmp_path):
    abaw_2020(tmp_path / "affwild2")
    assert len(read_abaw(tmp_path, "EXPR", "train")) == 5


def test_invalid_rows_and_missing_images_are_counted(tmp_path):
    abaw_2020(tmp_path, videos={"v1": 6}, images={"v1": [1, 2, 3, 4]})
    write_ann(tmp_path, "EXPR", "v1", ",".join(EXPRESSIONS) + "\n0\n-1\n4\n5\n6\n1\n")
    write_ann(tmp_path, "VA", "v1", "valence,arousal\n0.1,0.2\n-5,-5\n0.3,0.4\n0.2,0.2\n0.1,0.1\n0,0\n")
    e = read_abaw(tmp_path, "EXPR", "train")
    assert e["frame"].tolist() == [1, 3, 4]
    assert e.attrs["dropped"] == {"invalid label (-1)": 1, "annotated frame has no image": 2}
    assert read_abaw(tmp_path, "VA", "train").attrs["dropped"]["invalid label (-5)"] == 1


def test_left_right_are_two_subjects(tmp_path):
    abaw_2020(tmp_path, videos={"10-30-1280x720_left": 2, "10-30-1280x720_right": 2})
    e = read_abaw(tmp_path, "EXPR", "train")
    assert set(e["subject"]) == {"10-30-1280x720_left", "10-30-1280x720_right"}


def test_header_with_extra_spaces(tmp_path):
    abaw_2020(tmp_path, tasks=("AU",))
    write_ann(tmp_path, "AU", "v1", " , ".join(AUS_ABAW) + " \n" + "0,1,0,0,0,0,0,0,0,0,0,1\n" * 5)
    au = read_abaw(tmp_path, "AU", "train")
    assert au.attrs["aus"] == AUS_ABAW and au["AU2"].tolist() == [1] * 5


def test_2020_au_set_of_eight(tmp_path):
    abaw_2020(tmp_path, tasks=("AU",))
    write_ann(tmp_path, "AU", "v1", "AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25\n" + "1,0,0,0,1,0,0,1\n" * 5)
    au = read_abaw(tmp_path, "AU", "train")
    assert au.attrs["aus"] == ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25") and "AU20" in au


def test_2022_layout_with_eight_classes(tmp_path):
    for f in range(1, 4):
        jpg(tmp_path / "cropped_aligned" / "v9" / f"{f:05d}.jpg")
    write_ann(tmp_path, "EXPR", "v9", ",".join(EXPRESSIONS_8) + "\n7\n2\n-1\n", split="Train_Set", layout="2022")
    assert detect_layout(tmp_path)[0] == "2022"
    e = read_abaw(tmp_path, "EXPR", "train")
    assert e["expr"].tolist() == [7, 2] and e.attrs["classes"] == EXPRESSIONS_8
    e7 = read_abaw(tmp_path, "EXPR", "train", keep_other=False)
    assert e7["expr"].tolist() == [2] and e7.attrs["dropped"]["class Other (8-class file)"] == 1


def test_multitask_file_layout(tmp_path):
    for f in (1, 2, 3):
        jpg(tmp_path / "cropped_aligned" / "v1" / f"{f:05d}.jpg")
    d = tmp_path / "MTL_Challenge"
    d.mkdir()
    header = "image,valence,arousal,expression," + ",".join(AUS_ABAW)
    rows = ["v1/00001.jpg,0.5,0.2,4," + ",".join(["1"] * 12), "v1/00002.jpg,-5,-5,-1," + ",".join(["-1"] * 12),
            "v1/00003.jpg,-5,-5,3," + ",".join(["0"] * 12), "v1/00004.jpg,0.1,0.1,1," + ",".join(["0"] * 12)]
    (d / "training_set_annotations.txt").write_text(header + "\n" + "\n".join(rows) + "\n")
    assert detect_layout(tmp_path)[0] == "mtl"
    e = read_abaw(tmp_path, "EXPR", "train")
    assert e["expr"].tolist() == [4, 3] and e.attrs["dropped"]["annotated frame has no image"] == 1
    m = read_abaw_multitask(tmp_path, "train")
    assert m["valence"].tolist() == [0.5, -5.0] and m["expr"].tolist() == [4, 3]


def test_multitask_outer_join_keeps_partial_frames(tmp_path):
    abaw_2020(tmp_path, videos={"v1": 4})
    write_ann(tmp_path, "EXPR", "v1", ",".join(EXPRESSIONS) + "\n1\n-1\n2\n3\n")
    write_ann(tmp_path, "VA", "v1", "valence,arousal\n0.1,0.1\n0.2,0.2\n-5,-5\n0.4,0.4\n")
    m = read_abaw_multitask(tmp_path, "train")
    assert m["frame"].tolist() == [1, 2, 3, 4]
    assert m["expr"].tolist() == [1, -1, 2, 3]
    assert m["valence"].tolist() == pytest.approx([0.1, 0.2, -5.0, 0.4])
    assert m["AU1"].dtype.kind == "i"


def test_label_outside_space_names_file_and_line(tmp_path):
    abaw_2020(tmp_path, tasks=("EXPR",))
    path = write_ann(tmp_path, "EXPR", "v1", ",".join(EXPRESSIONS) + "\n0\n9\n0\n0\n0\n")
    with pytest.raises(ValueError, match=r"v1\.txt, line 3: label outside"):
        read_abaw(tmp_path, "EXPR", "train")
    write_ann(tmp_path, "EXPR", "v1", ",".join(EXPRESSIONS) + "\n0\n0\n0\n0\n0\n")
    write_ann(tmp_path, "VA", "v1", "valence,arousal\n0.1,0.1\n0.1\n")
    with pytest.raises(ValueError, match=r"line 3: expected 2 value"):
        read_abaw(tmp_path, "VA", "train")
    write_ann(tmp_path, "VA", "v1", "valence,arousal\n0.1,abc\n")
    with pytest.raises(ValueError, match=r"line 2: not a number"):
        read_abaw(tmp_path, "VA", "train")
    assert path.exists()


def test_empty_annotation_file_is_a_counted_drop(tmp_path):
    abaw_2020(tmp_path, videos={"v1": 3, "v2": 2}, tasks=("EXPR",))
    write_ann(tmp_path, "EXPR", "v2", "")
    with pytest.warns(UserWarning, match="empty annotation file"):
        e = read_abaw(tmp_path, "EXPR", "train")
    assert set(e["video"]) == {"v1"} and e.attrs["dropped"]["empty annotation file (videos)"] == 1


def test_unknown_layout_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Aff-Wild2 annotations"):
        read_abaw(tmp_path, "EXPR", "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_abaw(tmp_path / "nope", "EXPR", "train")
    abaw_2020(tmp_path)
    with pytest.raises(ValueError, match="task"):
        read_abaw(tmp_path, "POSE", "train")
    with pytest.raises(ValueError, match="split"):
        read_abaw(tmp_path, "EXPR", "test")
    with pytest.raises(FileNotFoundError, match="Validation_Set"):
        read_abaw(tmp_path, "EXPR", "val")
