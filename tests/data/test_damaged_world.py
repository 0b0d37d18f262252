"""Audit ("Nothing silent"): the tiny synthetic world, damaged in many ways, read through the public API.

The world is generated once for the module; every test damages its own copy (``shutil.copytree`` into
``tmp_path``) and reads it with the public readers / loaders / weight loader / course runner. Each case ends
in exactly one of: an error naming the file (and line) and what is wrong, rows dropped and counted
(``df.attrs["dropped"]`` and ``report.dropped_rows(df)`` naming file and line), or the correct result (equal
to the undamaged world's, or the exact expected labels). The five cases the audit first found silently wrong
(A25, S09, S12, S13, L07) were fixed in the readers and the image cache; their tests assert the fix.

=====  ==========================================================  =============================================
id     damage                                                      how it ends
=====  ==========================================================  =============================================
A01    VA header and columns swapped (arousal,valence)              correct result (= undamaged world)
A02    VA header line blank (header missing)                        ValueError: file, line 1, header
A03    VA header deleted: first line numeric                        ValueError: file, line 1, "no header"
A04    AU header deleted: first line numeric                        ValueError: file, line 1, "no header"
A05    CRLF line ends in VA / EXPR / AU files                       correct result
A06    no final newline                                             correct result
A07    trailing spaces (and capitals) in the headers                correct result
A08    UTF-8 BOM at the start of a VA file                          correct result
A09    VA value 1.7                                                 ValueError: file, line, label space
A10    VA value nan                                                 ValueError: file, line, not finite
A11    VA value -3                                                  ValueError: file, line, label space
A12    VA value a word                                              ValueError: file, line, not a number
A13    VA decimal comma (4 fields)                                  ValueError: file, line, field count
A14    blank line inside a VA file                                  ValueError: file, line, blank line
A15    VA sentinel -5 written on one line                           dropped + counted (invalid label (-5))
A16    EXPR 9 in a 7-class file                                     ValueError: file, line, label space
A17    EXPR 9 read through read_abaw_multitask                      ValueError: file, line, label space
A18    AU value 2                                                   ValueError: file, line, label space
A19    AU header of another AU set in a second file                 ValueError naming both files, line 1
A20    frame folder renumbered from 00000                           ValueError naming the folder, frame 0
A21    two files for one frame (1.jpg and 00001.jpg)                ValueError naming the folder
A22    frame folder missing for an annotated video                  dropped + counted (video has no frame folder)
A23    one annotated frame's image deleted                          dropped + counted (annotated frame has no image)
A24    annotation file empty                                        warning + dropped + counted (file, no line)
A25    same video's annotation file under Training and Validation   ValueError naming both files
S01    AffectNet valence 1.7                                        dropped + counted (outside [-1, 1])
S02    AffectNet valence literal nan                                dropped + counted (missing or not a number)
S03    AffectNet valence -2 (not applicable)                        correct result (-5 sentinel)
S04    AffectNet class 11                                           ValueError: file, line, label space
S05    AffectNet class 3.5                                          ValueError: file, line, not an integer
S06    AffectNet validation.csv without header                      correct result (= with header)
S07    AffectNet row with a missing field                           ValueError: file, line, field count
S08    AffectNet image deleted                                      dropped + counted (image missing)
S09    AffectNet one image listed twice with two labels             both lines dropped and counted   
S10    RAF-DB compound label 9                                      ValueError: file, line, compound
S11    RAF-DB label 0                                               ValueError: file, line, label space
S12    RAF-DB line duplicated                                       the repeat dropped and counted
S13    RAF-DB one image listed twice with two labels                both lines dropped and counted   
S14    ExpW malformed line (a field missing)                        ValueError: file, line, layout
S15    ExpW duplicate line                                          dropped + counted (duplicate line)
S16    ExpW one face listed twice with two labels                   dropped + counted (both lines)
H01    Hume intensity 1.7                                           dropped + counted (outside [0, 1])
H02    Hume intensity -3                                            dropped + counted (outside [0, 1])
H03    Hume File_ID without brackets                                correct result (= with brackets)
H04    Hume frames named frame_N.jpg (frame_10 vs frame_9)          correct result (numeric order)
H05    Hume intensity missing                                       ValueError: file, line, video
H06    Hume File_ID listed twice                                    dropped + counted (later line)
H07    Hume Split value misspelt                                    dropped + counted (split ...)
H08    Hume frame folder emptied                                    dropped + counted (video has no frames)
L01    truncated JPEG (half the bytes) given to frame_dls           dropped + counted (dls.damaged, warning names it)
L02    truncated JPEG given to load_image                           ValueError naming the file
L03    text file named .jpg given to load_image                     ValueError naming the file
L04    every validation image truncated, given to frame_dls         ValueError naming one and the count
L05    truncated Hume frame given to video_dls                      dropped + counted (video one frame shorter)
L06    JPEG replaced under the same name (new file, new size)       correct result (cache serves new pixels)
L07    JPEG rewritten in place, same size, mtime restored           correct result (ctime in the cache key)
R01    empty root, to every reader                                  FileNotFoundError naming the root
R02    root that is a file, to every reader                         FileNotFoundError naming the root
W01    weight pickle of unrelated names                             WeightMismatchError with counts, model intact
W02    weight file that is not a pickle                             ValueError naming the file
C01    runner -p sede 7                                             exit 2, names 'sede' and 'seed', nothing runs
C02    runner -p seed abc                                           exit 2, names 'seed' and its type
C03    runner -p seed 1 -p seed 2                                   exit 2, 'seed' given more than once
=====  ==========================================================  =============================================
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from affectlab.data import loaders
from affectlab.data.abaw import read_abaw, read_abaw_multitask
from affectlab.data.hume import read_hume
from affectlab.data.loaders import frame_dls, load_image, video_dls
from affectlab.data.report import dropped_rows
from affectlab.data.static import expw_splits, read_affectnet, read_expw, read_rafdb
from affectlab.labels import INVALID_VA, REACTIONS

V = "100-30-1280x720_left"          # a training video of the tiny world


# --- the world, once; a copy per test ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("damaged_world") / "tiny", preset="tiny", seed=0, progress=False)


@pytest.fixture
def w(world, tmp_path) -> Path:
    """A private copy of the world to damage."""
    return Path(shutil.copytree(world, tmp_path / "w"))


@pytest.fixture(autouse=True)
def fresh_stores():
    loaders._STORES.clear()
    yield
    loaders._STORES.clear()


def ann(root: Path, task: str, split: str = "Training_Set", video: str = V) -> Path:
    return root / "affwild2" / "annotations" / f"{task}_Set" / split / f"{video}.txt"


def frames_of(root: Path, video: str = V) -> Path:
    return root / "affwild2" / "cropped_aligned" / video


def affectnet_csv(root: Path, split: str = "training") -> Path:
    return root / "affectnet" / "Manually_Annotated_file_lists" / f"{split}.csv"


def rafdb_list(root: Path) -> Path:
    return root / "rafdb" / "EmoLabel" / "list_patition_label.txt"


def expw_list(root: Path) -> Path:
    return root / "expw" / "label" / "label.lst"


def hume_info(root: Path) -> Path:
    return root / "hume" / "data_info.csv"


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, lines: list[str], end: str = "\n", final: bool = True) -> None:
    path.write_bytes((end.join(lines) + (end if final else "")).encode())


def set_line(path: Path, lineno: int, text: str) -> None:
    """Replace file line ``lineno`` (1-based)."""
    lines = lines_of(path)
    lines[lineno - 1] = text
    write_lines(path, lines)


def rel(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    """The frame with paths relative to ``root`` (to compare a copy's read with the world's)."""
    out = df.copy()
    for col in ("path", "frames"):
        if col in out:
            out[col] = out[col].map(lambda p: [os.path.relpath(x, root) for x in p] if isinstance(p, list)
                                    else os.path.relpath(p, root))
    return out


def same_result(got: pd.DataFrame, root: Path, want: pd.DataFrame, world: Path) -> None:
    pd.testing.assert_frame_equal(rel(got, root), rel(want, world))
    assert got.attrs["dropped"] == want.attrs["dropped"]
    d_got, d_want = dropped_rows(got), dropped_rows(want)
    d_got["file"] = [os.path.relpath(f, root) for f in d_got["file"]]
    d_want["file"] = [os.path.relpath(f, world) for f in d_want["file"]]
    pd.testing.assert_frame_equal(d_got, d_want)


def raises_naming(exc, call, *parts: str):
    """``call()`` raises ``exc`` whose message contains every part (file, line, what is wrong)."""
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def drops_of(df: pd.DataFrame, reason: str) -> list[tuple[str, object]]:
    d = dropped_rows(df)
    d = d[d["reason"] == reason]
    return [(f, None if pd.isna(ln) else int(ln)) for f, ln in zip(d["file"], d["line"])]


def refused_or_counted(call, path: Path, line: int, n_undamaged: int) -> None:
    """What a duplicated / conflicting label row must give: an error naming the file and line, or the
    undamaged number of rows with a drop recorded at that file and line."""
    try:
        df = call()
    except ValueError as e:
        assert f"{path}, line {line}" in str(e), str(e)
        return
    d = dropped_rows(df)
    assert len(df) <= n_undamaged, f"{len(df)} rows (undamaged: {n_undamaged}); nothing dropped: {df.attrs['dropped']}"
    assert ((d["file"] == str(path)) & (d["line"] == line)).any(), df.attrs["dropped"]


# --- Aff-Wild2 / ABAW ----------------------------------------------------------------------------------------

def test_A01_va_columns_swapped_with_their_header_read_the_same_labels(world, w):
    p = ann(w, "VA")
    rows = [ln.split(",") for ln in lines_of(p)]
    write_lines(p, [f"{b},{a}" for a, b in rows])
    assert lines_of(p)[0] == "arousal,valence"
    same_result(read_abaw(w / "affwild2", "VA", "train"), w, read_abaw(world / "affwild2", "VA", "train"), world)


def test_A02_va_header_missing_is_refused_naming_file_and_line(w):
    p = ann(w, "VA")
    set_line(p, 1, "")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "VA", "train"),
                  f"{p}, line 1: VA header must name the columns valence and arousal")


def test_A03_va_first_line_numeric_is_refused_as_no_header(w):
    p = ann(w, "VA")
    write_lines(p, lines_of(p)[1:])
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "VA", "train"),
                  f"{p}, line 1: no header", "every label would move one frame")


def test_A04_au_first_line_numeric_is_refused_as_no_header(w):
    p = ann(w, "AU", "Validation_Set", "104-30-1280x720_left")
    write_lines(p, lines_of(p)[1:])
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "AU", "val"), f"{p}, line 1: no header", "AU1,AU2")


@pytest.mark.parametrize("task", ["VA", "EXPR", "AU"])
def test_A05_crlf_line_ends_read_the_same_labels(world, w, task):
    for p in (w / "affwild2" / "annotations" / f"{task}_Set" / "Training_Set").glob("*.txt"):
        write_lines(p, lines_of(p), end="\r\n")
    assert b"\r\n" in ann(w, task).read_bytes()
    same_result(read_abaw(w / "affwild2", task, "train"), w, read_abaw(world / "affwild2", task, "train"), world)


@pytest.mark.parametrize("task", ["VA", "EXPR", "AU"])
def test_A06_no_final_newline_reads_the_same_labels(world, w, task):
    p = ann(w, task)
    write_lines(p, lines_of(p), final=False)
    assert not p.read_bytes().endswith(b"\n")
    same_result(read_abaw(w / "affwild2", task, "train"), w, read_abaw(world / "affwild2", task, "train"), world)


@pytest.mark.parametrize("task, header", [("VA", "Valence , arousal  "),
                                          ("EXPR", "Neutral ,Anger, Disgust,Fear,Happiness,Sadness,Surprise   "),
                                          ("AU", "AU1 ,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26 ")])
def test_A07_trailing_spaces_in_headers_read_the_same_labels(world, w, task, header):
    set_line(ann(w, task), 1, header)
    same_result(read_abaw(w / "affwild2", task, "train"), w, read_abaw(world / "affwild2", task, "train"), world)


def test_A08_bom_at_the_start_reads_the_same_labels(world, w):
    p = ann(w, "VA")
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    same_result(read_abaw(w / "affwild2", "VA", "train"), w, read_abaw(world / "affwild2", "VA", "train"), world)


@pytest.mark.parametrize("value, what", [
    ("1.7", "label outside the VA label space ([-1, 1] or -5)"),     # A09
    ("nan", "not a finite number"),                                  # A10
    ("-3", "label outside the VA label space ([-1, 1] or -5)"),      # A11
    ("high", "not a number"),                                        # A12
], ids=["A09_1.7", "A10_nan", "A11_-3", "A12_word"])
def test_A09_A12_bad_va_values_are_refused_naming_file_and_line(w, value, what):
    p = ann(w, "VA")
    set_line(p, 41, f"0.1,{value}")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "VA", "train"), f"{p}, line 41: {what}")


def test_A13_decimal_comma_is_refused_naming_the_field_count(w):
    p = ann(w, "VA")
    set_line(p, 7, "0,162,0,015")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "VA", "train"),
                  f"{p}, line 7: expected 2 value(s) (header: valence,arousal), got 4")


def test_A14_blank_line_inside_is_refused_naming_the_line(w):
    p = ann(w, "VA")
    set_line(p, 20, "")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "VA", "train"), f"{p}, line 20: blank line inside")


def test_A15_va_sentinel_is_dropped_and_counted_with_its_line(world, w):
    before = read_abaw(world / "affwild2", "VA", "train")
    p = ann(w, "VA")
    set_line(p, 11, "-5,-5")
    df = read_abaw(w / "affwild2", "VA", "train")
    assert len(df) == len(before) - 1
    assert df.attrs["dropped"]["invalid label (-5)"] == before.attrs["dropped"]["invalid label (-5)"] + 1
    assert (str(p), 11) in drops_of(df, "invalid label (-5)")
    assert not ((df["video"] == V) & (df["frame"] == 10)).any()


def test_A16_expr_9_in_a_7_class_file_is_refused(w):
    p = ann(w, "EXPR")
    set_line(p, 30, "9")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "EXPR", "train"),
                  f"{p}, line 30: label outside the EXPR label space (-1 or 0..6): [9.0]")


def test_A17_expr_9_through_the_multitask_reader_is_refused(w):
    p = ann(w, "EXPR", "Validation_Set", "104-30-1280x720_right")
    set_line(p, 5, "9")
    raises_naming(ValueError, lambda: read_abaw_multitask(w / "affwild2", "val"),
                  f"{p}, line 5: label outside the EXPR label space")


def test_A18_au_value_2_is_refused(w):
    p = ann(w, "AU")
    set_line(p, 3, "0,0,0,0,0,0,2,0,0,0,0,0")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "AU", "train"),
                  f"{p}, line 3: label outside the AU label space (0, 1 or -1)")


def test_A19_another_au_set_in_a_second_file_is_refused_naming_both(w):
    p = ann(w, "AU", video="103-30-640x360")
    set_line(p, 1, "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU27")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "AU", "train"), f"{p}, line 1: AU header",
                  f"{ann(w, 'AU', video='100-30-1280x720_left')}, line 1")


def test_A20_frames_renumbered_from_zero_are_refused_naming_the_folder(w):
    d = frames_of(w)
    names = sorted(os.listdir(d))
    for n in names:                                   # 00001 -> 00000, 00002 -> 00001, ... (in order)
        os.rename(d / n, d / f"{int(n[:5]) - 1:05d}.jpg")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "EXPR", "train"), f"{d}: holds frame 0 (00000.jpg)")


def test_A21_two_files_for_one_frame_are_refused(w):
    d = frames_of(w)
    shutil.copy(d / "00007.jpg", d / "7.jpg")
    raises_naming(ValueError, lambda: read_abaw(w / "affwild2", "VA", "train"), f"{d}: two files for frame 7")


def test_A22_missing_frame_folder_drops_and_counts_every_labelled_line(world, w):
    before = read_abaw(world / "affwild2", "EXPR", "train")
    shutil.rmtree(frames_of(w))
    p = ann(w, "EXPR")
    labelled = [i for i, ln in enumerate(lines_of(p), start=1) if i > 1 and ln != "-1"]
    df = read_abaw(w / "affwild2", "EXPR", "train")
    assert df.attrs["dropped"]["video has no frame folder"] == len(labelled) == (before["video"] == V).sum()
    assert drops_of(df, "video has no frame folder") == [(str(p), i) for i in labelled]
    pd.testing.assert_frame_equal(rel(df, w), rel(before[before["video"] != V].reset_index(drop=True), world))


def test_A23_one_deleted_frame_is_dropped_and_counted(world, w):
    before = read_abaw(world / "affwild2", "VA", "train")
    (frames_of(w) / "00050.jpg").unlink()
    df = read_abaw(w / "affwild2", "VA", "train")
    assert len(df) == len(before) - 1
    assert df.attrs["dropped"]["annotated frame has no image"] == 1
    assert drops_of(df, "annotated frame has no image") == [(str(ann(w, "VA")), 51)]   # frame 50 = line 51


def test_A24_empty_annotation_file_warns_and_is_counted(world, w):
    before = read_abaw(world / "affwild2", "AU", "train")
    p = ann(w, "AU")
    p.write_bytes(b"")
    with pytest.warns(UserWarning, match=re.escape(f"{p}: empty annotation file, skipped")):
        df = read_abaw(w / "affwild2", "AU", "train")
    assert df.attrs["dropped"]["empty annotation file (videos)"] == 1
    assert drops_of(df, "empty annotation file (videos)") == [(str(p), None)]
    assert set(df["video"]) == set(before["video"]) - {V}


def test_A25_one_video_annotated_in_two_splits_is_not_silent(w):
    tr = ann(w, "VA")
    va = ann(w, "VA", "Validation_Set")
    shutil.copy(tr, va)
    for split in ("train", "val"):
        try:
            df = read_abaw(w / "affwild2", "VA", split)
        except ValueError as e:
            assert str(tr) in str(e) and str(va) in str(e)
            continue
        d = dropped_rows(df)
        assert d["file"].isin([str(tr), str(va)]).any(), f"{split}: {df.attrs['dropped']}"


# --- AffectNet, RAF-DB, ExpW ---------------------------------------------------------------------------------

def _affectnet_row(path: Path, line: int, **fields) -> None:
    lines = lines_of(path)
    cols = lines[0].split(",")
    r = lines[line - 1].split(",")
    for k, v in fields.items():
        r[cols.index(k)] = v
    lines[line - 1] = ",".join(r)
    write_lines(path, lines)


def _kept_affectnet_line(df: pd.DataFrame, path: Path) -> int:
    """A line of ``path`` whose row the reader keeps (expression 0-6)."""
    for i, ln in enumerate(lines_of(path)[1:], start=2):
        if ln.split(",")[6] in "0123456":
            return i
    raise AssertionError("no kept row")


@pytest.mark.parametrize("value, reason", [
    ("1.7", "valence/arousal outside [-1, 1] (and not -2)"),      # S01
    ("nan", "valence/arousal missing or not a number"),            # S02
], ids=["S01_1.7", "S02_nan"])
def test_S01_S02_bad_affectnet_valence_is_dropped_and_counted(world, w, value, reason):
    before = read_affectnet(world / "affectnet", "train")
    p = affectnet_csv(w)
    line = _kept_affectnet_line(before, p)
    _affectnet_row(p, line, valence=value)
    df = read_affectnet(w / "affectnet", "train")
    assert len(df) == len(before) - 1
    assert df.attrs["dropped"][reason] == 1
    assert drops_of(df, reason) == [(str(p), line)]


def test_S03_affectnet_valence_minus_2_becomes_the_sentinel(world, w):
    before = read_affectnet(world / "affectnet", "train")
    p = affectnet_csv(w)
    line = _kept_affectnet_line(before, p)
    _affectnet_row(p, line, valence="-2")
    df = read_affectnet(w / "affectnet", "train")
    name = lines_of(p)[line - 1].split(",")[0]
    row = df[df["path"].str.endswith(name)]
    assert len(df) == len(before) and len(row) == 1 and row["valence"].iloc[0] == INVALID_VA
    assert df.attrs["dropped"] == before.attrs["dropped"]


def test_S04_affectnet_class_11_is_refused(w):
    p = affectnet_csv(w)
    _affectnet_row(p, 5, expression="11")
    raises_naming(ValueError, lambda: read_affectnet(w / "affectnet", "train"),
                  f"{p}, line 5: affectnet: label '11' is outside the label space")


def test_S05_affectnet_class_3_5_is_refused(w):
    p = affectnet_csv(w, "validation")
    _affectnet_row(p, 3, expression="3.5")
    raises_naming(ValueError, lambda: read_affectnet(w / "affectnet", "val"), f"{p}, line 3:", "is not an integer")


def test_S06_affectnet_validation_csv_without_header_reads_the_same(world, w):
    p = affectnet_csv(w, "validation")
    write_lines(p, lines_of(p)[1:])
    got = read_affectnet(w / "affectnet", "val")
    want = read_affectnet(world / "affectnet", "val")
    pd.testing.assert_frame_equal(rel(got, w), rel(want, world))
    assert got.attrs["dropped"] == want.attrs["dropped"]
    # the dropped rows are one line earlier (no header line)
    assert list(dropped_rows(got)["line"]) == [ln - 1 for ln in dropped_rows(want)["line"]]


def test_S07_affectnet_row_with_a_missing_field_is_refused(w):
    p = affectnet_csv(w)
    lines = lines_of(p)
    lines[8] = lines[8].rsplit(",", 1)[0]
    write_lines(p, lines)
    raises_naming(ValueError, lambda: read_affectnet(w / "affectnet", "train"), f"{p}, line 9: expected 9 fields")


def test_S08_affectnet_deleted_image_is_dropped_and_counted(world, w):
    before = read_affectnet(world / "affectnet", "train")
    p = affectnet_csv(w)
    line = _kept_affectnet_line(before, p)
    name = lines_of(p)[line - 1].split(",")[0]
    (w / "affectnet" / "Manually_Annotated_Images" / name).unlink()
    df = read_affectnet(w / "affectnet", "train")
    assert len(df) == len(before) - 1
    assert drops_of(df, "image missing") == [(str(p), line)]


def test_S09_affectnet_image_listed_twice_with_two_labels_is_not_silent(world, w):
    before = read_affectnet(world / "affectnet", "train")
    p = affectnet_csv(w)
    line = _kept_affectnet_line(before, p)
    r = lines_of(p)[line - 1].split(",")
    r[6] = "1" if r[6] != "1" else "2"
    write_lines(p, lines_of(p) + [",".join(r)])
    refused_or_counted(lambda: read_affectnet(w / "affectnet", "train"), p, len(lines_of(p)), len(before))


def test_S10_rafdb_compound_label_9_is_refused(w):
    p = rafdb_list(w)
    set_line(p, 4, "train_00004.jpg 9")
    raises_naming(ValueError, lambda: read_rafdb(w / "rafdb", "train"), f"{p}, line 4: label 9", "compound")


def test_S11_rafdb_label_0_is_refused(w):
    p = rafdb_list(w)
    set_line(p, 2, "train_00002.jpg 0")
    raises_naming(ValueError, lambda: read_rafdb(w / "rafdb", "train"),
                  f"{p}, line 2: rafdb: label '0' is outside the label space")


def test_S12_rafdb_duplicated_line_is_not_silent(world, w):
    before = read_rafdb(world / "rafdb", "train")
    p = rafdb_list(w)
    write_lines(p, lines_of(p) + [lines_of(p)[0]])
    refused_or_counted(lambda: read_rafdb(w / "rafdb", "train"), p, len(lines_of(p)), len(before))


def test_S13_rafdb_image_listed_twice_with_two_labels_is_not_silent(world, w):
    before = read_rafdb(world / "rafdb", "train")
    p = rafdb_list(w)
    name, label = lines_of(p)[0].split()
    write_lines(p, lines_of(p) + [f"{name} {int(label) % 7 + 1}"])
    refused_or_counted(lambda: read_rafdb(w / "rafdb", "train"), p, len(lines_of(p)), len(before))


def test_S14_expw_malformed_line_is_refused(w):
    p = expw_list(w)
    set_line(p, 6, "scene_00006.jpg 0 13 17 109 105 0.635")
    raises_naming(ValueError, lambda: read_expw(w / "expw", "train"),
                  f"{p}, line 6: expected 'image_name face_id top left right bottom confidence label'")


def _expw_split_of(p: Path, line: int) -> str:
    assign, _ = expw_splits(ln.split()[0] for ln in lines_of(p))
    return assign[lines_of(p)[line - 1].split()[0]]


def test_S15_expw_duplicate_line_is_dropped_and_counted(world, w):
    p = expw_list(w)
    split = _expw_split_of(p, 1)
    before = read_expw(world / "expw", split)
    write_lines(p, lines_of(p) + [lines_of(p)[0]])
    df = read_expw(w / "expw", split)
    pd.testing.assert_frame_equal(rel(df, w), rel(before, world))
    assert df.attrs["dropped"] == {**before.attrs["dropped"], "duplicate line": 1}
    assert drops_of(df, "duplicate line") == [(str(p), len(lines_of(p)))]


def test_S16_expw_face_with_two_labels_drops_both_lines(world, w):
    p = expw_list(w)
    split = _expw_split_of(p, 2)
    before = read_expw(world / "expw", split)
    parts = lines_of(p)[1].split()
    parts[7] = str((int(parts[7]) + 1) % 7)
    write_lines(p, lines_of(p) + [" ".join(parts)])
    df = read_expw(w / "expw", split)
    assert len(df) == len(before) - 1
    assert drops_of(df, "one face (image, face_id) with conflicting lines") == [(str(p), 2), (str(p), len(lines_of(p)))]


# --- Hume-Reaction -------------------------------------------------------------------------------------------

def _hume_set(p: Path, line: int, col: str, value: str) -> None:
    lines = lines_of(p)
    cols = lines[0].split(",")
    r = lines[line - 1].split(",")
    r[cols.index(col)] = value
    lines[line - 1] = ",".join(r)
    write_lines(p, lines)


@pytest.mark.parametrize("value", ["1.7", "-3"], ids=["H01_1.7", "H02_-3"])
def test_H01_H02_intensity_outside_0_1_is_dropped_and_counted(world, w, value):
    p = hume_info(w)
    _hume_set(p, 3, "Anxiety", value)                  # video 00002, Train
    df = read_hume(w / "hume", "train")
    assert list(df["video"]) == ["00001", "00003", "00004", "00005", "00006"]
    assert df.attrs["dropped"] == {"reaction intensity outside [0, 1]": 1}
    assert drops_of(df, "reaction intensity outside [0, 1]") == [(str(p), 3)]


def test_H03_file_id_without_brackets_reads_the_same(world, w):
    p = hume_info(w)
    write_lines(p, [ln.replace("[", "").replace("]", "") for ln in lines_of(p)])
    same_result(read_hume(w / "hume", "train"), w, read_hume(world / "hume", "train"), world)


def test_H04_frame_10_comes_after_frame_9(world, w):
    d = w / "hume" / "00001"
    names = sorted(os.listdir(d))
    assert len(names) >= 12
    for n in names:
        os.rename(d / n, d / f"frame_{int(n.split('.')[0])}.jpg")
    got = read_hume(w / "hume", "train")
    frames = got["frames"][0]
    assert [Path(f).name for f in frames] == [f"frame_{i}.jpg" for i in range(1, len(names) + 1)]
    # the same images in the same order as the undamaged world's 00001.jpg, 00002.jpg, ...
    want = read_hume(world / "hume", "train")["frames"][0]
    assert [Path(f).read_bytes() for f in frames] == [Path(f).read_bytes() for f in want]


def test_H05_missing_intensity_is_refused_naming_file_line_video(w):
    p = hume_info(w)
    _hume_set(p, 8, "Fear", "")
    raises_naming(ValueError, lambda: read_hume(w / "hume", "val"), f"{p}, line 8: video 00007: missing reaction value(s) ['Fear']")


def test_H06_file_id_listed_twice_drops_the_later_line(world, w):
    p = hume_info(w)
    lines = lines_of(p)
    write_lines(p, lines + [lines[2].replace("0.0444", "0.5")])
    df = read_hume(w / "hume", "train")
    same = read_hume(world / "hume", "train")
    pd.testing.assert_frame_equal(rel(df, w), rel(same, world))
    assert drops_of(df, "File_ID listed twice (later line dropped)") == [(str(p), len(lines) + 1)]


def test_H07_misspelt_split_is_dropped_and_counted(w):
    p = hume_info(w)
    _hume_set(p, 2, "Split", "Trian")
    df = read_hume(w / "hume", "train")
    assert "00001" not in set(df["video"]) and len(df) == 5
    assert drops_of(df, "split 'Trian' is none of Train / Val / Test") == [(str(p), 2)]


def test_H08_emptied_frame_folder_is_dropped_and_counted(w):
    d = w / "hume" / "00009"
    for f in d.iterdir():
        f.unlink()
    df = read_hume(w / "hume", "val")
    assert list(df["video"]) == ["00007", "00008"]
    assert drops_of(df, "video has no frames") == [(str(hume_info(w)), 10)]


# --- loaders -------------------------------------------------------------------------------------------------

def _truncate(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return f"image {path} is a truncated JPEG (no end-of-image marker)"


def _two_videos(root: Path):
    df = read_abaw(root / "affwild2", "EXPR", "train")
    return df[df["video"] == V].reset_index(drop=True), df[df["video"] == "102-30-1920x1080"].reset_index(drop=True)


def test_L01_truncated_frame_is_dropped_counted_and_named_by_frame_dls(w):
    train, valid = _two_videos(w)
    bad = frames_of(w) / "00012.jpg"
    msg = _truncate(bad)
    with pytest.warns(UserWarning) as caught:
        dls = frame_dls(train, valid, targets=("expr",), size=32, bs=16, augment=False, device="cpu")
    said = [str(c.message) for c in caught if "damaged" in str(c.message)]
    assert said == [f"dropped 1 damaged image(s) (1 train) and their rows: {msg} — all of them in dls.damaged"]
    assert dls.damaged == {"train": [(str(bad), msg)], "valid": []}
    assert len(dls.train.dataset) == len(train) - 1 and len(dls.valid.dataset) == len(valid)
    kept = train[train["path"] != str(bad)]
    torch.testing.assert_close(dls.train.dataset.labels["expr"], torch.tensor(kept["expr"].to_numpy()))


def test_L02_truncated_frame_given_to_load_image_is_an_error_naming_it(w):
    bad = frames_of(w) / "00003.jpg"
    msg = _truncate(bad)
    with pytest.raises(ValueError) as e:
        load_image(bad, 32)
    assert str(e.value) == msg


def test_L03_text_file_named_jpg_given_to_load_image_is_an_error_naming_it(w):
    bad = frames_of(w) / "00004.jpg"
    bad.write_text("not an image\n")
    raises_naming(ValueError, lambda: load_image(bad, 32), f"image {bad} could not be decoded")


def test_L04_all_validation_images_damaged_is_an_error(w):
    train, valid = _two_videos(w)
    valid = valid.iloc[:3].reset_index(drop=True)
    msgs = [_truncate(Path(p)) for p in valid["path"]]
    raises_naming(ValueError, lambda: frame_dls(train, valid, targets=("expr",), size=32, bs=8, augment=False,
                                                device="cpu"),
                  "all 3 valid image(s) are damaged, e.g. " + msgs[0])


def test_L05_truncated_hume_frame_leaves_its_video_in_video_dls(w):
    tr, va = read_hume(w / "hume", "train"), read_hume(w / "hume", "val")
    bad = Path(tr["frames"][1][4])
    msg = _truncate(bad)
    with pytest.warns(UserWarning, match=re.escape(msg)):
        dls = video_dls(tr, va, t=64, size=16, bs=8, augment=False, device="cpu")
    assert dls.damaged == {"train": [(str(bad), msg)], "valid": []}
    _x, lengths, y = dls.train.dataset.get(np.arange(len(tr)))
    assert lengths.tolist() == [min(n, 64) - (i == 1) for i, n in enumerate(tr["length"])]
    torch.testing.assert_close(y["intensity"], torch.tensor(tr[list(REACTIONS)].to_numpy(np.float32)))


def _valid_pixels(train, valid):
    dls = frame_dls(train, valid, targets=("expr",), size=32, bs=len(valid), augment=False, device="cpu")
    x, _ = next(iter(dls.valid))
    return x


def test_L06_image_replaced_under_the_same_name_serves_the_new_pixels(w):
    train, valid = _two_videos(w)
    valid = valid.iloc[:4].reset_index(drop=True)
    first = _valid_pixels(train, valid)
    target, other = Path(valid["path"][2]), Path(train["path"][60])
    tmp = target.with_suffix(".new")
    shutil.copy(other, tmp)
    os.replace(tmp, target)                         # a different face under the same name
    second = _valid_pixels(train, valid)
    torch.testing.assert_close(second[2], load_image(other, 32), atol=1e-5, rtol=0)
    assert not torch.allclose(second[2], first[2])
    torch.testing.assert_close(second[[0, 1, 3]], first[[0, 1, 3]])


def test_L07_image_rewritten_in_place_with_mtime_restored_serves_the_new_pixels(w):
    train, valid = _two_videos(w)
    valid = valid.iloc[:4].reset_index(drop=True)
    first = _valid_pixels(train, valid)
    target = Path(valid["path"][2])
    data = bytearray(target.read_bytes())
    st = target.stat()
    import cv2
    img = cv2.imread(str(target))
    for q in range(95, 20, -1):                     # new pixels (the face mirrored) padded to the old byte size
        _ok, enc = cv2.imencode(".jpg", img[:, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if len(enc) <= len(data) - 4:
            break
    enc = enc.tobytes()
    pad = len(data) - len(enc)
    new = enc[:2] + b"\xff\xfe" + (pad - 2).to_bytes(2, "big") + b"\0" * (pad - 4) + enc[2:]   # a COM segment
    assert len(new) == len(data)
    with open(target, "r+b") as f:                  # in place: same inode
        f.write(new)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns, target.stat().st_ino) == \
        (st.st_size, st.st_mtime_ns, st.st_ino)
    assert not torch.allclose(load_image(target, 32), first[2], atol=0.05)
    second = _valid_pixels(train, valid)
    torch.testing.assert_close(second[2], load_image(target, 32), atol=1e-5, rtol=0)


# --- roots ---------------------------------------------------------------------------------------------------

READERS = {
    "abaw": lambda r: read_abaw(r, "VA", "train"),
    "abaw_multitask": lambda r: read_abaw_multitask(r, "train"),
    "affectnet": lambda r: read_affectnet(r, "train"),
    "rafdb": lambda r: read_rafdb(r, "train"),
    "expw": lambda r: read_expw(r, "train"),
    "hume": lambda r: read_hume(r, "train"),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_R01_empty_root_is_file_not_found_naming_it(tmp_path, reader):
    root = tmp_path / "empty"
    root.mkdir()
    raises_naming(FileNotFoundError, lambda: READERS[reader](root), str(root))


@pytest.mark.parametrize("reader", list(READERS))
def test_R02_root_that_is_a_file_is_file_not_found_naming_it(w, reader):
    root = hume_info(w)
    raises_naming(FileNotFoundError, lambda: READERS[reader](root), str(root))


# --- weights -------------------------------------------------------------------------------------------------

def test_W01_weight_pickle_of_unrelated_names_is_refused_with_counts(tmp_path):
    from affectlab.models.backbones import Backbone, WeightMismatchError, load_vggface2

    model = Backbone("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "vgg16_imagenet.pkl"
    path.write_bytes(pickle.dumps({f"features.{i}.weight": np.ones((3, 3), np.float32) for i in range(7)}, protocol=2))
    raises_naming(WeightMismatchError, lambda: load_vggface2(model, path),
                  f"{path}: not weights for this model — vgg16_imagenet.pkl: matched 0 of the model's 100 tensors "
                  "(0%); 100 missing, 7 unexpected, 0 with a different shape", "'features.0.weight'")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_W02_weight_file_that_is_not_a_pickle_is_refused_naming_it(tmp_path):
    from affectlab.models.backbones import Backbone, load_vggface2

    path = tmp_path / "resnet50_ft_weight.pkl"
    path.write_text("<html>404 Not Found</html>\n")
    raises_naming(ValueError, lambda: load_vggface2(Backbone("resnet18"), path),
                  f"{path}: not a readable pickle of numpy arrays")


# --- the course runner ---------------------------------------------------------------------------------------

@pytest.fixture
def chapters(tmp_path, monkeypatch):
    import nbformat
    import papermill as pm

    from affectlab import course

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for name in ("00_first", "01_second"):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell('profile = "quick"\nmetrics_dir = None\nseed = 0')
        cell.metadata["tags"] = ["parameters"]
        nb.cells = [cell, nbformat.v4.new_code_cell("print(seed)")]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    calls = []
    monkeypatch.setattr(pm, "execute_notebook", lambda src, dst, parameters=None, **kw: calls.append(parameters))
    monkeypatch.setattr(course, "_relative_paths", lambda *a, **k: None)
    return nbs, calls


@pytest.mark.parametrize("argv, said", [
    (["-p", "sede", "7"], ("error: parameter 'sede' (did you mean 'seed'?) is not declared by any selected "
                           "chapter (00_first, 01_second); they declare: metrics_dir, profile, seed")),      # C01
    (["-p", "seed", "abc"], "error: parameter 'seed' of 00_first must be an integer (its default is 0), got 'abc'"),  # C02
    (["-p", "seed", "1", "-p", "seed", "2"], "error: parameter 'seed' given more than once with -p"),        # C03
], ids=["C01_sede", "C02_seed_abc", "C03_seed_twice"])
def test_C01_C03_bad_runner_parameters_are_refused_before_anything_runs(chapters, tmp_path, capsys, argv, said):
    from affectlab import course

    nbs, calls = chapters
    out = tmp_path / "run"
    rc = course.main(["run", "--notebooks", str(nbs), "--out", str(out), "--no-report", *argv])
    assert rc == 2
    assert capsys.readouterr().err.strip() == said
    assert calls == [] and not out.exists()


def test_C00_runner_passes_a_good_seed(chapters, tmp_path, capsys):
    """The control for C01-C03: the same runner with -p seed 7 runs both chapters with seed 7."""
    from affectlab import course

    nbs, calls = chapters
    rc = course.main(["run", "--notebooks", str(nbs), "--out", str(tmp_path / "run"), "--no-report", "-p", "seed", "7"])
    assert rc == 0 and [c["seed"] for c in calls] == [7, 7]
