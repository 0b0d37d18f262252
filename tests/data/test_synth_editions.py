"""The synthetic world written as each ABAW edition's Aff-Wild2 release (``make_world(..., edition=...)``),
checked against the release table of ``abaw_release_fixtures`` (built from the public formats), not against
the writer's own edition table or reader."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectlab.data import synth
from affectlab.data.abaw import read_abaw

from abaw_release_fixtures import EDITIONS

# fixture key -> what ``--edition`` is given (a year, an ordinal, a bare number)
WRITTEN = {"2020": "2020", "2021": "2021", "2022": "2022", "4th": "4th", "2023": "2023", "2024": "2024",
           "7th": "7th", "2025": "2025", "9th": "9", "2026": "10th", "11th": "11th ABAW"}
EIGHT_CLASS = {k for k, e in EDITIONS.items() if len(e["classes"]) == 8}
ALL_TASKS = ("EXPR_Set", "VA_Set", "AU_Set", "EXPR_Classification_Challenge", "EXPR_Recognition_Challenge",
             "VA_Estimation_Challenge", "AU_Detection_Challenge")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Each edition's tiny world (its Aff-Wild2 alone), written once for the module on first use."""
    base, made = tmp_path_factory.mktemp("editions"), {}

    def world(key: str) -> Path:
        if key not in made:
            made[key] = synth.make_world(base / key, preset="tiny", seed=0, progress=False, workers=1,
                                         edition=WRITTEN[key], corpora=("affwild2",))
        return made[key]
    return world


def _lines(p: Path) -> list[str]:
    return p.read_text().split("\n")[:-1]


def _task_files(world: Path, key: str, task: str) -> dict[str, list[Path]]:
    e = EDITIONS[key]
    ann = world / "affwild2" / Path(*e["ann"][:1])
    return {s: sorted((ann / e["tasks"][task] / folder).glob("*.txt")) for s, folder in e["splits"].items()}


def _meta(world: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p, keep_default_na=False) for p in sorted((world / "affwild2" / "meta").glob("*.csv"))}


@pytest.mark.parametrize("key", list(WRITTEN))
def test_tree_as_the_release_unzips(worlds, key):
    e, world = EDITIONS[key], worlds(key)
    aw = world / "affwild2"
    ann = aw / e["ann"][0]
    # the top folders: the annotation folder, the image folder(s) and the world's own meta/ — nothing else
    image_tops = {p.split("/")[0] for p in e["images"]}
    assert {p.name for p in aw.iterdir()} == {e["ann"][0], *image_tops, "meta"}
    # the task and split folders, and only them
    assert {p.name for p in ann.iterdir() if p.is_dir() and p.name in ALL_TASKS} == set(e["tasks"].values())
    for task in e["tasks"].values():
        assert {p.name for p in (ann / task).iterdir()} == set(e["splits"].values())
    videos = set(_meta(world))
    if e["tasks"]:
        for task in e["tasks"]:
            per_split = _task_files(world, key, task)
            assert {p.stem for ps in per_split.values() for p in ps} == videos
            assert not {p.stem for p in per_split["train"]} & {p.stem for p in per_split["val"]}
    # every video's frames in exactly one of the release's image folders, each folder used
    where = {v.name: folder for folder in e["images"] for v in (aw / folder).iterdir()}
    assert set(where) == videos and sorted(set(where.values())) == sorted(e["images"])
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["edition"]["annotations"] == e["ann"][0] and manifest["corpora"] == ["affwild2"]
    assert {p.name for p in world.iterdir()} == {"affwild2", "manifest.json"}


