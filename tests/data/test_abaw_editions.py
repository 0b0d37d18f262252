"""Each ABAW edition's release, as its archives unzip, read from any sensible root."""
import numpy as np
import pandas as pd
import pytest

from affectlab.data.abaw import detect_layout, read_abaw, read_abaw_multitask
from affectlab.data.report import dropped_rows
from affectlab.labels import AUS_ABAW, AUS_ABAW2020, EXPRESSIONS, EXPRESSIONS_8

from abaw_release_fixtures import au_of, expr_of, frames, mtl_file, release, va_of


def _at(df, video, frame, col):
    return df.loc[(df.video == video) & (df.frame == frame), col].item()


def test_2020_first_abaw(tmp_path):
    rel = release(tmp_path, "2020", videos={"v1": 9, "v2": 4}, invalid={"v1": [2]})
    e = read_abaw(tmp_path, "EXPR", "train")
    assert len(e) == 12 and e.attrs["layout"] == "2020" and e.attrs["classes"] == EXPRESSIONS
    assert _at(e, "v1", 5, "expr") == expr_of(5, 7) == 4 and _at(e, "v2", 4, "expr") == 3
    assert _at(e, "v1", 5, "path") == str(rel.frame_dirs["v1"] / "00005.jpg")
    assert e.attrs["dropped"] == {"invalid label (-1)": 1}
    d = dropped_rows(e)
    assert d.values.tolist() == [["invalid label (-1)", str(rel.file("EXPR", "v1")), 3]]
    au = read_abaw(tmp_path, "AU", "train")
    assert au.attrs["aus"] == AUS_ABAW2020 and len(au) == 12
    assert [_at(au, "v1", 3, a) for a in AUS_ABAW2020] == [au_of(3, j) for j in range(8)]
    va = read_abaw(tmp_path / "annotations", "VA", "train")       # the annotations folder as root
    assert len(va) == 12 and va.attrs["dropped"] == {"invalid label (-5)": 1}
    assert (_at(va, "v1", 7, "valence"), _at(va, "v1", 7, "arousal")) == pytest.approx(va_of(7))


def test_2021_second_abaw_train_set_and_12_aus(tmp_path):
    release(tmp_path, "2021", videos={"v1": 6})
    release(tmp_path, "2021", videos={"v3": 3}, split="val")
    assert detect_layout(tmp_path) == ("2021", tmp_path / "annotations")
    au = read_abaw(tmp_path, "AU", "train")
    assert au.attrs["aus"] == AUS_ABAW and len(au) == 6 and au.attrs["layout"] == "2021"
    assert [_at(au, "v1", 2, a) for a in AUS_ABAW] == [au_of(2, j) for j in range(12)]
    val = read_abaw(tmp_path, "EXPR", "val")
    assert val["video"].unique().tolist() == ["v3"] and val["expr"].tolist() == [0, 1, 2]
    assert val.attrs["dropped"] == {} and len(dropped_rows(val)) == 0


@pytest.mark.parametrize("level", ["", "3rd ABAW Annotations", "3rd ABAW Annotations/Third ABAW Annotations"])
def test_2022_third_abaw_from_any_level(tmp_path, level):
    rel = release(tmp_path, "2022", videos={"v1": 10, "v2_left": 3, "v2_right": 3}, invalid={"v1": [4]})
    e = read_abaw(tmp_path / level, "EXPR", "train")
    assert detect_layout(tmp_path / level) == ("2022", rel.ann)
    assert len(e) == 15 and e.attrs["classes"] == EXPRESSIONS_8
    assert _at(e, "v1", 8, "expr") == 7 and _at(e, "v1", 9, "expr") == 0
    assert set(e["subject"]) == {"v1", "v2_left", "v2_right"}
    assert dropped_rows(e).values.tolist() == [["invalid label (-1)", str(rel.file("EXPR", "v1")), 5]]
    e7 = read_abaw(tmp_path / level, "EXPR", "train", keep_other=False)
    assert len(e7) == 14 and 7 not in set(e7["expr"]) and e7.attrs["classes"] == EXPRESSIONS
    assert e7.attrs["dropped"] == {"invalid label (-1)": 1, "class Other (8-class file)": 1}
    assert dropped_rows(e7).values.tolist()[1] == ["class Other (8-class file)", str(rel.file("EXPR", "v1")), 9]


def test_2022_mtl_file_beside_the_task_folders(tmp_path):
    rel = release(tmp_path, "2022", videos={"v1": 6})
    mtl = rel.ann / "MTL_Challenge"
    mtl_file(mtl, "train", {"v1": 4}, invalid={("v1", 2): ("EXPR", "VA", "AU"), ("v1", 3): ("VA",)})
    # the per-task folders win for the root of the release ...
    m = read_abaw_multitask(tmp_path, "train")
    assert len(m) == 6 and m.attrs["layout"] == "2022"
    # ... the multi-task file is read when root is its folder
    t = read_abaw_multitask(mtl, "train")
    assert t.attrs["layout"] == "mtl" and t["frame"].tolist() == [1, 3, 4]
    assert t.loc[t.frame == 3, "valence"].item() == -5.0 and t.loc[t.frame == 3, "expr"].item() == expr_of(3)
    assert t.loc[t.frame == 4, AUS_ABAW].values.tolist() == [[au_of(4, j) for j in range(12)]]
    assert dropped_rows(t).values.tolist() == [["no valid label for the requested tasks", str(mtl / "train_set.txt"), 3]]


