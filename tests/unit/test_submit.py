"""Submission files (``affectlab.submit``): sample files recreated by hand from the formats the release's
sample files and public ABAW entries show (never by our writer) pass ``--check``; planted errors are named
with their file and line and exit 1; the writer fills face-less frames from the nearest predicted frame,
counts them, and its own output passes ``--check``."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from affectlab import submit
from affectlab.labels import AUS_ABAW, AUS_ABAW2020, EXPRESSIONS, EXPRESSIONS_8, REACTIONS

# Two test videos as Aff-Wild2 names them (one of a two-person video), with their frame counts.
VIDEOS = {"10-60-1280x720_left": 6, "video92": 4}
MIMICRY = ["Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy"]


def _list(tmp_path, names, name="Valence_Arousal_Estimation_Challenge_test_set_release.txt"):
    p = tmp_path / "names_of_videos_in_each_test_set" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(names) + "\n")
    return p


def _row_values(track, i):
    """A valid row's values of frame ``i`` as the formats write them (VA 3 decimals, a class index, AU 0/1)."""
    if track == "va":
        return [f"{np.sin(i) * 0.8:.3f}", f"{np.cos(i) * 0.5:.3f}"]
    if track == "expr":
        return [str(i % 7)]
    return [str((i + j) % 2) for j in range(12)]


def sample_single(path, track, header_names, videos=VIDEOS, n_aus=12):
    """The 5th ABAW-on single file: ``image_location,<names>`` then ``video/00001.jpg,<values>`` per frame."""
    lines = [",".join(["image_location", *header_names])]
    for v, n in videos.items():
        for i in range(1, n + 1):
            lines.append(",".join([f"{v}/{i:05d}.jpg", *_row_values(track, i)[:n_aus if track == "au" else None]]))
    path.write_text("\n".join(lines) + "\n")
    return path


def sample_folder(folder, track, header_names, videos=VIDEOS, n_aus=12):
    """The 1st-3rd ABAW folder of ``<video>.txt``: header of the names, then one line per frame, no key."""
    folder.mkdir(parents=True, exist_ok=True)
    for v, n in videos.items():
        rows = [",".join(_row_values(track, i)[:n_aus if track == "au" else None]) for i in range(1, n + 1)]
        (folder / f"{v}.txt").write_text("\n".join([",".join(header_names), *rows]) + "\n")
    return folder


def _check(args, capsys):
    code = submit.main(args)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


# --- recreated samples pass ----------------------------------------------------------------------------------

SINGLE = [  # edition, track, header names (5th ABAW on: one file)
    ("6th", "va", ["valence", "arousal"]),
    ("6th", "expr", list(EXPRESSIONS_8)),
    ("6th", "au", list(AUS_ABAW)),
    ("5th", "expr", list(EXPRESSIONS_8)),
    ("2025", "va", ["valence", "arousal"]),
]
FOLDER = [  # 1st-3rd ABAW: per-video files
    ("1st", "va", ["valence", "arousal"], 12),
    ("1", "expr", list(EXPRESSIONS), 12),
    ("2020", "au", list(AUS_ABAW2020), 8),
    ("2nd", "au", list(AUS_ABAW), 12),
    ("3rd", "expr", list(EXPRESSIONS_8), 12),
]


@pytest.mark.parametrize("edition,track,names", SINGLE)
def test_recreated_single_file_samples_pass_check(edition, track, names, tmp_path, capsys):
    lst = _list(tmp_path, VIDEOS)
    f = sample_single(tmp_path / "predictions.txt", track, names)
    counts = tmp_path / "counts.csv"
    counts.write_text("video,frames\n" + "".join(f"{v},{n}\n" for v, n in VIDEOS.items()))
    code, out = _check(["--edition", edition, "--track", track, "--test-list", str(lst), "--frame-counts",
                        str(counts), "--check", str(f)], capsys)
    assert code == 0, out
    assert f"OK, {sum(VIDEOS.values())} rows" in out


