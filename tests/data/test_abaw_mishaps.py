"""What users do to an Aff-Wild2 tree: each is read correctly or refused naming what to move or fix."""
import re
import shutil

import pytest

from affectlab.data.abaw import detect_layout, read_abaw, read_abaw_multitask
from affectlab.data.report import dropped_rows
from affectlab.labels import AUS_ABAW, EXPRESSIONS

from abaw_release_fixtures import au_of, expr_of, frames, mtl_file, release, va_of


def _labels(df, cols):
    return df[["video", "frame", *cols]].values.tolist()


def test_crlf_no_final_newline_trailing_header_spaces(tmp_path):
    clean = release(tmp_path / "a", "2022", videos={"v1": 9, "v2": 3})
    release(tmp_path / "b", "2022", videos={"v1": 9, "v2": 3}, newline="\r\n", final_newline=False,
            header_pad="  ")
    assert clean.file("VA", "v1").read_bytes().count(b"\r") == 0
    for task, cols in (("EXPR", ["expr"]), ("VA", ["valence", "arousal"]), ("AU", list(AUS_ABAW))):
        a, b = read_abaw(tmp_path / "a", task, "train"), read_abaw(tmp_path / "b", task, "train")
        assert len(b) == 12 and _labels(a, cols) == _labels(b, cols)
    assert read_abaw(tmp_path / "b", "EXPR", "train").loc[8, "expr"] == 0   # v1 frame 9, after 8 = Other


def test_doubled_image_folder_after_unzipping(tmp_path):
    rel = release(tmp_path, "2020", videos={"v1": 4}, image_dir="cropped_aligned/cropped_aligned")
    e = read_abaw(tmp_path, "EXPR", "train")
    assert len(e) == 4 and e["path"].iloc[0] == str(tmp_path / "cropped_aligned/cropped_aligned/v1/00001.jpg")
    assert e["expr"].tolist() == [expr_of(f, 7) for f in range(1, 5)] and rel.frame_dirs


@pytest.mark.parametrize("pad", [6, 1])
def test_other_zero_padding_of_frame_files(tmp_path, pad):
    release(tmp_path, "2021", videos={"v1": 12}, pad=pad)
    va = read_abaw(tmp_path, "VA", "train")
    assert len(va) == 12 and va["path"].iloc[10].endswith(f"v1/{11:0{pad}d}.jpg")
    assert va.loc[va.frame == 11, ["valence", "arousal"]].values.tolist()[0] == pytest.approx(va_of(11))


def test_frames_from_zero_are_refused_naming_the_folder(tmp_path):
    rel = release(tmp_path, "2022", videos={"v1": 5, "v2": 3}, no_frames=("v2",))
    frames(tmp_path / "cropped_aligned" / "v2", range(0, 3))
    with pytest.raises(ValueError, match=re.escape(str(rel.image_roots[0] / "v2")) + r": holds frame 0 \(00000\.jpg\)"):
        read_abaw(tmp_path, "EXPR", "train")


def test_two_files_for_one_frame_are_refused(tmp_path):
    release(tmp_path, "2022", videos={"v1": 3})
    frames(tmp_path / "cropped_aligned" / "v1", [2], pad=6)
    with pytest.raises(ValueError, match=r"v1: two files for frame 2"):
        read_abaw(tmp_path, "AU", "train")


def test_annotated_video_without_frame_folder_is_counted(tmp_path):
    rel = release(tmp_path, "2024", videos={"v1": 3, "v2": 4}, no_frames=("v2",))
    e = read_abaw(tmp_path, "EXPR", "train")
    assert e["video"].unique().tolist() == ["v1"] and len(e) == 3
    assert e.attrs["dropped"] == {"video has no frame folder": 4}
    assert dropped_rows(e).values.tolist() == [["video has no frame folder", str(rel.file("EXPR", "v2")), i]
                                               for i in (2, 3, 4, 5)]


