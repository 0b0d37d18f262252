"""Hume-Vidmimic2 (emotional mimicry intensity, 6th and 8th ABAW): the reader on release-shaped trees (the
split CSVs as the public repositories read them: ``Filename`` and the six intensities; a folder of face frames
per video), its drops and refusals; the synthetic world's ``vidmimic`` corpus (labels rated from each clip, the
course world's files untouched); the loaders and the metric following the data set's six targets."""
import json
import shutil

import numpy as np
import pytest

from affectlab.data import synth
from affectlab.data.hume import read_hume
from affectlab.data.mimicry import find_release, read_videos, read_vidmimic, video_dataset
from affectlab.data.report import dropped_rows
from affectlab.labels import MIMICRY_EMOTIONS, REACTIONS
from affectlab.metrics import mimicry_pearson, reaction_pearson, reaction_pearson_metric

from data_fixtures import hume, jpg

HEADER = "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy"


def release(root, train_rows, valid_rows=(("9", [0.5] * 6),), frames=None, frame_dir="face_images",
            names=lambda i: f"{i:05d}.jpg", header=HEADER):
    """A Hume-Vidmimic2 tree: ``root/{train,valid}_split.csv`` (rows: (Filename text, 6 values or raw text)),
    ``root/<frame_dir>/<5-digit id>/`` with ``frames[id]`` frames (default 3) named by ``names(i)``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train_split.csv", train_rows), ("valid_split.csv", valid_rows)):
        lines = [header] + [f"{vid}," + (vals if isinstance(vals, str) else ",".join(map(str, vals)))
                            for vid, vals in rows]
        (root / name).write_text("\n".join(lines) + "\n")
        for vid, _ in rows:
            stem = vid.split(".")[0].strip()
            folder = stem.zfill(5) if stem.isdigit() else stem
            for i in range((frames or {}).get(folder, 3)):
                jpg(root / frame_dir / folder / names(i))
    return root


def test_reads_the_release_as_the_public_repositories_do(tmp_path):
    """Skyy93/CVPR2024_abaw, RamseyZhu/ABAW_8th_EMI: data/train_split.csv, Filename an integer whose folder is
    its five-digit form, face_images/<id>/ with frames 0.jpg, 1.jpg, ... (10.jpg after 9.jpg)."""
    root = release(tmp_path / "data", [("1", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), ("2", [0, 0, 0, 0, 0, 1])],
                   frames={"00001": 12}, names=lambda i: f"{i}.jpg")
    tr = read_vidmimic(tmp_path, "train")                     # found under root/data
    assert tr["video"].tolist() == ["00001", "00002"] and tr["length"].tolist() == [12, 3]
    assert [p.rsplit("/", 1)[1] for p in tr["frames"][0]] == [f"{i}.jpg" for i in range(12)]
    assert list(tr.columns) == ["video", "frames", "length", *MIMICRY_EMOTIONS]
    assert tr[list(MIMICRY_EMOTIONS)].iloc[0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert tr.attrs["targets"] == MIMICRY_EMOTIONS and tr.attrs["dataset"] == "Hume-Vidmimic2"
    assert tr.attrs["dropped"] == {}
    assert read_vidmimic(root, "valid")["video"].tolist() == ["00009"]
    assert find_release(tmp_path) == root and video_dataset(tmp_path) == "Hume-Vidmimic2"
    assert read_videos(tmp_path, "val").attrs["targets"] == MIMICRY_EMOTIONS


def test_ids_headers_and_frame_folders_as_they_come(tmp_path):
    """Zero-padded or plain ids, a video extension, header names in other case and spelling, and the frames
    command's output (``cropped_aligned/<id>/00001.jpg``) beside the release's folder."""
    header = "filename,admiration,AMUSEMENT,determination,Empathic_Pain,excitement,joy"
    root = release(tmp_path / "Hume-Vidmimic2", [("00003", [0.2] * 6), ("4.mp4", [0.3] * 6)], header=header,
                   frame_dir="cropped_aligned", names=lambda i: f"{i + 1:05d}.jpg")
    tr = read_vidmimic(tmp_path, "train")
    assert tr["video"].tolist() == ["00003", "00004"]
    assert all("cropped_aligned" in p for p in tr["frames"][0])
    other = tmp_path / "my_frames"
    for i in range(5):
        jpg(other / "00003" / f"{i + 1:05d}.jpg")
    given = read_vidmimic(root, "train", frames=other)       # only that folder: 00004 has no frames there
    assert given["video"].tolist() == ["00003"] and given["length"].tolist() == [5]
    assert given.attrs["dropped"] == {"video has no frames": 1} and given.attrs["frames_dir"] == str(other)
    for i in range(4):                                      # the release's own frames of both videos too
        jpg(root / "face_images" / "00003" / f"{i}.jpg"), jpg(root / "face_images" / "00004" / f"{i}.jpg")
    shutil.rmtree(root / "cropped_aligned" / "00004")       # the frames command found no face in 00004
    mixed = read_vidmimic(root, "train")                    # one source: 00004 dropped, not filled from face_images
    assert mixed["video"].tolist() == ["00003"] and mixed.attrs["frames_dir"] == str(root / "cropped_aligned")
    assert mixed.attrs["dropped"] == {"video has no frames": 1}


def test_out_of_range_repeated_and_frameless_videos_are_dropped_and_counted(tmp_path):
    root = release(tmp_path, [("1", [0.1] * 6), ("2", [0.1, 1.2, 0.1, 0.1, 0.1, 0.1]), ("1", [0.2] * 6),
                              ("3", [0.3] * 6), ("4", [-0.01, 0, 0, 0, 0, 0])], frames={"00003": 0})
    tr = read_vidmimic(root, "train")
    assert tr["video"].tolist() == ["00001"]
    assert tr.attrs["dropped"] == {"intensity outside [0, 1]": 2, "Filename listed twice (later line dropped)": 1,
                                   "video has no frames": 1}
    rows = dropped_rows(tr)
    assert sorted(rows["line"].tolist()) == [3, 4, 5, 6] and set(rows["file"]) == {str(root / "train_split.csv")}


@pytest.mark.parametrize("values, message", [
    ("0.1,,0.1,0.1,0.1,0.1", r"train_split.csv, line 2: video 00007: missing intensity value\(s\) \['Amusement'\]"),
    ("0.1,nan,0.1,0.1,0.1,0.1", r"line 2: video 00007: missing intensity value\(s\) \['Amusement'\]"),
    ("0.1,0.1,high,0.1,0.1,0.1", r"line 2: video 00007: non-numeric intensity Determination='high'"),
    ("0.1,0.1,0.1", r"train_split.csv, line 2: malformed CSV \(expected 7 fields, got 4\)"),
])
def test_a_label_that_cannot_be_read_is_an_error_naming_file_line_and_video(tmp_path, values, message):
    release(tmp_path, [("00007", values)])
    with pytest.raises(ValueError, match=message):
        read_vidmimic(tmp_path, "train")


def test_missing_files_columns_and_usable_rows(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Hume-Vidmimic2 split files"):
        read_vidmimic(tmp_path, "train")
    release(tmp_path / "a", [("1", [0.1] * 6)], header=HEADER + ",Extra")
    with pytest.raises(ValueError, match="malformed CSV"):
        read_vidmimic(tmp_path / "a", "train")
    (tmp_path / "b").mkdir()
    five = "Filename,Admiration,Amusement,Determination,Excitement,Joy\n1,0,0,0,0,0\n"   # no Empathic Pain
    (tmp_path / "b" / "train_split.csv").write_text(five)
    with pytest.raises(FileNotFoundError, match="no Hume-Vidmimic2 split files"):   # a CSV of other columns
        read_vidmimic(tmp_path / "b", "train")
    root = release(tmp_path / "c", [("1", [0.1] * 6)], frames={"00001": 0})
    with pytest.raises(ValueError, match=r"no usable Hume-Vidmimic2 train videos.*video has no frames: 1"):
        read_vidmimic(root, "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        read_vidmimic(root, "test")


def test_the_data_set_under_a_root_is_told_apart_never_guessed(tmp_path):
    hume(tmp_path / "both" / "hume", [("00001", "Train", None)])
    release(tmp_path / "both" / "vidmimic", [("1", [0.1] * 6)])
    with pytest.raises(ValueError, match="holds both Hume-Reaction .* and Hume-Vidmimic2"):
        video_dataset(tmp_path / "both")
    assert video_dataset(tmp_path / "both" / "hume") == "Hume-Reaction"
    assert read_videos(tmp_path / "both" / "hume", "train").attrs["targets"] == REACTIONS
    with pytest.raises(FileNotFoundError, match="neither Hume-Reaction"):
        video_dataset(tmp_path / "none")


def test_loaders_and_metric_follow_the_data_sets_targets(tmp_path):
    from affectlab.data.loaders import video_dls

    root = release(tmp_path, [(str(i), [i / 10] * 6) for i in range(1, 5)], [("9", [0.5] * 6), ("8", [0.2] * 6)])
    tr, va = read_vidmimic(root, "train"), read_vidmimic(root, "val")
    dls = video_dls(tr, va, t=4, size=16, bs=2, device="cpu")
    assert dls.targets == MIMICRY_EMOTIONS
    x, lengths, y = dls.valid.one_batch()
    assert x.shape == (2, 4, 3, 16, 16) and y["intensity"].shape == (2, 6)
    hu = read_hume(hume(tmp_path / "h", [("00001", "Train", None), ("00002", "Val", None)]), "train")
    with pytest.raises(KeyError, match="needs column"):             # 7 reactions asked of a mimicry frame
        video_dls(tr, va, t=4, size=16, bs=2, device="cpu", targets=REACTIONS)
    assert hu.attrs["targets"] == REACTIONS
    rng = np.random.default_rng(0)
    t, p = rng.uniform(size=(20, 6)), rng.uniform(size=(20, 6))
    assert mimicry_pearson(t, p) == pytest.approx(np.mean([np.corrcoef(t[:, k], p[:, k])[0, 1] for k in range(6)]))
    with pytest.raises(ValueError):
        reaction_pearson(t, p)                                        # 6 columns are not Hume-Reaction's 7
    metric = reaction_pearson_metric(targets=MIMICRY_EMOTIONS)
    assert metric.fn(t, p) == pytest.approx(mimicry_pearson(t, p))


# --- the synthetic world's Hume-Vidmimic2 ----------------------------------------------------------------

@pytest.fixture(scope="module")
def mimicry_world(tmp_path_factory):
    return synth.make_world(tmp_path_factory.mktemp("world") / "tiny-vidmimic", preset="tiny", seed=0,
                            progress=False, corpora=("vidmimic",))


def test_the_world_writes_the_release_layout_with_labels_rated_from_each_clip(mimicry_world):
    manifest = json.loads((mimicry_world / "manifest.json").read_text())
    n_train, n_val = synth.MIMICRY_PRESETS["tiny"]["videos"]
    assert manifest["corpora"] == ["vidmimic"] and manifest["counts"]["vidmimic_videos"] == n_train + n_val
    assert sorted(p.name for p in mimicry_world.iterdir()) == ["manifest.json", "vidmimic"]
    assert sorted(p.name for p in (mimicry_world / "vidmimic").iterdir()) == \
        ["face_images", "train_split.csv", "valid_split.csv"]
    assert (mimicry_world / "vidmimic" / "train_split.csv").read_text().splitlines()[:2][0] == HEADER
    assert video_dataset(mimicry_world) == "Hume-Vidmimic2"
    data = {s: read_vidmimic(mimicry_world, s).set_index("video") for s in ("train", "val")}
    assert (len(data["train"]), len(data["val"])) == (n_train, n_val)
    jobs = synth._plan_mimicry(synth.MIMICRY_PRESETS["tiny"], dict(synth.KNOBS), 0, "/nonexistent")
    for job in jobs:
        _, _, sim = synth._hume_sim(job)
        sig = synth.mimicry_signals(sim)
        row = data[job["split"]].loc[job["video"]]
        assert row["length"] == job["length"]
        for e in MIMICRY_EMOTIONS:     # the self-report noise is N(0, 0.04), clipped to [0, 1]
            rated = np.clip(synth.peak_end(sig[e]), 0, 1)
            assert abs(row[e] - rated) < 5 * synth.HUME_SELF_REPORT_NOISE, (job["video"], e)
    values = np.concatenate([d[list(MIMICRY_EMOTIONS)].to_numpy() for d in data.values()])
    assert ((values >= 0) & (values <= 1)).all() and (values.max(0) > 0.2).sum() >= 4   # most emotions occur


def test_the_course_world_is_untouched_by_the_option(tiny_world):
    """Without ``vidmimic`` the manifest records no new key and the tiny world holds the files it always held
    (its content hash before Hume-Vidmimic2 existed)."""
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    assert "corpora" not in manifest and "vidmimic_settings" not in manifest
    assert not (tiny_world / "vidmimic").exists() and "vidmimic_videos" not in manifest["counts"]
    assert manifest["content_hash"] == "5d9190dd0b79ee9cd95512125ec66c0e635b87bcf16402145964ca31e018f09d"
    with pytest.raises(ValueError, match="name one or more of affwild2, hume, static, vidmimic"):
        synth.make_world(tiny_world.parent / "bad", preset="tiny", corpora=("mimic",))


def test_mimicry_signals_carry_each_emotion_by_its_expression():
    n = 10
    sim = {"env": np.full(n, 0.8), "cls": np.zeros(n, int), "va": np.zeros((n, 2)), "aus": np.zeros((n, 17))}
    for name, carried in (("Happiness", {"Admiration", "Amusement", "Joy"}), ("Anger", {"Determination"}),
                          ("Surprise", {"Excitement"}), ("Fear", set())):
        sim["cls"][:] = synth.EXPRESSIONS.index(name)
        sig = synth.mimicry_signals(sim)
        assert set(sig) == set(MIMICRY_EMOTIONS)
        assert {e for e, v in sig.items() if v.max() > 0} == carried, name
    sim["va"][:, 1] = 0.9                       # a laugh: amusement, hardly admiration
    sim["cls"][:] = synth.EXPRESSIONS.index("Happiness")
    sig = synth.mimicry_signals(sim)
    assert sig["Amusement"].max() > 0.7 > 0.1 > sig["Admiration"].max()