@pytest.mark.parametrize("edition,track,names,n_aus", FOLDER)
def test_recreated_per_video_samples_pass_check(edition, track, names, n_aus, tmp_path, capsys):
    lst = _list(tmp_path, VIDEOS)
    folder = sample_folder(tmp_path / "VA_Set", track, names, n_aus=n_aus)
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps(VIDEOS))
    code, out = _check(["--edition", edition, "--track", track, "--test-list", str(lst), "--frame-counts",
                        str(counts), "--check", str(folder)], capsys)
    assert code == 0, out


def test_recreated_multitask_reaction_and_mimicry_samples_pass_check(tmp_path, capsys):
    # s-Aff-Wild2 (4th / 7th ABAW): the list of sampled images with its header; one row per listed image
    images = ["100-29-1080x1920/00005.jpg", "100-29-1080x1920/00011.jpg", "video5/00002.jpg"]
    lst = tmp_path / "MTL_Challenge_test_set_release.txt"
    lst.write_text("image\n" + "\n".join(images) + "\n")
    mtl = tmp_path / "mtl.txt"
    mtl.write_text("image,valence,arousal,expression,aus\n" + "".join(
        f"{k},0.25,-0.5,{i},{','.join('1' if j == i else '0' for j in range(12))}\n" for i, k in enumerate(images)))
    assert _check(["--edition", "4th", "--track", "mtl", "--test-list", str(lst), "--check", str(mtl)], capsys)[0] == 0
    # Hume-Reaction (5th ABAW): data_info.csv's Test rows; File_ID and the seven intensities
    info = tmp_path / "data_info.csv"
    info.write_text("File_ID,Split," + ",".join(REACTIONS) + "\n[00001],Train," + ",".join(["0.1"] * 7)
                    + "\n[00007],Test,,,,,,,\n[00009],Test,,,,,,,\n")
    rea = tmp_path / "reaction.csv"
    rea.write_text("File_ID," + ",".join(REACTIONS) + "\n[00007]," + ",".join(["0.5"] * 7) + "\n[00009],"
                   + ",".join(["0", "1", "0.25", "0.3", "0.1", "0.9", "0.05"]) + "\n")
    assert _check(["--edition", "5", "--track", "reaction", "--test-list", str(info), "--check", str(rea)],
                  capsys)[0] == 0
    # Hume-Vidmimic2 (6th, 8th ABAW on): Filename and the six intensities
    split = tmp_path / "test_split.csv"
    split.write_text("Filename\n00003\n00012\n")
    mim = tmp_path / "mimicry.csv"
    mim.write_text("Filename," + ",".join(MIMICRY) + "\n3," + ",".join(["0.2"] * 6) + "\n12,"
                   + ",".join(["0.7"] * 6) + "\n")
    assert _check(["--edition", "8th", "--track", "mimicry", "--test-list", str(split), "--check", str(mim)],
                  capsys)[0] == 0


# --- planted errors are named with their line ------------------------------------------------------------------

def _va_file(tmp_path):
    lst = _list(tmp_path, VIDEOS)
    f = sample_single(tmp_path / "predictions.txt", "va", ["valence", "arousal"])
    counts = tmp_path / "counts.csv"
    counts.write_text("video,frames\n" + "".join(f"{v},{n}\n" for v, n in VIDEOS.items()))
    return lst, f, counts, f.read_text().splitlines()