def test_missing_images_inside_a_video_are_counted(tmp_path):
    rel = release(tmp_path, "2020", videos={"v1": 6}, images={"v1": [1, 2, 5]}, invalid={"v1": [3]})
    au = read_abaw(tmp_path, "AU", "train")
    assert au["frame"].tolist() == [1, 2, 5]
    assert au.attrs["dropped"] == {"invalid label (-1)": 1, "annotated frame has no image": 2}
    assert dropped_rows(au)["line"].tolist() == [4, 5, 7]
    assert set(dropped_rows(au)["file"]) == {str(rel.file("AU", "v1"))}


def test_left_right_subjects_have_their_own_files_and_frames(tmp_path):
    rel = release(tmp_path, "2022", videos={"10-60-1280x720_left": 3, "10-60-1280x720_right": 2})
    rel.write("VA", "10-60-1280x720_right", "valence,arousal\n0.9,0.8\n-0.9,-0.8\n")
    va = read_abaw(tmp_path, "VA", "train")
    assert sorted(set(va["subject"])) == ["10-60-1280x720_left", "10-60-1280x720_right"] and len(va) == 5
    r = va[va.video == "10-60-1280x720_right"]
    assert r[["valence", "arousal"]].values.ravel().tolist() == pytest.approx([0.9, 0.8, -0.9, -0.8])
    assert r["path"].str.contains("10-60-1280x720_right").all()


# --- merged releases ----------------------------------------------------------------------------------------

def test_two_releases_under_one_root_are_refused_naming_both(tmp_path):
    a = release(tmp_path, "2020", videos={"v1": 3})
    b = release(tmp_path, "2023", videos={"w1": 3})
    with pytest.raises(ValueError, match="more than one ABAW release") as err:
        read_abaw(tmp_path, "EXPR", "train")
    assert str(a.ann) in str(err.value) and str(b.ann) in str(err.value) and "EXPR_Set" in str(err.value)
    # pointing at one release reads it (its images are found above its annotation folder)
    assert read_abaw(b.ann, "EXPR", "train")["expr"].tolist() == [0, 1, 2]
    assert read_abaw(a.ann, "EXPR", "train").attrs["layout"] == "2020"


def test_two_releases_merged_into_one_folder_are_refused(tmp_path):
    release(tmp_path, "2020", videos={"v1": 3})
    shutil.copytree(release(tmp_path / "x", "2022").task_dir("EXPR").parent,
                    tmp_path / "annotations" / "EXPR_Classification_Challenge")
    with pytest.raises(ValueError, match=r"annotations holds the annotations of two ABAW releases.*EXPR_Set.*Move"):
        detect_layout(tmp_path / "annotations")


def test_2020_and_2021_splits_merged_are_refused(tmp_path):
    release(tmp_path, "2020", videos={"v1": 3})
    release(tmp_path, "2021", videos={"v2": 3})
    with pytest.raises(ValueError, match=r"both Training_Set \(1st ABAW, 2020\) and Train_Set \(2nd ABAW, 2021\)"):
        read_abaw(tmp_path, "VA", "train")


def test_3rd_and_6th_expr_folders_merged_are_refused(tmp_path):
    rel = release(tmp_path, "2024", videos={"v1": 3})
    (rel.ann / "EXPR_Classification_Challenge" / "Train_Set").mkdir(parents=True)
    with pytest.raises(ValueError, match="EXPR_Recognition_Challenge the 6th ABAW or later"):
        read_abaw(tmp_path, "AU", "train")


def test_one_video_in_two_image_folders_is_refused(tmp_path):
    rel = release(tmp_path, "2023", videos={"v1": 3})
    frames(rel.image_roots[1] / "v1", [1, 2, 3])
    with pytest.raises(ValueError, match=r"frames of video 'v1' are in two image folders"):
        read_abaw(tmp_path, "EXPR", "train")


# --- headers and labels ---------------------------------------------------------------------------------------

