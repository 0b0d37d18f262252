"""From a trained run to a checked submission: ``python -m affectlab.fit facechannel --smoke`` on the tiny world,
then ``python -m affectlab.submit --run`` on its validation videos taken as a test set (crops with frames
removed as face-less, frame counts longer than the crops), in the 1st ABAW's per-video layout and the 6th's
single file; both pass ``--check``, the face-less frames are filled and counted."""
import shutil

import pandas as pd
import pytest

from affectlab import fit, submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


def test_a_fit_run_becomes_a_submission_that_passes_check(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert fit.main(["facechannel", "--smoke", "--data-root", str(world), "--out", str(run), "--device", "cpu"]) == 0
    val = world / "affwild2" / "annotations" / "VA_Set" / "Validation_Set"
    videos = sorted(p.stem for p in val.glob("*.txt"))[:2]
    lst = tmp_path / "Valence_Arousal_Estimation_Challenge_test_set_release.txt"
    lst.write_text("\n".join(videos) + "\n")
    # the test crops: the release's, with frames 2-4 of the first video gone (no face found there)
    crops = tmp_path / "cropped_aligned"
    for v in videos:
        shutil.copytree(world / "affwild2" / "cropped_aligned" / v, crops / v)
    for i in (2, 3, 4):
        (crops / videos[0] / f"{i:05d}.jpg").unlink()
    n_crops = {v: len(list((crops / v).glob("*.jpg"))) for v in videos}
    last = {v: max(int(p.stem) for p in (crops / v).glob("*.jpg")) for v in videos}
    counts = {v: last[v] + 2 for v in videos}           # the video runs 2 frames past its last face
    (tmp_path / "counts.csv").write_text("video,frames\n" + "".join(f"{v},{n}\n" for v, n in counts.items()))
    capsys.readouterr()
    table = tmp_path / "table.csv"
    for edition, out in (("1st", tmp_path / "VA_Set"), ("6th", tmp_path / "predictions.txt")):
        source = (["--run", str(run), "--test-frames", str(crops), "--data-root", str(world), "--save-predictions",
                   str(table)] if edition == "1st" else ["--predictions", str(table)])   # the model runs once
        code = submit.main(["--edition", edition, "--track", "va", "--test-list", str(lst), "--frame-counts",
                            str(tmp_path / "counts.csv"), *source, "--out", str(out), "--device", "cpu"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        filled = sum(counts.values()) - sum(n_crops.values())
        assert f"{sum(n_crops.values()):,} predicted, {filled:,} filled" in printed
        assert "passes --check" in printed
        res = submit.check_submission(out, edition, "va", videos, counts)
        assert res.ok and res.rows == sum(counts.values())
    got = pd.read_csv(tmp_path / "predictions.txt")
    assert got.valence.between(-1, 1).all() and got.arousal.between(-1, 1).all()
    first = got[got.image_location.str.startswith(videos[0] + "/")].reset_index(drop=True)
    # face-less frames 2-4 take frame 1's or 5's prediction (the nearer; 3 is a tie -> the earlier)
    assert first.valence[1] == first.valence[0] == first.valence[2] and first.valence[3] == first.valence[4]


def test_a_facernet_run_becomes_a_reaction_submission(world, tmp_path, capsys):
    """FaceRNET's run predicts one row per video: a run folder as ``fit`` lays it out (fit_facernet.json with the
    smoke settings, ``models/best.pth`` of the model its recipe builds, untrained: the path is under test, not
    the numbers), then ``--run`` on Hume-Reaction videos listed as a test set, one of them without frames."""
    import json

    import torch

    from affectlab.recipes import recipe, settings

    S = settings("facernet", "quick")
    S = {**S, **fit.smoke_settings("facernet", S)[0]}
    job = recipe("facernet").command_job(S, world, "cpu", 0, limit=(2, 2))
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    torch.save(job.learn.model.state_dict(), run / "models" / "best.pth")
    (run / "fit_facernet.json").write_text(json.dumps({"paper": "facernet", "settings": S, "seed": 0}))
    lst = tmp_path / "test_list.txt"
    lst.write_text("[00007]\n[00008]\n[00099]\n")          # 00099: no frames anywhere
    out = tmp_path / "reaction.csv"
    capsys.readouterr()
    code = submit.main(["--edition", "5th", "--track", "reaction", "--test-list", str(lst), "--run", str(run),
                        "--test-frames", str(world / "hume"), "--data-root", str(world), "--out", str(out),
                        "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "3 rows for 3 listed videos: 2 predicted, 1 filled" in printed and "['[00099]']" in printed
    got = pd.read_csv(out)
    assert list(got.File_ID) == ["[00007]", "[00008]", "[00099]"]
    assert got.iloc[:, 1:].stack().between(0, 1).all()
    assert got.iloc[2, 1:].tolist() == pytest.approx(got.iloc[:2, 1:].mean().tolist(), abs=2e-6)