def _plant(kind, lines):
    """(the planted file's lines, the line the first problem must name, a phrase of its message)."""
    lines = list(lines)
    first = "10-60-1280x720_left"
    if kind == "missing frame":             # line 4 (frame 3) deleted: the next line, frame 4, is named
        del lines[3]
        return lines, 4, "missing frame(s) 10-60-1280x720_left/00003.jpg"
    if kind == "extra frame":               # a 7th frame of a 6-frame video, after its 6th (line 7)
        lines.insert(7, f"{first}/00007.jpg,0.1,0.1")
        return lines, 8, "extra frame 10-60-1280x720_left/00007.jpg"
    if kind == "wrong header":
        lines[0] = "image,valence,arousal"
        return lines, 1, "wrong header 'image,valence,arousal'"
    if kind == "out of range":
        lines[2] = f"{first}/00002.jpg,1.5,0.1"
        return lines, 3, "valence 1.5 is out of range [-1, 1]"
    if kind == "wrong line count":          # the last video cut short by its last frame
        return lines[:-1], len(lines), "missing frame(s): video video92 ends at frame 3"
    if kind == "video not listed":
        lines.append("video93/00001.jpg,0,0")
        return lines, len(lines), "extra frame: video 'video93' is not in the test-set list"
    if kind == "not a number":
        lines[5] = f"{first}/00005.jpg,nan,0.1"
        return lines, 6, "valence 'nan' is not a finite number"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing frame", "extra frame", "wrong header", "out of range", "wrong line count",
                                  "video not listed", "not a number"])
def test_planted_errors_are_named_with_their_line(kind, tmp_path, capsys):
    lst, f, counts, lines = _va_file(tmp_path)
    planted, line, phrase = _plant(kind, lines)
    f.write_text("\n".join(planted) + "\n")
    code, out = _check(["--edition", "6", "--track", "va", "--test-list", str(lst), "--frame-counts", str(counts),
                        "--check", str(f)], capsys)
    assert code == 1
    first = out.split("the first:\n", 1)[1].splitlines()[0]
    assert f"{f}, line {line}: " in first and phrase in first, out
    if kind == "wrong line count":
        assert f"wrong line count: {len(lines) - 1} lines, expected {len(lines)}" in out


def test_planted_errors_in_per_video_files_name_file_and_line(tmp_path, capsys):
    lst = _list(tmp_path, VIDEOS)
    folder = sample_folder(tmp_path / "EXPR_Set", "expr", list(EXPRESSIONS))
    counts = tmp_path / "counts.csv"
    counts.write_text("video,frames\n" + "".join(f"{v},{n}\n" for v, n in VIDEOS.items()))
    args = ["--edition", "1st", "--track", "expr", "--test-list", str(lst), "--frame-counts", str(counts), "--check",
            str(folder)]
    left, short = folder / "10-60-1280x720_left.txt", folder / "video92.txt"
    lines = left.read_text().splitlines()
    left.write_text("\n".join(lines[:3] + ["7"] + lines[4:]) + "\n")        # class 7 in a 7-class edition
    short.write_text("\n".join(short.read_text().splitlines()[:-1]) + "\n")  # a frame short
    (folder / "video93.txt").write_text("Neutral\n0\n")
    code, out = _check(args, capsys)
    assert code == 1
    assert f"{left}, line 4: expression 7 is out of range 0-6" in out
    assert f"{short}, line 5: missing frame(s) 4-4" in out and "wrong line count: 4, expected 5" in out
    assert f"{folder / 'video93.txt'}: extra file" in out
    left.write_text("valence,arousal\n" + "0\n" * 6)
    code, out = _check(args, capsys)
    assert code == 1 and f"{left}, line 1: wrong header 'valence,arousal'" in out
    left.unlink()
    code, out = _check(args, capsys)
    assert code == 1 and f"{left}: missing video 10-60-1280x720_left" in out