def test_va_columns_are_read_by_name(tmp_path):
    release(tmp_path / "a", "2021", videos={"v1": 4}, tasks=("VA",))
    b = release(tmp_path / "b", "2021", videos={"v1": 4}, tasks=("VA",))
    b.write("VA", "v1", "arousal,valence\n" + "".join("{1},{0}\n".format(*va_of(f)) for f in range(1, 5)))
    a, bb = read_abaw(tmp_path / "a", "VA", "train"), read_abaw(tmp_path / "b", "VA", "train")
    assert bb[["valence", "arousal"]].values.tolist() == a[["valence", "arousal"]].values.tolist()
    assert bb.loc[2, "valence"] == pytest.approx(va_of(3)[0]) and bb.loc[2, "arousal"] == pytest.approx(va_of(3)[1])


def test_va_file_without_header_is_refused(tmp_path):
    rel = release(tmp_path, "2020", videos={"v1": 4, "v2": 2}, tasks=("VA",))
    rel.write("VA", "v2", "0.1,0.2\n0.3,0.4\n")
    with pytest.raises(ValueError, match=re.escape(str(rel.file("VA", "v2"))) + r", line 1: no header"):
        read_abaw(tmp_path, "VA", "train")
    rel.write("VA", "v2", "0.1,0.2\r\n0.3,0.4")
    with pytest.raises(ValueError, match=r"v2\.txt, line 1: no header .*'valence,arousal'"):
        read_abaw(tmp_path, "VA", "train")


def test_expr_and_au_files_without_header_are_refused(tmp_path):
    rel = release(tmp_path, "2022", videos={"v1": 3})
    rel.write("EXPR", "v1", "3\n4\n0\n")
    with pytest.raises(ValueError, match=r"v1\.txt, line 1: no header"):
        read_abaw(tmp_path, "EXPR", "train")
    rel.write("AU", "v1", ",".join(["0"] * 12) + "\n")
    with pytest.raises(ValueError, match=r"AU_Detection_Challenge.Train_Set.v1\.txt, line 1: no header"):
        read_abaw(tmp_path, "AU", "train")


def test_expr_header_names_the_classes(tmp_path):
    rel = release(tmp_path, "2020", videos={"v1": 3}, tasks=("EXPR",))
    rel.write("EXPR", "v1", "Happiness,Neutral,Anger,Disgust,Fear,Sadness,Surprise\n0\n1\n-1\n")
    e = read_abaw(tmp_path, "EXPR", "train")
    assert e["expr"].tolist() == [EXPRESSIONS.index("Happiness"), EXPRESSIONS.index("Neutral")]
    rel.write("EXPR", "v1", "Neutral,Angry,Disgust,Fear,Happiness,Sadness,Surprise\n0\n")
    with pytest.raises(ValueError, match=r"v1\.txt, line 1: expression header"):
        read_abaw(tmp_path, "EXPR", "train")


def test_au_columns_are_read_by_name_and_other_aus_name_both_files(tmp_path):
    rel = release(tmp_path, "2021", videos={"v1": 3, "v2": 3}, tasks=("AU",))
    rev = list(reversed(AUS_ABAW))
    rel.write("AU", "v2", ",".join(rev) + "\n" + "".join(
        ",".join(str(au_of(f, AUS_ABAW.index(a))) for a in rev) + "\n" for f in range(1, 4)))
    au = read_abaw(tmp_path, "AU", "train")
    assert au.attrs["aus"] == AUS_ABAW
    assert au[au.video == "v2"][list(AUS_ABAW)].values.tolist() == \
        au[au.video == "v1"][list(AUS_ABAW)].values.tolist()
    rel.write("AU", "v2", "AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25\n" + "0,0,0,0,0,0,0,0\n" * 3)
    with pytest.raises(ValueError) as err:
        read_abaw(tmp_path, "AU", "train")
    assert str(err.value).startswith(f"{rel.file('AU', 'v2')}, line 1: AU header")
    assert f"in {rel.file('AU', 'v1')}, line 1" in str(err.value)


