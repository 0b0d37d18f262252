"""``python -m affectlab.frames``: videos rendered here from the synthetic world's drawn faces, with known face
positions and face-less stretches, written with OpenCV's ``VideoWriter`` (MJPG in .avi) and cropped into the
``cropped_aligned`` layout.

How a crop is measured against the truth. Each frame draws the face with ``draw_face`` at a known centre
``c`` and unit ``u`` (pixels per face unit). The face's box in the Haar cascade's terms is a property of the
drawn identity (its hair, brows, eyes move the box the cascade draws): it is taken once per identity, on
clean still renderings at three scales and three places, as an offset ``o`` (in face units) from the drawn
centre and a width ``k`` (in face units). The true box of frame i is then centre ``c_i + o u_i``, width
``k u_i``. The frames command records per frame the box it cropped and the eye angle; ``faces.crop_matrix``
of those is the exact map from the video's pixels to the crop. The centre error is the distance of the true
centre, mapped into the crop, from the crop's centre, over the crop's width; the scale error is the true
width over the cropped box's width, minus 1 (the crop shows the face ``1 / margin`` of its width when 0).
The geometric centre (no identity offset) is printed too.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from affectlab import faces, frames
from affectlab.data.faces_draw import draw_face, random_background, random_identity
from affectlab.labels import au_given_expression

W, H, FPS = 320, 240, 25
UNIT = 0.29 * H   # draw_face: a face unit is 0.29 x the image height at scale 1, centred at (0.5, 0.52) x height


def _draw(img, ident, centre, scale, aus=None, roll=0.0):
    """Draw ``ident`` on the frame ``img`` (in place) with its centre at ``centre`` (pixels), unit ``scale * UNIT``."""
    align = (centre[0] / H - 0.5, centre[1] / H - 0.52, scale)
    return draw_face(img, ident, np.zeros(17) if aus is None else aus, (0.0, 0.0, roll), align)


def _identity(rng, background, base: float, aus: np.ndarray, home: float):
    """The next identity the cascade finds on clean stills, and its box in face units: offset of the box
    centre from the drawn centre, and width (means over 9 stills: the video's 3 scales, each at 3 of the
    video's places, ``home`` and 20 px either side, with 3 of its expressions, ``aus`` x 0, 0.5, 1)."""
    while True:
        ident = random_identity(rng)
        found = []
        for scale in (0.88 * base, base, 1.12 * base):
            for cx, level in ((home - 20, 0.0), (home, 0.5), (home + 20, 1.0)):
                img = _draw(background.copy(), ident, (cx, H * 0.5), scale, level * aus)
                boxes = faces.detect_faces(img)
                if len(boxes) != 1:
                    break
                x, y, w, h = boxes[0]
                u = scale * UNIT
                found.append(((x + w / 2 - cx) / u, (y + h / 2 - H * 0.5) / u, w / u))
            else:
                continue
            break
        if len(found) == 9:
            return ident, np.mean(found, 0)


def render(path: Path, n: int, seed: int, faceless=(), people: int = 1):
    """A video of ``n`` frames: one (or two, side by side) drawn faces moving, zooming, rolling and showing an
    expression over a cluttered background; frames in ``faceless`` (0-based ranges) show the background only.
    Returns per person the truth of each frame: ``(cx, cy, width)`` of the true box, or None."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(random_background(rng, H), (W, H))
    base = 0.5 if people == 1 else 0.46   # two faces of ~75 px (at 0.42, ~60 px, the cascade's box steps reach 10 %)
    # each person shows one expression (its AUs by Du et al.'s table), coming and going
    table = np.array(au_given_expression())
    aus = 0.8 * table[rng.integers(1, len(table), people)]
    homes = [W * 0.5] if people == 1 else [W * 0.26, W * 0.74]
    idents = [_identity(rng, background, base, aus[p], homes[p]) for p in range(people)]
    phase = rng.uniform(0, 2 * np.pi, (people, 5))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    truth = [[] for _ in range(people)]
    for i in range(n):
        img = background.copy()
        empty = any(a <= i < b for a, b in faceless)
        for p, (ident, (ox, oy, k)) in enumerate(idents):
            t = i / FPS
            cx = homes[p] + (30 if people == 1 else 12) * np.sin(2 * np.pi * t / 3 + phase[p, 0])
            cy = H * 0.5 + 12 * np.sin(2 * np.pi * t / 2.3 + phase[p, 1])
            scale = base * (1 + 0.12 * np.sin(2 * np.pi * t / 4 + phase[p, 2]))
            roll = 0.06 * np.sin(2 * np.pi * t / 2.7 + phase[p, 3])
            expr = aus[p] * (0.5 + 0.5 * np.sin(2 * np.pi * t / 1.9 + phase[p, 4]))
            if empty:
                truth[p].append(None)
                continue
            _draw(img, ident, (cx, cy), scale, expr, roll)
            u = scale * UNIT
            truth[p].append((cx + ox * u, cy + oy * u, k * u, cx, cy))
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    return truth


def _boxes(out: Path, folder: str) -> dict[int, tuple]:
    with open(out / frames.STATE / "boxes" / f"{folder}.csv") as fh:
        return {int(r["frame"]): (int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]), float(r["eye_angle"]))
                for r in csv.DictReader(fh)}


def measure(out: Path, folder: str, truth, size: int = 112, margin: float = faces.FACE_MARGIN) -> dict:
    """Found share, centre and scale errors (see the module's docstring) of one output folder."""
    boxes = _boxes(out, folder)
    files = sorted(int(f.stem) for f in (out / folder).glob("*.jpg"))
    assert files == sorted(boxes), "one crop file per recorded box"
    centre, geo, scale = [], [], []
    with_face = [i + 1 for i, t in enumerate(truth) if t is not None]
    for f in with_face:
        if f not in boxes:
            continue
        tx, ty, tw, gx, gy = truth[f - 1]
        x, y, w, h, angle = boxes[f]
        m = faces.crop_matrix((x, y, w, h), angle, size, margin)
        for (px, py), errs in (((tx, ty), centre), ((gx, gy), geo)):
            mapped = m @ np.array([px, py, 1.0])
            errs.append(float(np.hypot(*(mapped - size / 2))) / size)
        scale.append(abs(tw / w - 1))
    faceless = [i + 1 for i, t in enumerate(truth) if t is None]
    return {"found": sum(f in boxes for f in with_face) / len(with_face),
            "false_in_faceless": sum(f in boxes for f in faceless),
            "centre_max": max(centre), "centre_mean": float(np.mean(centre)), "geometric_centre_max": max(geo),
            "scale_max": max(scale), "scale_mean": float(np.mean(scale)), "files": files}


# ------------------------------------------------------------------------------------------------ the tests
FACELESS = {"walk": [(30, 48)], "edges": [(0, 10), (70, 80)], "gap": [(20, 36)]}
N = 80


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """Three rendered videos (one in a sub-folder), a text file named .mp4 and an empty .avi, cropped with two
    worker processes."""
    root = tmp_path_factory.mktemp("frames")
    videos = root / "videos"
    (videos / "batch2").mkdir(parents=True)
    truth = {}
    for seed, (name, gaps) in enumerate(FACELESS.items()):
        where = videos / "batch2" if name == "gap" else videos
        truth[name] = render(where / f"{name}.avi", N, seed, faceless=gaps)[0]
    (videos / "broken.mp4").write_text("this is not a video")
    (videos / "empty.avi").write_bytes(b"")
    (videos / "notes.txt").write_text("not a video: ignored")
    out = root / "cropped_aligned"
    assert frames.main([str(videos), str(out), "--workers", "2", "--no-progress"]) == 0
    return videos, out, truth


def test_crops_follow_the_faces(cropped):
    _, out, truth = cropped
    for name, t in truth.items():
        m = measure(out, name, t)
        print(name, {k: round(v, 4) for k, v in m.items() if k != "files"})
        assert m["found"] >= 0.95, (name, m["found"])
        assert m["centre_max"] <= 0.05, (name, m["centre_max"])
        assert m["scale_max"] <= 0.10, (name, m["scale_max"])
        assert m["false_in_faceless"] == 0, name


def test_layout_and_manifest(cropped):
    videos, out, truth = cropped
    manifest = json.loads((out / frames.MANIFEST).read_text())
    recs = {r["video"]: r for r in manifest["videos"]}
    assert sorted(recs) == ["broken", "edges", "empty", "gap", "walk"]
    for name, t in truth.items():
        rec = recs[name]
        assert rec["status"] == "done" and rec["frames"] == N == rec["frames_in_header"] and rec["people"] == 1
        folder = rec["folders"][name]
        files = sorted(p.name for p in (out / name).iterdir())
        assert all(len(f) == 9 and f.endswith(".jpg") for f in files)      # 00001.jpg: 5 digits, as the release
        assert folder["faces"] == len(files) and folder["faces"] + folder["faceless"] == N
        faceless = {f for a, b in folder["faceless_frames"] for f in range(a, b + 1)}
        assert faceless == {i + 1 for i, x in enumerate(t) if x is None}, name   # at most the misses beside
        assert not faceless & {int(f[:5]) for f in files}
        assert cv2.imread(str(out / name / files[0])).shape == (112, 112, 3)
    assert recs["gap"]["source"] == str(videos / "batch2" / "gap.avi")
    for bad in ("broken", "empty"):
        assert recs[bad]["status"] == "unreadable" and f"{bad}." in recs[bad]["error"]
        assert not (out / bad).exists()
    assert manifest["summary"]["unreadable"] == ["broken", "empty"] and manifest["summary"]["done"] == 3
    assert not list((out / frames.STATE / "partial").iterdir())


def test_a_rerun_skips_finished_videos_and_lists_the_unreadable_again(cropped, capsys):
    videos, out, _ = cropped
    before = {p: p.stat().st_mtime_ns for p in (out / "walk").iterdir()}
    assert frames.main([str(videos), str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "5 videos: 3 finished before, 2 to crop" in err
    assert "unreadable" in err and "broken.mp4" in err and "empty.avi" in err
    assert {p: p.stat().st_mtime_ns for p in (out / "walk").iterdir()} == before
    # other settings into the same folder would mix two framings: refused, naming both
    assert frames.main([str(videos), str(out), "--size", "64", "--no-progress"]) == 1
    assert "other settings" in capsys.readouterr().err


def test_size_option_and_a_folder_not_ours(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    render(videos / "small.avi", 24, 7)
    render(videos / "mine.avi", 8, 8)
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "keep.txt").write_text("a user's own folder")
    man = frames.extract_frames(videos, out, frames.Settings(size=64), progress=False)
    assert cv2.imread(str(next((out / "small").glob("*.jpg")))).shape == (64, 64, 3)
    assert "not written by this command" in man["not_written"]["mine"]
    assert sorted(p.name for p in (out / "mine").iterdir()) == ["keep.txt"]


def test_two_people_give_left_and_right(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    left, right = render(videos / "pair.avi", 40, 11, faceless=[(30, 40)], people=2)
    frames.extract_frames(videos, out, progress=False)
    assert not (out / "pair").exists()
    rec = json.loads((out / frames.MANIFEST).read_text())["videos"][0]
    assert rec["people"] == 2 and set(rec["folders"]) == {"pair_left", "pair_right"}
    for name, t in (("pair_left", left), ("pair_right", right)):
        m = measure(out, name, t)
        print(name, {k: round(v, 4) for k, v in m.items() if k != "files"})
        assert m["found"] >= 0.95 and m["centre_max"] <= 0.05 and m["scale_max"] <= 0.10, (name, m)
        assert m["false_in_faceless"] == 0


@pytest.mark.parametrize("sig, workers", [(signal.SIGKILL, 1), (signal.SIGTERM, 2)])
def test_a_run_killed_mid_video_leaves_no_half_folder_and_a_rerun_completes(tmp_path, sig, workers):
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    truth = {name: render(videos / f"{name}.avi", n, seed, faceless=[(16, 24)])[0]
             for seed, (name, n) in enumerate((("a", 48), ("b", 24)))}
    env = {**os.environ, "PYTHONPATH": str(Path(frames.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "affectlab.frames", str(videos), str(out), "--no-progress",
                             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = out / frames.STATE / "partial" / "a"
    deadline = time.time() + 90
    while not (partial.is_dir() and len(list(partial.glob("*.jpg"))) >= 10):   # video a a third of the way in
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()
        time.sleep(0.02)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(sig)
    proc.wait(30)
    proc.stderr.close()
    deadline = time.time() + 5   # the workers end with their run: none writes behind the re-run's back
    while any(Path(f"/proc/{c}").exists() and Path(f"/proc/{c}/stat").read_text().split()[2] != "Z"
              for c in children):
        assert time.time() < deadline, "a worker outlived its killed run"
        time.sleep(0.05)
    assert not (out / "a").exists()                                          # no half-written folder
    assert len(list(partial.glob("*.jpg"))) >= 10                            # the half lay aside
    if (out / "b").exists():   # with two workers the short video may have finished: whole, then
        rec = json.loads((out / frames.STATE / "videos" / "b.json").read_text())
        assert len(list((out / "b").glob("*.jpg"))) == rec["folders"]["b"]["faces"]
    man = frames.extract_frames(videos, out, progress=False)
    assert man["summary"]["done"] == 2 and not list((out / frames.STATE / "partial").iterdir())
    for name, t in truth.items():
        m = measure(out, name, t)
        assert m["found"] >= 0.95 and m["false_in_faceless"] == 0 and m["files"][-1] == max(
            i + 1 for i, x in enumerate(t) if x), (name, m)


def test_find_videos(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    (tmp_path / "b" / "x.AVI").write_bytes(b"")
    with pytest.raises(ValueError, match=r"two videos named 'x'.*rename one"):
        frames.find_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.*no such file or folder"):
        frames.find_videos(tmp_path / "missing")
    (tmp_path / "c").mkdir()
    with pytest.raises(FileNotFoundError, match="no video in"):
        frames.find_videos(tmp_path / "c")
    assert frames.find_videos(tmp_path / "a" / "x.mp4") == [tmp_path / "a" / "x.mp4"]


def test_the_aff_wild2_reader_reads_the_folders(cropped):
    """OUT as the release's cropped_aligned beside a 1st-ABAW annotation tree: line i+1 labels frame i, so
    every crop is paired with its own frame's label and every face-less frame is dropped as having no image."""
    from affectlab.data.abaw import read_abaw

    _, out, truth = cropped
    labels = out.parent / "annotations" / "VA_Set" / "Training_Set"
    labels.mkdir(parents=True)
    for name in truth:   # frame f's valence is f / 1000: the pairing can be checked row by row
        (labels / f"{name}.txt").write_text("valence,arousal\n" + "".join(f"{f / 1000},0.0\n" for f in range(1, N + 1)))
    df = read_abaw(out.parent, "VA", "train")
    manifest = {r["video"]: r for r in json.loads((out / frames.MANIFEST).read_text())["videos"]}
    for name in truth:
        rows = df[df.video == name]
        assert len(rows) == manifest[name]["folders"][name]["faces"]
        assert np.allclose(rows.valence, rows.frame / 1000, atol=1e-6)
        assert all(Path(p) == out / name / f"{f:05d}.jpg" for p, f in zip(rows.path, rows.frame))
    faceless = sum(manifest[n]["folders"][n]["faceless"] for n in truth)
    assert df.attrs["dropped"] == {"annotated frame has no image": faceless}


def test_one_run_at_a_time_per_folder(tmp_path):
    (tmp_path / "v.avi").write_bytes(b"")
    state = tmp_path / "out" / frames.STATE
    state.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(state / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match="another run is writing into"):
            frames.extract_frames(tmp_path / "v.avi", tmp_path / "out", progress=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert frames.extract_frames(tmp_path / "v.avi", tmp_path / "out", progress=False)["summary"]["unreadable"] == ["v"]