def test_planted_errors_in_video_level_and_multitask_files(tmp_path, capsys):
    split = tmp_path / "test_split.csv"
    split.write_text("Filename\n00003\n00012\n")
    mim = tmp_path / "mimicry.csv"
    mim.write_text("Filename," + ",".join(MIMICRY) + "\n3," + ",".join(["1.2"] + ["0.2"] * 5) + "\n44,"
                   + ",".join(["0.7"] * 6) + "\n")
    code, out = _check(["--edition", "6", "--track", "mimicry", "--test-list", str(split), "--check", str(mim)],
                       capsys)
    assert code == 1
    assert f"{mim}, line 2: Admiration 1.2 is out of range [0, 1]" in out
    assert f"{mim}, line 3: extra video '44'" in out and f"{mim}, line 4: missing video 00012" in out
    lst = tmp_path / "MTL_Challenge_test_set_release.txt"
    lst.write_text("image\nvideo5/00002.jpg\nvideo5/00009.jpg\n")
    mtl = tmp_path / "mtl.txt"
    mtl.write_text("image,valence,arousal,expression,aus\nvideo5/00002.jpg,0,0,1," + ",".join(["0"] * 12) + "\n")
    code, out = _check(["--edition", "7", "--track", "mtl", "--test-list", str(lst), "--check", str(mtl)], capsys)
    assert code == 1 and f"{mtl}, line 3: missing frame video5/00009.jpg" in out


# --- the writer ---------------------------------------------------------------------------------------------------

def _table(drop=()):
    """Predictions for every frame of VIDEOS but the (video, frame) pairs in ``drop`` (face-less frames)."""
    rows = [(v, i, np.sin(i) * 0.8, np.cos(i) * 0.5, *np.eye(8)[i % 8])
            for v, n in VIDEOS.items() for i in range(1, n + 1) if (v, i) not in drop]
    return pd.DataFrame(rows, columns=["video", "frame", "valence", "arousal", *EXPRESSIONS_8])


def test_writer_fills_face_less_frames_from_the_nearest_and_passes_check(tmp_path, capsys):
    lst = _list(tmp_path, VIDEOS)
    drop = {("10-60-1280x720_left", 1), ("10-60-1280x720_left", 4), ("10-60-1280x720_left", 5), ("video92", 4)}
    out = tmp_path / "sub" / "predictions.txt"
    rep = submit.write_submission(_table(drop), out, "6th", "va", list(VIDEOS), VIDEOS)
    assert rep.rows == sum(VIDEOS.values()) and rep.filled == 4 and rep.predicted == rep.rows - 4
    assert rep.filled_per_video == {"10-60-1280x720_left": 3, "video92": 1} and not rep.empty_videos
    got = pd.read_csv(out)
    want = sample_single(tmp_path / "sample.txt", "va", ["valence", "arousal"])
    assert out.read_text().splitlines()[0] == want.read_text().splitlines()[0]
    assert list(got.image_location) == list(pd.read_csv(want).image_location)    # one row per frame, in order
    left = got[got.image_location.str.startswith("10-60")].reset_index(drop=True)
    v = lambda i: round(np.sin(i) * 0.8, 6)  # noqa: E731
    # frame 1 <- 2, 4 <- 3 (nearer than 6), 5 <- 6 (nearer than 3); video92: 4 <- 3
    assert list(left.valence) == pytest.approx([v(2), v(2), v(3), v(3), v(6), v(6)], abs=1e-6)
    assert got.valence.iloc[-1] == pytest.approx(v(3), abs=1e-6)
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"videos": {k: {"frames": n, "face_less": []} for k, n in VIDEOS.items()}}))
    code, msg = _check(["--edition", "6th", "--track", "va", "--test-list", str(lst), "--frame-counts", str(counts),
                        "--check", str(out)], capsys)
    assert code == 0, msg


@pytest.mark.parametrize("edition,track", [("6", "expr"), ("2", "va"), ("3", "expr"), ("8", "au")])
def test_writer_output_passes_check_in_every_layout(edition, track, tmp_path):
    table = _table({("video92", 2)})
    for j, au in enumerate(AUS_ABAW):
        table[au] = (table.frame + j) % 3 / 2
    out = tmp_path / "out"
    rep = submit.write_submission(table, out, edition, track, list(VIDEOS), VIDEOS)
    fmt = submit.format_of(edition, track)
    assert out.is_dir() == fmt.per_video and rep.filled == 1
    res = submit.check_submission(out, edition, track, list(VIDEOS), VIDEOS)
    assert res.ok, [str(p) for p in res.problems]
    if track == "expr":      # class scores -> the arg-max class; 8 classes from the 3rd ABAW on
        f = out / "10-60-1280x720_left.txt" if fmt.per_video else out
        assert f.read_text().splitlines()[0].endswith("Surprise" if edition == "2" else "Surprise,Other")