@pytest.mark.parametrize("header", ["aus", "names"])
def test_mtl_header_aus_or_au_names(tmp_path, header):
    top = tmp_path / "3rd ABAW Annotations" / "Third ABAW Annotations" / "MTL_Challenge"
    mtl_file(top, "train", {"v1": 5, "v2": 2}, header=header)
    mtl_file(top, "val", {"v3": 2}, header=header)
    frames(tmp_path / "cropped_aligned" / "v1", range(1, 5))           # frame 5 has no image
    frames(tmp_path / "cropped_aligned" / "v3", range(1, 3))
    assert detect_layout(tmp_path) == ("mtl", top)
    m = read_abaw_multitask(tmp_path, "train")
    assert len(m) == 4 and m.attrs["aus"] == AUS_ABAW and m.attrs["classes"] == EXPRESSIONS_8
    assert m.loc[m.frame == 3, ["valence", "arousal"]].values.tolist()[0] == pytest.approx(va_of(3))
    assert m.loc[m.frame == 3, "AU4"].item() == au_of(3, 2)
    assert m.attrs["dropped"] == {"video has no frame folder": 2, "annotated frame has no image": 1}
    d = dropped_rows(m)
    assert d["line"].tolist() == [7, 8, 6] and set(d["file"]) == {str(top / "train_set.txt")}
    e = read_abaw(tmp_path, "EXPR", "val")
    assert e["expr"].tolist() == [0, 1] and e.columns.tolist() == ["path", "video", "frame", "subject", "expr"]


def test_2023_fifth_abaw_two_image_folders(tmp_path):
    rel = release(tmp_path, "2023", videos={"v1": 4, "new1": 3}, new_vids=("new1",))
    assert rel.frame_dirs["new1"].parent.name == "cropped_aligned_new_50_vids"
    e = read_abaw(tmp_path, "EXPR", "train")
    assert len(e) == 7 and e.attrs["layout"] == "2022" and e.attrs["dropped"] == {}
    assert _at(e, "new1", 2, "path") == str(rel.frame_dirs["new1"] / "00002.jpg")
    assert _at(e, "v1", 2, "path") == str(rel.frame_dirs["v1"] / "00002.jpg")
    va = read_abaw(rel.ann, "VA", "train")      # root: the annotations folder, images two levels up
    assert len(va) == 7


@pytest.mark.parametrize("edition", ["2024", "2025"])
def test_sixth_abaw_and_later_renamed_expr_folder(tmp_path, edition):
    rel = release(tmp_path, edition, videos={"v1": 9})
    assert rel.task_dir("EXPR").parent.name == "EXPR_Recognition_Challenge"
    e = read_abaw(tmp_path, "EXPR", "train")
    assert e.attrs["layout"] == "2024" and len(e) == 9 and _at(e, "v1", 8, "expr") == 7
    m = read_abaw_multitask(tmp_path, "train")
    assert len(m) == 9 and m.attrs["aus"] == AUS_ABAW


def test_multitask_outer_join_reports_each_task(tmp_path):
    rel = release(tmp_path, "2022", videos={"v1": 5}, tasks=("EXPR", "VA"), invalid={"v1": [2]})
    rel.write("VA", "v1", "valence,arousal\n0.1,0.1\n0.2,0.2\n-5,-5\n0.4,0.4\n0.5,0.5\n")
    m = read_abaw_multitask(tmp_path, "train", tasks=("EXPR", "VA"))
    assert m["frame"].tolist() == [1, 2, 3, 4, 5]
    assert m["expr"].tolist() == [0, -1, 2, 3, 4]
    assert m["valence"].tolist() == pytest.approx([0.1, 0.2, -5.0, 0.4, 0.5])
    assert m.attrs["dropped"] == {"EXPR: invalid label (-1)": 1, "VA: invalid label (-5)": 1}
    d = dropped_rows(m)
    assert d.values.tolist() == [["EXPR: invalid label (-1)", str(rel.file("EXPR", "v1")), 3],
                                 ["VA: invalid label (-5)", str(rel.file("VA", "v1")), 4]]
    assert isinstance(d, pd.DataFrame) and np.issubdtype(m["expr"].dtype, np.integer)


def test_mtl_files_of_the_4th_and_7th_abaw_in_any_folder(tmp_path):
    ann = tmp_path / "affwild2" / "annotations"
    mtl_file(ann, "train", {"v1": 3}, header="names", name="training_set_annotations.txt", newline="\r\n")
    mtl_file(ann, "val", {"v2": 2}, header="names", name="validation_set_annotations.txt")
    (ann / "MTL.txt").write_text("image,valence,arousal,expression,aus\nv9/00001.jpg\n")   # a test-set list
    frames(tmp_path / "affwild2" / "cropped_aligned" / "v1", [1, 2, 3])
    frames(tmp_path / "affwild2" / "cropped_aligned" / "v2", [1, 2])
    assert detect_layout(tmp_path) == ("mtl", ann)
    va = read_abaw(tmp_path, "VA", "train")
    assert va["frame"].tolist() == [1, 2, 3] and va.loc[1, "valence"] == pytest.approx(va_of(2)[0])
    assert read_abaw(tmp_path, "AU", "val")[list(AUS_ABAW)].values.tolist()[1] == [au_of(2, j) for j in range(12)]


def test_mtl_files_of_two_releases_are_refused(tmp_path):
    mtl_file(tmp_path / "abaw3" / "MTL_Challenge", "train", {"v1": 2})
    mtl_file(tmp_path / "abaw4", "train", {"v1": 2}, name="training_set_annotations.txt")
    with pytest.raises(ValueError, match=r"more than one ABAW release: .*abaw3 \(train_set\.txt\); .*abaw4 "
                                         r"\(training_set_annotations\.txt\)"):
        read_abaw_multitask(tmp_path, "train")
