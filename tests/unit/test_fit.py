"""The training command's surface: its help, its settings (--set), the smoke caps and its refusals — all
before any training starts."""
import subprocess
import sys

import pytest

from affectlab import fit
from affectlab.recipes import RECIPES, recipe, settings


def test_help_lists_every_paper_with_its_title():
    out = subprocess.run([sys.executable, "-m", "affectlab.fit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for paper in fit.PAPERS:
        assert paper in out.stdout and RECIPES[paper][1] in out.stdout


def test_every_paper_has_a_command_entry():
    for paper in fit.PAPERS:
        assert callable(getattr(recipe(paper), "command_job", None)), paper


def test_set_values_are_python_literals_or_text():
    assert fit.parse_sets(["epochs=3", "lr=1e-3", "arch=resnet18", "max_train_frames=None"]) == \
        {"epochs": 3, "lr": 1e-3, "arch": "resnet18", "max_train_frames": None}
    with pytest.raises(fit.FitError, match="key=value"):
        fit.parse_sets(["epochs"])


def _main(tmp_path, *args):
    return fit.main([*args, "--data-root", str(tmp_path), "--out", str(tmp_path / "out")])


def test_unknown_set_key_is_an_error_naming_the_known_ones(tmp_path, capsys):
    assert _main(tmp_path, "facechannel", "--set", "epoch=3") == 2
    err = capsys.readouterr().err
    assert "epoch" in err and "'epochs'" in err and "'lr'" in err


def test_unknown_paper_and_missing_data_root_are_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _main(tmp_path, "vgg16")
    assert e.value.code == 2 and "vgg16" in capsys.readouterr().err
    assert fit.main(["scan", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_resume_needs_a_checkpoint_and_a_used_out_needs_resume(tmp_path, capsys):
    assert _main(tmp_path, "facechannel", "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err
    ck = tmp_path / "out" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "learner00-X-fit0-0.pt").write_bytes(b"")
    assert _main(tmp_path, "facechannel") == 2
    assert "--resume" in capsys.readouterr().err
    assert _main(tmp_path, "facechannel", "--smoke", "--resume") == 2
    assert _main(tmp_path, "facechannel", "--smoke") == 2            # nor does a smoke run reuse them
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("paper", fit.PAPERS)
def test_smoke_keeps_the_paper_configuration_and_caps_only_batches_and_epochs(paper):
    S = settings(paper, "paper")
    over, (n_train, n_valid), note = fit.smoke_settings(paper, S)
    capped = set(fit.SMOKE_BATCH[paper]) | {"epochs", "seq_epochs", "rec_epochs", "num_workers"}
    assert set(over) <= capped
    for key in fit.SMOKE_BATCH[paper]:
        assert over[key] <= S[key] and f"{key} {S[key]} -> {over[key]}" in note
    assert n_train == fit.SMOKE_STEPS * over.get("batch", over[next(iter(fit.SMOKE_BATCH[paper]))])
    assert n_valid > 0
    # the configuration itself (backbone, image size, widths, optimiser, learning rates) is the paper's
    assert {k: v for k, v in {**S, **over}.items() if k not in capped} == {k: v for k, v in S.items() if k not in capped}


def test_help_shows_defaults_the_seed_the_set_keys_each_papers_data_and_the_exit_statuses():
    out = subprocess.run([sys.executable, "-m", "affectlab.fit", "--help"], capture_output=True, text=True).stdout
    assert "(default: quick)" in out and "(default: 0)" in out and "training seed" in out
    for paper in fit.PAPERS:
        assert fit.DATASETS[paper] in out
    assert "seq_epochs" in out and "lr_backbone" in out and "expr_classes" in out     # the --set keys
    assert f"{fit.EXIT_NO_GPU} --profile paper without a GPU" in out


def test_set_before_paper_does_not_swallow_it():
    args = fit._parser().parse_args(fit._paper_first(["--set", "epochs=3", "lr=0.1", "facechannel", "--data-root",
                                                       "d", "--out", "o"]))
    assert args.paper == "facechannel" and args.set == ["epochs=3", "lr=0.1"]
    # a folder named like a paper, given to an option, stays that option's value
    args = fit._parser().parse_args(fit._paper_first(["scan", "--out", "facechannel", "--data-root", "d"]))
    assert args.paper == "scan" and str(args.out) == "facechannel"


@pytest.mark.parametrize("paper", ["facechannel", "facernet"])
def test_weights_on_a_paper_that_takes_none_is_a_one_line_error(paper, tmp_path, capsys):
    from affectlab.data.synth import make_world

    world = make_world(tmp_path / "w", preset="tiny", seed=0, progress=False)
    (tmp_path / "x.pkl").write_bytes(b"")
    assert fit.main([paper, "--weights", str(tmp_path / "x.pkl"), "--data-root", str(world), "--out",
                     str(tmp_path / "out"), "--smoke", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes no --weights" in err[0]