def test_writer_names_videos_without_any_prediction_and_clips_values(tmp_path):
    table = _table({("video92", i) for i in range(1, 5)})
    table.loc[0, "valence"] = 1.7
    rep = submit.write_submission(table, tmp_path / "p.txt", "6", "va", list(VIDEOS), VIDEOS)
    assert rep.empty_videos == ["video92"] and rep.filled == 4 and rep.clipped == 1
    got = pd.read_csv(tmp_path / "p.txt")
    assert got.valence.max() == 1 and (got.tail(4)[["valence", "arousal"]] == 0).all().all()
    assert any("no prediction at all" in line for line in rep.lines())


def test_writer_refuses_what_it_cannot_write_right(tmp_path):
    out = tmp_path / "p.txt"
    out.write_text("kept")
    with pytest.raises(submit.SubmitError, match="exists"):
        submit.write_submission(_table(), out, "6", "va", list(VIDEOS), VIDEOS)
    assert out.read_text() == "kept"      # nothing already there is lost
    submit.write_submission(_table(), out, "6", "va", list(VIDEOS), VIDEOS, overwrite=True)
    assert out.read_text().startswith("image_location,valence,arousal\n")
    with pytest.raises(submit.SubmitError, match="reach frame 4, but it has 3 frames"):
        submit.write_submission(_table(), tmp_path / "q.txt", "6", "va", list(VIDEOS), {**VIDEOS, "video92": 3})
    with pytest.raises(submit.SubmitError, match="frame count"):
        submit.write_submission(_table(), tmp_path / "q.txt", "6", "va", list(VIDEOS), None)
    with pytest.raises(submit.SubmitError, match="no column"):
        submit.write_submission(_table().drop(columns="arousal"), tmp_path / "q.txt", "6", "va", list(VIDEOS), VIDEOS)
    shuffled = _table().iloc[::-1].reset_index(drop=True)
    shuffled.loc[3, "arousal"] = np.nan          # the table's line 5, wherever sorting puts the row
    with pytest.raises(submit.SubmitError, match=r"predictions table, line 5: valence/arousal is not a finite"):
        submit.write_submission(shuffled, tmp_path / "q.txt", "6", "va", list(VIDEOS), VIDEOS)
    with pytest.raises(submit.SubmitError, match=r"no column\(s\) \['Other'\] .*a run trained on that edition"):
        submit.write_submission(_table().drop(columns="Other"), tmp_path / "q.txt", "6", "expr", list(VIDEOS), VIDEOS)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(submit.SubmitError, match="empty.csv: not a readable CSV"):
        submit.read_predictions(tmp_path / "empty.csv")
    with pytest.raises(submit.SubmitError, match="no mtl track"):
        submit.format_of("6th", "mtl")
    assert not (tmp_path / "q.txt").exists() and not list(tmp_path.glob(".*part"))


