import json
import time

import numpy as np
import pandas as pd
import pytest

from affectlab.data import synth
from affectlab.data.abaw import read_abaw, read_abaw_multitask
from affectlab.data.hume import read_hume
from affectlab.data.static import read_affectnet, read_expw, read_rafdb
from affectlab.data.timeline import labelled_frames
from affectlab.labels import AUS_17, AUS_ABAW, EXPRESSIONS, REACTIONS


def test_same_seed_gives_identical_bytes_whatever_the_workers(tiny_world, tmp_path):
    again = synth.make_world(tmp_path / "again", preset="tiny", seed=0, workers=1, progress=False)
    files = sorted(p.relative_to(tiny_world) for p in tiny_world.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files[:: max(1, len(files) // 200)]:
        assert (tiny_world / rel).read_bytes() == (again / rel).read_bytes(), rel
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (tiny_world, again))
    assert m1["content_hash"] == m2["content_hash"] == synth.content_hash(again)
    assert m1["seed"] == 0 and m1["preset"] == "tiny" and m1["generator_version"] == synth.GENERATOR_VERSION


def test_repeated_call_is_a_no_op(tiny_world):
    stamp = (tiny_world / "manifest.json").stat().st_mtime_ns
    assert synth.make_world(tiny_world, preset="tiny", seed=0, progress=False) == tiny_world
    assert (tiny_world / "manifest.json").stat().st_mtime_ns == stamp


def test_an_edited_preset_regenerates_the_world(tmp_path, monkeypatch):
    """The preset's table is part of the world's key: a world made before an edit is not reused after it."""
    a = synth.make_world(tmp_path / "w", preset="tiny", seed=0, progress=False)
    monkeypatch.setitem(synth.PRESETS, "tiny", {**synth.PRESETS["tiny"], "hume": (4, 2)})
    with pytest.warns(UserWarning, match="regenerating"):
        synth.make_world(a, preset="tiny", seed=0, progress=False)
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["preset_settings"]["hume"] == [4, 2] and manifest["counts"]["hume_videos"] == 6


def test_other_seed_regenerates_and_foreign_dirs_are_refused(tmp_path):
    a = synth.make_world(tmp_path / "w", preset="tiny", seed=1, progress=False, min_episodes=1)
    h1 = json.loads((a / "manifest.json").read_text())["content_hash"]
    with pytest.warns(UserWarning, match="regenerating"):
        synth.make_world(a, preset="tiny", seed=2, progress=False, min_episodes=1)
    assert json.loads((a / "manifest.json").read_text())["content_hash"] != h1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing"):
        synth.make_world(tmp_path / "mine", preset="tiny")
    with pytest.raises(ValueError, match="unknown preset"):
        synth.make_world(tmp_path / "x", preset="huge")
    with pytest.raises(ValueError, match="unknown knob"):
        synth.make_world(tmp_path / "x", preset="tiny", colour=3)


def test_every_format_is_readable(tiny_world):
    for split in ("train", "val"):
        e, v, a = (read_abaw(tiny_world, t, split) for t in ("EXPR", "VA", "AU"))
        assert len(e) > 50 and len(v) > 50 and len(a) > 50
        assert a.attrs["aus"] == AUS_ABAW and e.attrs["layout"] == "2020"
        assert v["valence"].between(-1, 1).all()
        for reader in (read_affectnet, read_rafdb, read_expw):
            df = reader(tiny_world, split)
            assert len(df) > 0 and df["expr"].between(0, 6).all()
        h = read_hume(tiny_world, split)
        assert len(h) > 0 and h[list(REACTIONS)].stack().between(0, 1).all()
    assert any(v.endswith("_left") for v in read_abaw(tiny_world, "EXPR", "train")["video"])


def test_splits_are_subject_disjoint(tiny_world):
    gt = {s: synth.read_ground_truth(tiny_world, s) for s in ("train", "val")}
    assert not set(gt["train"]["subject"]) & set(gt["val"]["subject"])
    videos = {s: set(read_abaw(tiny_world, "EXPR", s)["video"]) for s in ("train", "val")}
    assert not videos["train"] & videos["val"]
    pairs = {v.rsplit("_", 1)[0] for v in videos["train"] | videos["val"] if v.endswith(("_left", "_right"))}
    for base in pairs:  # both people of a two-person video are in the same split
        assert sum(any(v.startswith(base) for v in videos[s]) for s in ("train", "val")) == 1


def test_ground_truth_joins_the_labels(tiny_world):
    gt = synth.read_ground_truth(tiny_world, "val")
    assert set(AUS_17) <= set(gt.columns) and {"occluded", "phase", "valence_true", "yaw"} <= set(gt.columns)
    # The annotators' label at frame t is the true category at t - lag (bar ~2 % wrong labels).
    parts = []
    for _, g in gt.groupby("video"):
        lag = int(g["label_lag"].iloc[0])
        parts.append(g.assign(lagged=g["expr_true"].shift(lag).fillna(g["expr_true"].iloc[0]).astype(int)))
    df = read_abaw_multitask(tiny_world, "val").merge(pd.concat(parts), on=["video", "frame"], how="left")
    assert df["expr_true"].notna().all()
    df = df[df["expr"] >= 0]
    assert (df["expr"] == df["lagged"]).mean() > 0.95
    assert (df["expr"] == df["expr_true"]).mean() < (df["expr"] == df["lagged"]).mean()   # the lag is real
    both = pd.concat([gt, synth.read_ground_truth(tiny_world, "train")])
    assert both["occluded"].any() and (both["phase"] == "apex").any()


def test_lost_faces_leave_frames_without_an_image(tmp_path):
    # A face-tracker loss is a few frames per ~300 on average: the tiny preset may hold none, so raise it.
    w = synth.make_world(tmp_path / "lossy", preset="tiny", seed=0, progress=False, lost=20)
    gt = pd.concat([synth.read_ground_truth(w, s) for s in ("train", "val")])
    lost = gt[gt["has_image"] == 0]
    assert len(lost) > 0
    for _, r in lost.head(20).iterrows():
        assert not (w / "affwild2" / "cropped_aligned" / r["video"] / f"{int(r['frame']):05d}.jpg").exists()


def test_planned_proportions_follow_affwild2():
    rng = np.random.default_rng(0)
    knobs = {**synth.KNOBS}
    jobs = synth._plan_affwild(rng, synth.PRESETS["quick"], knobs, 0, "/nonexistent")
    for split in ("train", "val"):
        per_class = np.zeros(len(EXPRESSIONS))
        total = 0
        for j in (j for j in jobs if j["split"] == split):
            total += j["length"]
            for cls, *rest in j["episodes"]:
                from affectlab.data.timeline import Episode
                per_class[cls] += labelled_frames(Episode(cls, *rest), knobs["threshold"])
        per_class[0] = total - per_class[1:].sum()
        share = per_class / total
        target = np.array(list(synth.AFFWILD2_PROPORTIONS.values()))
        # Validation is the smaller split, and each class still needs its minimum of (brief) episodes there:
        # its rare classes take about 4 % each, and the other emotions give way.
        assert np.allclose(share, target, atol=0.03 if split == "train" else 0.05), (split, share.round(3))
        assert share[0] == share.max() and (share[1:4] < 0.05).all()
        assert (per_class[1:] > 0).all()


def test_expressions_reach_the_labels(tiny_world):
    e = read_abaw(tiny_world, "EXPR", "train")
    counts = np.bincount(e["expr"], minlength=7)
    assert counts[0] == counts.max() and (counts > 0).all()


def test_concurrent_calls_generate_once(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    calls = []
    real = synth._generate
    monkeypatch.setattr(synth, "_generate", lambda *a, **k: (calls.append(1), real(*a, **k)))
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: synth.make_world(tmp_path / "w", preset="tiny", seed=5, workers=1,
                                                         progress=False), range(2)))
    assert outs[0] == outs[1] and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["w"]   # no temp left
    assert len(read_abaw(outs[0], "EXPR", "train")) > 0