@pytest.mark.parametrize("key", [k for k in WRITTEN if EDITIONS[k]["tasks"]])
def test_headers_classes_and_aus(worlds, key):
    e, world = EDITIONS[key], worlds(key)
    meta = _meta(world)
    n_cls, aus = len(e["classes"]), e["aus"]
    labels = []
    for task, header in (("EXPR", ",".join(e["classes"])), ("VA", "valence,arousal"), ("AU", ",".join(aus))):
        for split, files in _task_files(world, key, task).items():
            assert files, (task, split)
            for p in files:
                lines = _lines(p)
                assert lines[0] == header, p
                assert len(lines) == len(meta[p.stem]) + 1, p            # line i+1 labels frame i
                rows = [ln.split(",") for ln in lines[1:]]
                assert {len(r) for r in rows} == {1 if task == "EXPR" else len(header.split(","))}, p
                if task == "EXPR":
                    labels += [int(r[0]) for r in rows]
                if task == "AU":
                    assert {int(x) for r in rows for x in r} <= {-1, 0, 1}
    assert len(aus) == (8 if key == "2020" else 12)
    labelled = np.array([x for x in labels if x >= 0])
    assert labelled.max() == n_cls - 1 and set(labelled) <= set(range(n_cls))
    other_share = float(np.mean(labelled == 7))
    if key in EIGHT_CLASS:
        assert 0.05 <= other_share <= 0.25, other_share             # documented: 7.5 % on the tiny preset
    else:
        assert other_share == 0


def test_first_abaw_aus_are_the_simulated_intensities(worlds):
    """The 1st ABAW's 8 AUs, AU20 included, are the 17 simulated AUs' columns, thresholded and lagged as the
    12 of the later editions are."""
    world = worlds("2020")
    meta = _meta(world)
    aus = EDITIONS["2020"]["aus"]
    checked = 0
    for p in _task_files(world, "2020", "AU")["train"]:
        m = meta[p.stem]
        lag = int(m["label_lag"].iloc[0])
        labels = np.array([[int(x) for x in ln.split(",")] for ln in _lines(p)[1:]])
        src = np.maximum(np.arange(len(m)) - lag, 0)
        want = (m[list(aus)].to_numpy()[src] >= 0.35).astype(int)
        valid = labels[:, 0] != -1
        assert (labels[valid] == want[valid]).all(), p
        checked += int(valid.sum())
    assert checked > 100


def test_editions_change_only_the_layout_and_other(worlds, tiny_world):
    """Same draws as the course world (written whole, the editions' worlds hold Aff-Wild2 alone): the 2nd
    ABAW's files hold the course world's bytes (12 AUs), its images are the course world's, and from the 3rd
    ABAW on only Neutral frames change, to Other."""
    course = tiny_world / "affwild2" / "annotations"
    w21, w22 = worlds("2021"), worlds("2022")
    for task in ("EXPR", "VA", "AU"):
        for split in ("train", "val"):
            ours = {"train": "Training_Set", "val": "Validation_Set"}[split]
            for p in _task_files(w21, "2021", task)[split]:
                assert p.read_bytes() == (course / f"{task}_Set" / ours / p.name).read_bytes()
    img = sorted((tiny_world / "affwild2" / "cropped_aligned").rglob("*.jpg"))
    assert img and all(p.read_bytes() == (w21 / p.relative_to(tiny_world)).read_bytes() for p in img[::7])
    changed = 0
    for p in _task_files(w22, "2022", "EXPR")["train"] + _task_files(w22, "2022", "EXPR")["val"]:
        new = np.array(_lines(p)[1:], int)
        split = "Training_Set" if p.parent.name == "Train_Set" else "Validation_Set"
        old = np.array(_lines(course / "EXPR_Set" / split / p.name)[1:], int)
        diff = new != old
        assert (old[diff] == 0).all() and (new[diff] == 7).all(), p
        changed += int(diff.sum())
    assert changed > 0


def test_other_frames_show_a_movement_without_a_named_expression(worlds):
    """The documented rule: an Other frame's face (at the moment its lagged label describes) shows some AU
    at 0.15 or more, and no expression at the category threshold (0.3)."""
    world = worlds("2024")
    meta = _meta(world)
    n = 0
    for p in _task_files(world, "2024", "EXPR")["train"] + _task_files(world, "2024", "EXPR")["val"]:
        m = meta[p.stem]
        other = np.flatnonzero(np.array(_lines(p)[1:], int) == 7)
        src = np.maximum(other - int(m["label_lag"].iloc[0]), 0)
        au17 = m[[c for c in m.columns if re.fullmatch(r"AU\d+", c)]].to_numpy()
        assert (au17[src].max(axis=1) >= 0.15 - 1e-3).all() and (m["intensity"].to_numpy()[src] < 0.3).all()
        n += len(other)
    assert n > 0