def test_command_writes_from_a_predictions_table_and_video_level_tracks(tmp_path, capsys):
    lst = _list(tmp_path, VIDEOS)
    table = tmp_path / "preds.csv"
    _table({("video92", 1)}).to_csv(table, index=False)
    sample = sample_single(tmp_path / "CVPR_6th_ABAW_Expr_test_set_example.txt", "expr", list(EXPRESSIONS_8))
    code, out = _check(["--edition", "6th", "--track", "expr", "--test-list", str(lst), "--frame-counts",
                        str(sample), "--predictions", str(table), "--out", str(tmp_path / "expr.txt")], capsys)
    assert code == 0, out
    assert "1 filled" in out and "passes --check" in out
    info = tmp_path / "data_info.csv"
    info.write_text("File_ID,Split," + ",".join(REACTIONS) + "\n[00007],Test,,,,,,,\n[00009],Test,,,,,,,\n")
    preds = tmp_path / "reaction.csv"
    pd.DataFrame([["00007", *[0.3] * 7]], columns=["video", *REACTIONS]).to_csv(preds, index=False)
    code, out = _check(["--edition", "5", "--track", "reaction", "--test-list", str(info), "--predictions",
                        str(preds), "--out", str(tmp_path / "r.csv")], capsys)
    assert code == 0, out
    assert (tmp_path / "r.csv").read_text().splitlines()[1:] == ["[00007]," + ",".join(["0.3"] * 7),
                                                                 "[00009]," + ",".join(["0.3"] * 7)]
    assert "1 listed video(s) had no prediction at all" in out


# --- frame counts and lists --------------------------------------------------------------------------------------

def test_frame_counts_from_a_sample_file_a_csv_a_manifest_and_a_video(tmp_path):
    sample = sample_single(tmp_path / "CVPR_6th_ABAW_VA_test_set_example.txt", "va", ["valence", "arousal"])
    assert submit.read_frame_counts(sample) == VIDEOS
    (tmp_path / "c.csv").write_text("video,frames\nv1,12\n")
    assert submit.read_frame_counts(tmp_path / "c.csv") == {"v1": 12}
    (tmp_path / "m.json").write_text(json.dumps([{"video": "v1", "frame_count": 9}]))
    assert submit.read_frame_counts(tmp_path / "m.json") == {"v1": 9}
    # python -m affectlab.frames's manifest.json: a record per video, its decoded frames, its output folders
    manifest = {"videos": [
        {"video": "v1", "status": "done", "frames": 120, "frames_in_header": 121,
         "folders": {"v1_left": {"faces": 100, "faceless": 20, "faceless_frames": [[1, 20]]},
                     "v1_right": {"faces": 120, "faceless": 0, "faceless_frames": []}}},
        {"video": "v4", "status": "done", "frames": 30, "folders": {"v4": {"faces": 30, "faceless": 0}}},
        {"video": "v5", "status": "unreadable", "error": "no readable frames"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert submit.read_frame_counts(tmp_path / "manifest.json") == {"v1": 120, "v1_left": 120, "v1_right": 120,
                                                                     "v4": 30}
    (tmp_path / "bad.csv").write_text("video,frames\nv1,0\n")
    with pytest.raises(submit.SubmitError, match=r"bad.csv, line 2: video 'v1' has frame count"):
        submit.read_frame_counts(tmp_path / "bad.csv")
    cv2 = pytest.importorskip("cv2")
    videos = tmp_path / "videos"
    videos.mkdir()
    w = cv2.VideoWriter(str(videos / "v2.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for i in range(7):
        w.write(np.full((24, 32, 3), i * 30, np.uint8))
    w.release()
    assert submit.frame_counts_from_videos(videos, ["v2_left", "v2"]) == {"v2_left": 7, "v2": 7}
    with pytest.raises(submit.SubmitError, match="no video file for 1"):
        submit.frame_counts_from_videos(videos, ["v3"])


def test_test_lists_and_editions(tmp_path):
    p = _list(tmp_path, ["a", "b", "a"])
    with pytest.raises(submit.SubmitError, match=r"line 3: 'a' is listed twice \(first on line 1\)"):
        submit.read_test_list(p, "va")
    assert submit.parse_edition("sixth").number == 6 and submit.parse_edition(2024).number == 6
    assert submit.parse_edition("10th ABAW").number == 10
    with pytest.raises(submit.SubmitError, match="--edition"):
        submit.parse_edition("2019")
    assert submit.format_of(1, "au").names == tuple(AUS_ABAW2020) and submit.format_of(1, "va").per_video
    assert not submit.format_of(5, "va").per_video and submit.format_of(5, "va").key == "image_location"
