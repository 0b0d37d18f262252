"""affectlab.cache.data_key: the key that decides when a result computed from a whole data root (the face
feature model, the claims) is stale. Every label file of every release (both AffectNet releases, RAF-DB, ExpW,
Hume's data_info.csv, Aff-Wild2's annotation txt) and every folder's listing change it; a file that holds no
labels, rewritten in place, does not."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from affectlab.cache import data_key as data_fingerprint

OLD = 1_000_000_000_000_000_000   # a fixed past mtime (ns), so a change never lands in the same clock tick


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def real_root(tmp_path) -> Path:
    """A data root holding every reader's label files as released (tiny contents) and their image folders."""
    r = tmp_path / "data"
    an = r / "affectnet"
    _write(an / "Manually_Annotated_file_lists" / "training.csv", "subDirectory_filePath,expression\n1/a.jpg,1\n")
    _write(an / "Manually_Annotated_file_lists" / "validation.csv", "1/b.jpg,2\n")
    _write(an / "Manually_Annotated" / "Manually_Annotated_Images" / "1" / "a.jpg", "jpeg")
    new = r / "affectnet_new"
    for split in ("train", "val"):
        (new / f"{split}_set" / "annotations").mkdir(parents=True)
        np.save(new / f"{split}_set" / "annotations" / "0_exp.npy", np.array("3"))
        _write(new / f"{split}_set" / "images" / "0.jpg", "jpeg")
    _write(r / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt", "train_00001.jpg 4\n")
    _write(r / "rafdb" / "basic" / "Image" / "aligned" / "train_00001_aligned.jpg", "jpeg")
    _write(r / "expw" / "data" / "label" / "label.lst", "a.jpg 0 1 2 3 4 0.9 3\n")
    _write(r / "expw" / "data" / "image" / "origin" / "a.jpg", "jpeg")
    _write(r / "hume" / "data_info.csv", "File_ID,Split\n[00001],Train\n")
    for p in sorted(r.rglob("*"), reverse=True):   # every file and folder an old, fixed mtime
        os.utime(p, ns=(OLD, OLD))
    return r


LABEL_FILES = ["affectnet/Manually_Annotated_file_lists/training.csv",
               "affectnet/Manually_Annotated_file_lists/validation.csv",
               "rafdb/basic/EmoLabel/list_patition_label.txt", "expw/data/label/label.lst", "hume/data_info.csv"]


def test_fingerprint_is_stable(real_root):
    a = data_fingerprint(real_root)
    assert len(a) == 64 and a == data_fingerprint(real_root)


@pytest.mark.parametrize("rel", LABEL_FILES)
def test_changing_a_label_file_changes_it(real_root, rel):
    before = data_fingerprint(real_root)
    p = real_root / rel
    p.write_text(p.read_text().replace("1", "5"))   # same size: only the mtime tells
    assert data_fingerprint(real_root) != before


def test_affectnet_npy_annotations_count(real_root):
    ann = real_root / "affectnet_new" / "val_set" / "annotations"
    before = data_fingerprint(real_root)
    np.save(ann / "1_exp.npy", np.array("5"))           # a face added to the newer release
    added = data_fingerprint(real_root)
    assert added != before
    np.save(ann / "0_exp.npy", np.array("6"))           # a label rewritten in place (same size)
    os.utime(ann / "0_exp.npy", ns=(OLD + 1, OLD + 1))
    assert data_fingerprint(real_root) not in (before, added)


@pytest.mark.parametrize("folder", ["affectnet/Manually_Annotated/Manually_Annotated_Images/1",
                                    "affectnet_new/train_set/images", "rafdb/basic/Image/aligned",
                                    "expw/data/image/origin"])
def test_images_added_or_replaced_change_it(real_root, folder):
    d = real_root / folder
    before = data_fingerprint(real_root)
    name = next(d.iterdir()).name
    _write(d / ".new.jpg", "another face")
    os.replace(d / ".new.jpg", d / name)                 # replaced under the same name (as tools do)
    replaced = data_fingerprint(real_root)
    assert replaced != before
    _write(d / "extra.jpg", "jpeg")
    os.utime(d, ns=(OLD, OLD))                           # the count tells even when the mtime does not
    assert data_fingerprint(real_root) not in (before, replaced)


def test_a_file_without_labels_rewritten_in_place_does_not_change_it(real_root):
    for rel in ("notes.md", "scripts/prepare.py"):
        _write(real_root / rel, "v1")
    for p in sorted(real_root.rglob("*"), reverse=True):
        os.utime(p, ns=(OLD, OLD))
    before = data_fingerprint(real_root)
    (real_root / "notes.md").write_text("v2, longer")
    (real_root / "scripts" / "prepare.py").write_text("print('v2')")
    assert data_fingerprint(real_root) == before


def test_aff_wild2_annotations_change_it(real_root):
    ann = _write(real_root / "affwild2" / "annotations" / "EXPR_Set" / "Training_Set" / "1-30-1280x720.txt",
                 "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n0\n")
    os.utime(ann, ns=(OLD, OLD))
    before = data_fingerprint(real_root)
    ann.write_text(ann.read_text().replace("0", "4"))      # same size: the mtime and inode tell
    assert data_fingerprint(real_root) != before


def test_synthetic_manifest_and_foreign_manifest(real_root, tmp_path):
    world = tmp_path / "world"
    _write(world / "manifest.json", json.dumps({"generator_version": "1.1", "content_hash": "abc123"}))
    assert data_fingerprint(world) == "abc123"
    # A manifest.json that came with real data is not the generator's: the labels still count.
    _write(real_root / "manifest.json", json.dumps({"name": "my dataset"}))
    before = data_fingerprint(real_root)
    assert before != ""
    (real_root / "expw" / "data" / "label" / "label.lst").write_text("b.jpg 0 1 2 3 4 0.9 2\n")
    assert data_fingerprint(real_root) != before
