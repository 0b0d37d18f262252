"""Every ABAW edition end to end: ``python -m affectlab.fit PAPER --profile quick --smoke`` on the tiny world
re-laid as each edition's release by ``edition_trees`` (not by the world's writer). Each run must finish and its
JSON must name the edition and the classes trained — 8 with Other from the 3rd ABAW (2022) on — with a head of
that many outputs; dropping Other is a setting that is counted and said; a label the head cannot take is an
error before training; the clip models refuse a multi-task-only release."""
import json

import pytest

from affectlab import fit
from affectlab.recipes import settings

from edition_trees import NAMES7, TREES, YEAR, is_other, multitask_only, relayout

pytestmark = pytest.mark.slow
CLASSES_8 = NAMES7 + ["Other"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


@pytest.fixture(scope="module")
def trees(world, tmp_path_factory):
    base = tmp_path_factory.mktemp("editions")
    return {e: relayout(world, base / e, e) for e in TREES}


def _smoke(paper, root, out, *extra):
    code = fit.main([paper, "--profile", "quick", "--smoke", "--data-root", str(root), "--out", str(out),
                     "--device", "cpu", *extra])
    assert code == 0
    return json.loads((out / f"fit_{paper}.json").read_text())


@pytest.mark.parametrize("paper", ["facechannel", "senet50", "temporal", "scan"])
def test_each_aff_wild2_paper_trains_and_scores_the_8_classes_of_a_later_edition(paper, trees, tmp_path):
    doc = _smoke(paper, trees["2024"], tmp_path / "out")
    assert doc["labels"]["edition"] == "6th ABAW (2024)" and doc["labels"]["edition_year"] == 2024
    assert doc["labels"]["classes"] == CLASSES_8 and doc["labels"]["outputs"] == 8
    assert doc["settings"]["labels"]["classes"] == CLASSES_8
    assert {r["metric"] for r in doc["records"]} & {"f1", "expr_score"}


@pytest.mark.parametrize("edition", sorted(TREES))
def test_one_paper_on_every_edition_names_its_edition_and_classes(edition, trees, tmp_path):
    doc = _smoke("scan", trees[edition], tmp_path / "out")
    want = NAMES7 if YEAR[edition] < 2022 else CLASSES_8
    assert doc["labels"]["classes"] == want and doc["labels"]["outputs"] == len(want)
    assert doc["labels"]["edition_year"] == YEAR[edition]
    top = TREES[edition][0]
    if top[0].isdigit():      # a numbered top folder names the edition
        assert doc["labels"]["edition"].startswith(top.split()[0].split("_")[0] + " ABAW")


def _other_frames(root, split_dir):
    """Other (7) labels of the re-laid expression files whose frame has an image, counted from the files."""
    n = 0
    for f in sorted(root.glob(f"affwild2/*/EXPR_*/{split_dir}/*.txt")):
        for i, label in enumerate(f.read_text().splitlines()[1:], start=1):
            if label == "7" and (root / "affwild2" / "cropped_aligned" / f.stem / f"{i:05d}.jpg").is_file():
                n += 1
    return n


def test_dropping_other_is_a_setting_counted_and_said(trees, tmp_path, capsys):
    root = trees["2022"]
    doc = _smoke("scan", root, tmp_path / "out", "--set", "expr_classes=7")
    printed = capsys.readouterr().out
    n = _other_frames(root, "Train_Set") + _other_frames(root, "Validation_Set")
    assert n > 0
    assert doc["labels"]["classes"] == NAMES7 and doc["labels"]["outputs"] == 7
    assert doc["labels"]["dropped_other"] is True
    assert f"expr_classes=7: {n} Other frames" in printed and f"expr_classes=7: {n} Other frames" in " ".join(doc["notes"])


def test_a_label_the_head_cannot_take_is_an_error_naming_file_label_and_head_before_training(trees):
    from affectlab.recipes import scan

    S = settings("scan", "quick")          # settings made without the data root: the 7 classes of 2020
    with pytest.raises(ValueError, match=r"\.txt: label 7 \(Other\).*SCAN\+CCI's expression heads, which has 7 outputs"):
        scan.data(trees["2023"] / "affwild2", S, 0)


def test_clip_models_refuse_a_multitask_only_release_saying_why(world, tmp_path, capsys):
    from affectlab.recipes import facechannel, start

    root = multitask_only(world, tmp_path / "mtl")
    assert fit.main(["temporal", "--profile", "quick", "--smoke", "--data-root", str(root), "--out",
                     str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "training_set_annotations.txt" in err and "consecutive" in err and "EXPR_Set" in err
    # the frame model trains on it (8 classes: a 7th ABAW release); FC-S, which reads clips, refuses it
    run = start("facechannel", "quick", root, "cpu", 0)
    assert run.S["labels"]["classes"] == CLASSES_8 and run.S["labels"]["edition"] == "7th ABAW (2024)"
    _, clean_df, valid_df, _, _ = facechannel.data(run.root, run.S, 0)
    with pytest.raises(ValueError, match="FC-S needs 10-frame clips of consecutive frames"):
        facechannel.fit_sequence_model(run.S, None, clean_df, valid_df, 3, "cpu", 0)