@pytest.mark.parametrize("key", [k for k in WRITTEN if "mtl" in EDITIONS[k]])
def test_multitask_files(worlds, key):
    e, world = EDITIONS[key], worlds(key)
    aw = world / "affwild2"
    aus = e["aus"]
    header = "image,valence,arousal,expression," + ("aus" if e["tasks"] else ",".join(aus))
    row = re.compile(r"^([^/,]+)/(\d{5})\.jpg,(-?[\d.]+),(-?[\d.]+),(-?\d)," + ",".join([r"(-?\d)"] * len(aus)) + "$")
    listed = {}
    for rel in e["mtl"]:
        lines = _lines(aw / e["ann"][0] / rel)
        assert lines[0] == header and len(lines) > 10
        for ln in lines[1:]:
            m = row.match(ln)
            assert m, ln
            video, frame = m.group(1), int(m.group(2))
            assert -1 <= int(m.group(5)) <= 7 and {int(x) for x in m.groups()[5:]} <= {-1, 0, 1}
            va = (float(m.group(3)), float(m.group(4)))
            assert va == (-5, -5) or all(-1 <= x <= 1 for x in va)
            assert (aw / e["images"][0] / video / f"{frame:05d}.jpg").is_file(), ln
            listed.setdefault(video, []).append(frame)
    assert 7 in {int(ln.split(",")[3]) for rel in e["mtl"] for ln in _lines(aw / e["ann"][0] / rel)[1:]}
    # sampled frames: never two consecutive frames of one video
    assert all(np.diff(sorted(f)).min() > 1 for f in listed.values() if len(f) > 1)
    if not e["tasks"]:   # a multi-task-only release holds the images of its listed frames alone
        on_disk = {(v.name, int(f.stem)) for v in (aw / e["images"][0]).iterdir() for f in v.glob("*.jpg")}
        assert on_disk == {(v, f) for v, fs in listed.items() for f in fs}


@pytest.mark.parametrize("key", list(WRITTEN))
def test_the_reader_reads_each_written_edition(worlds, key):
    world = worlds(key)
    for split in ("train", "val"):
        for task in ("EXPR", "VA", "AU"):
            assert len(read_abaw(world, task, split)) > 0
    labels = set(read_abaw(world, "EXPR", "train")["expr"]) | set(read_abaw(world, "EXPR", "val")["expr"])
    assert (7 in labels) == (key in EIGHT_CLASS)
    assert labels - {7} == set(range(7))


@pytest.mark.parametrize("given, number", [(2020, 1), ("2021", 2), (2022, 3), ("2023", 5), ("2024", 6),
                                           ("2025", 8), (2026, 10), ("4th", 4), ("7", 7), ("9th", 9),
                                           ("11th ABAW", 11), (None, None)])
def test_edition_given_as_year_or_number(given, number):
    got = synth.resolve_edition(given)
    assert (got.number if got else None) == number


def test_corpora_must_be_named(tmp_path):
    for bad in ((), ("affwild",), "affwild2"):
        with pytest.raises(ValueError, match="name one or more of affwild2, hume, static"):
            synth.make_world(tmp_path / "w", preset="tiny", corpora=bad)


@pytest.mark.parametrize("bad", ["2019", "2027", "12th", "0", "third", "abaw"])
def test_unknown_edition_names_the_known_ones(bad, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown ABAW edition .*known editions: 1st \(2020\), .*11th \(2026\)"):
        synth.make_world(tmp_path / "w", preset="tiny", edition=bad)
    assert not (tmp_path / "w").exists()
    with pytest.raises(SystemExit):
        synth.main(["--preset", "tiny", "--out", str(tmp_path / "w"), "--edition", bad])
    assert "known editions" in capsys.readouterr().err


def test_an_editions_world_is_not_the_course_world(worlds):
    """The manifest records the edition: asking for the course world (or another edition) in its folder
    regenerates it, as another seed would."""
    manifest = worlds("2022") / "manifest.json"

    def same(edition, corpora=("affwild2",)):
        settings = synth._settings("tiny", 0, {}, synth.resolve_edition(edition), corpora)
        return synth._matches(manifest, settings)["match"]
    assert same(2022) and same("3rd")
    assert not same(None) and not same(2023)
    assert not same(2022, synth.CORPORA) and not same(2022, ("affwild2", "hume"))   # Aff-Wild2 alone is not a world