@pytest.mark.parametrize("task, row, msg", [
    ("VA", "1.7,0.2", r"line 3: label outside the VA label space"),
    ("VA", "nan,0.2", r"line 3: not a finite number"),
    ("VA", "high,0.2", r"line 3: not a number"),
    ("VA", "0.1,", r"line 3: not a number"),
    ("VA", "0.1,0.2,0.3", r"line 3: expected 2 value"),
    ("EXPR", "8", r"line 3: label outside the EXPR label space \(-1 or 0\.\.7\)"),
    ("EXPR", "2.5", r"line 3: label outside the EXPR"),
    ("AU", "2," + ",".join(["0"] * 11), r"line 3: label outside the AU label space"),
    ("AU", "", r"line 3: blank line inside the file"),
])
def test_values_outside_the_label_space_name_file_and_line(tmp_path, task, row, msg):
    rel = release(tmp_path, "2022", videos={"v1": 4})
    text = rel.file(task, "v1").read_text().splitlines()
    text[2] = row
    rel.write(task, "v1", "\n".join(text) + "\n")
    with pytest.raises(ValueError, match=re.escape(str(rel.file(task, "v1"))) + ", " + msg):
        read_abaw(tmp_path, task, "train")


def test_mtl_without_header_or_with_bad_value_is_refused(tmp_path):
    p = mtl_file(tmp_path / "MTL_Challenge", "train", {"v1": 3})
    frames(tmp_path / "cropped_aligned" / "v1", [1, 2, 3])
    p.write_text("\n".join(p.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"train_set\.txt, line 1: no header"):
        read_abaw_multitask(tmp_path / "MTL_Challenge", "train")
    p2 = mtl_file(tmp_path / "MTL_Challenge", "train", {"v1": 3})
    lines = p2.read_text().splitlines()
    lines[3] = lines[3].replace(",2,", ",9,", 1)
    p2.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train_set\.txt, line 4: label outside the EXPR"):
        read_abaw(tmp_path, "EXPR", "train")


def test_two_mtl_files_for_one_split_are_refused(tmp_path):
    mtl_file(tmp_path / "MTL_Challenge", "train", {"v1": 2})
    mtl_file(tmp_path / "MTL_Challenge", "train", {"v1": 2}, name="training_set_annotations.txt")
    with pytest.raises(ValueError, match="two multi-task files for split 'train'"):
        read_abaw_multitask(tmp_path, "train")


# --- nothing usable -------------------------------------------------------------------------------------------

def test_no_usable_rows_says_what_was_looked_for_and_found(tmp_path):
    rel = release(tmp_path, "2022", videos={"v1": 3, "v2": 2}, no_frames=("v1", "v2"), invalid={"v2": [1]})
    (tmp_path / "cropped_aligned" / "other_video").mkdir(parents=True)
    with pytest.raises(ValueError) as err:
        read_abaw(tmp_path, "EXPR", "train")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path}: no usable EXPR frames. Looked for: EXPR annotation files in "
                          f"{rel.task_dir('EXPR')}")
    assert str(tmp_path / "cropped_aligned") in msg
    assert "Found: 2 annotation file(s), 0 of their videos with a frame folder" in msg
    assert "Dropped: video has no frame folder: 4, invalid label (-1): 1." in msg


def test_empty_split_folder_and_no_annotations(tmp_path):
    rel = release(tmp_path, "2021", videos={"v1": 2}, tasks=("EXPR",))
    for p in rel.task_dir("EXPR").iterdir():
        p.rename(p.with_suffix(".csv"))
    with pytest.raises(ValueError, match=r"no usable EXPR frames\. Looked for: per-video EXPR annotation files "
                                         r"<video>\.txt in .*Found: v1\.csv\."):
        read_abaw(tmp_path, "EXPR", "train")
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no Aff-Wild2 annotations found.*Found: \['stuff'\]"):
        read_abaw(tmp_path / "empty", "EXPR", "train")


def test_no_image_folder_at_all(tmp_path):
    release(tmp_path, "2020", videos={"v1": 2}, no_frames=("v1",))
    with pytest.raises(FileNotFoundError, match=r"no image folder found: looked for folders named cropped\*"):
        read_abaw(tmp_path, "EXPR", "train")
