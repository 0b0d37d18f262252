"""The floors chapters assert (``affectlab.checks``) mean something: models that learnt nothing fail them.

Each check is the chapter's own computation (the same metrics over the same kind of data) applied to an
untrained network, to shuffled labels, or to a constant guess. A floor that such a model could clear would
let a chapter that learns nothing pass on some seed.
"""
import numpy as np
import pytest
import torch

from affectlab import metrics as M
from affectlab.checks import FLOORS, assert_floors, floor_failures
from affectlab.data.abaw import read_abaw_multitask
from affectlab.data.loaders import frame_dls
from affectlab.models import FaceChannel, FaceRNet
from affectlab.models.facechannel import VARIANTS
from affectlab.train import predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world():
    """The chapters' own quick world (``make test`` builds it first; generated here otherwise): the tiny
    preset's few validation frames let a shuffle score anything."""
    from affectlab.data.roots import resolve_data_root

    return resolve_data_root(None, "quick", 0)


def facechannel_figures(pred_expr, pred_va, expr, va) -> dict:
    """Chapter 03's figures: macro-F1 and accuracy over labelled frames, CCC over frames with VA."""
    ok_e, ok_va = expr >= 0, (va != -5).all(1)
    return {"f1": M.f1_macro(expr[ok_e], pred_expr[ok_e], labels=range(7)),
            "accuracy": M.accuracy(expr[ok_e], pred_expr[ok_e]),
            "ccc_valence": M.ccc(va[ok_va, 0], pred_va[ok_va, 0]),
            "ccc_arousal": M.ccc(va[ok_va, 1], pred_va[ok_va, 1])}


@pytest.fixture(scope="module")
def valid_frames(world):
    valid = read_abaw_multitask(world / "affwild2", "val", tasks=("EXPR", "VA"))
    valid = valid[valid.groupby("video", sort=False).cumcount() % 3 == 2].reset_index(drop=True)
    expr = valid["expr"].to_numpy()
    va = valid[["valence", "arousal"]].to_numpy()
    return valid, expr, va


def test_an_untrained_facechannel_fails_the_chapter_03_floors(valid_frames):
    valid, expr, va = valid_frames
    torch.manual_seed(0)
    model = FaceChannel(tasks=VARIANTS["FC"], image_size=64, width=16, dropout=0.1).eval()
    dl = frame_dls(valid.iloc[:1], valid, targets=("expr", "va"), size=64, bs=256, augment=False).valid
    preds, targs = predict(model, dl)
    figs = facechannel_figures(preds["expr"].numpy(), preds["va"].numpy(), targs["expr"].numpy(),
                               targs["va"].numpy())
    for floors in ("facechannel", "facechannel_frame"):      # FC-S's floors, and the joint FC's
        assert floor_failures(figs, FLOORS[floors]), figs
        with pytest.raises(AssertionError, match="FC learnt too little"):
            assert_floors("FC", figs, FLOORS[floors])


def test_shuffled_labels_fail_the_chapter_03_floors(valid_frames):
    """A model that predicts the label distribution but not the face: the true labels, shuffled."""
    _, expr, va = valid_frames
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm = rng.permutation(len(expr))
        figs = facechannel_figures(expr[perm], va[perm], expr, va)
        for floors in ("facechannel", "facechannel_frame"):
            # every shuffle misses the F1 floor and the CCC floor, not just one of them
            missed = floor_failures(figs, FLOORS[floors])
            assert {m.split()[0] for m in missed} >= {"f1", "ccc_arousal"}, figs


def test_always_neutral_fails_the_chapter_08_floor(valid_frames):
    _, expr, _ = valid_frames
    labelled = expr[expr >= 0]
    f1 = M.f1_macro(labelled, np.zeros_like(labelled))
    assert floor_failures({"f1": f1}, FLOORS["gradcam"]), f1


def test_facernet_that_learnt_nothing_fails_the_chapter_07_floor():
    rng = np.random.default_rng(0)
    n = 100  # chapter 07's validation videos
    true = rng.random((n, 7)) * (rng.random((n, 7)) < 0.6)
    # an untrained FaceRNet on random per-frame representations
    torch.manual_seed(0)
    model = FaceRNet(t=160, hidden=128, dense=32).eval()
    lengths = torch.as_tensor(rng.integers(20, 160, n))
    with torch.no_grad():
        untrained = model(torch.rand(n, 160, 26), lengths)["intensity"].numpy()
    assert floor_failures({"pearson": M.reaction_pearson(true, untrained)}, FLOORS["facernet"])
    # the targets shuffled across videos: right distribution, wrong videos
    for _ in range(20):
        rho = M.reaction_pearson(true, true[rng.permutation(n)])
        assert floor_failures({"pearson": rho}, FLOORS["facernet"]), rho


def test_floor_failures_reads_nan_and_missing_figures_as_misses():
    assert floor_failures({"f1": float("nan")}, {"f1": 0.1}) == ["f1 nan < 0.1"]
    assert floor_failures({}, {"f1": 0.1}) == ["f1 missing (floor 0.1)"]
    assert floor_failures({"f1": 0.2}, {"f1": 0.1}) == []
