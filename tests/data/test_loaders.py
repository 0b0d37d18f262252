import numpy as np
import pandas as pd
import pytest
import torch

from affectlab.data.abaw import read_abaw_multitask
from affectlab.data.hume import read_hume
from affectlab.data.loaders import MEAN, clip_dls, clip_indices, denormalize, frame_dls, load_image, video_dls
from affectlab.labels import INVALID_VA

from data_fixtures import abaw_2020, hume, jpg


@pytest.fixture
def frames(tmp_path):
    abaw_2020(tmp_path, videos={"a": 6, "b": 4})
    df = read_abaw_multitask(tmp_path, "train")
    df.loc[2, "valence"] = INVALID_VA
    return df


def test_frame_batches_follow_the_conventions(frames):
    dls = frame_dls(frames, frames, size=16, bs=4, device="cpu", augment=True)
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert set(y) == {"expr", "va", "au"} and y["expr"].dtype == torch.long
    assert y["va"].shape == (4, 2) and y["au"].shape == (4, 12)
    xv, yv = next(iter(dls.valid))
    assert yv["expr"].tolist() == frames["expr"].tolist()[:4]      # validation keeps order
    assert yv["va"][2, 0].item() == INVALID_VA                     # the sentinel travels into the batch
    # a solid-colour image comes back as its colour after denormalisation (no augmentation on valid)
    assert torch.allclose(denormalize(xv[0]).mean((1, 2)), torch.tensor([120, 80, 60]) / 255, atol=0.03)
    only = frame_dls(frames, frames, targets=("va",), size=16, bs=4, device="cpu")
    assert set(only.one_batch()[1]) == {"va"} and only.n_inp == 1


def test_balanced_sampler_and_missing_target(frames):
    dls = frame_dls(frames, frames, targets=("expr",), size=16, bs=4, sampler="balanced", device="cpu")
    assert len(list(dls.train)) >= 1
    with pytest.raises(KeyError, match="valence"):
        frame_dls(frames.drop(columns=["valence"]), frames, targets=("va",), size=16, device="cpu")


def test_clip_indices_are_causal_and_padded():
    df = pd.DataFrame({"video": ["b", "a", "a", "b", "a", "a"], "frame": [2, 3, 1, 1, 2, 7]})
    clips = clip_indices(df, 3)
    frame = df["frame"].to_numpy()
    video = df["video"].to_numpy()
    for i, clip in enumerate(clips):
        assert clip[-1] == i
        assert (video[clip] == video[i]).all() and (frame[clip] <= frame[i]).all()
        assert (np.diff(frame[clip]) >= 0).all()
    assert clips[5].tolist() == [4, 1, 5]            # a: frames 2, 3, 7
    assert clips[2].tolist() == [2, 2, 2]            # a's first frame: padded by repetition
    assert clips[0].tolist() == [3, 3, 0]


def test_clip_batches_of_images_and_features(frames):
    dls = clip_dls(frames, frames, s=3, size=16, bs=2, device="cpu")
    x, y = dls.one_batch()
    assert x.shape == (2, 3, 3, 16, 16) and set(y) == {"expr", "va"}
    feats = np.arange(len(frames), dtype=np.float32)[:, None].repeat(5, 1)
    f = clip_dls(frames, frames, s=3, bs=len(frames), features=(feats, feats), device="cpu")
    xv, yv = next(iter(f.valid))
    assert xv.shape == (len(frames), 3, 5)
    assert torch.equal(xv[:, -1, 0], torch.arange(len(frames), dtype=torch.float32))   # last = the frame itself
    by_path = {p: feats[i] for i, p in enumerate(frames["path"])}
    g = clip_dls(frames, frames, s=3, bs=len(frames), features=by_path, device="cpu")
    assert torch.equal(next(iter(g.valid))[0], xv)
    with pytest.raises(ValueError, match="rows"):
        clip_dls(frames, frames, s=3, features=(feats[:2], feats), device="cpu")


def test_video_batches(tmp_path):
    hume(tmp_path, [("00001", "Train", [0.5] * 7), ("00002", "Train", [0.2] * 7)], frames={"00001": 5, "00002": 2})
    tr = read_hume(tmp_path, "train")
    with pytest.warns(UserWarning, match="truncated"):
        dls = video_dls(tr, tr, t=4, size=8, bs=2, device="cpu")
    x, lengths, y = next(iter(dls.valid))
    assert x.shape == (2, 4, 3, 8, 8) and lengths.tolist() == [4, 2] and dls.n_inp == 2
    assert y["intensity"].shape == (2, 7)
    assert torch.all(x[1, 2:] == (0 - MEAN.view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))
    feats = {"00001": np.ones((5, 3)), "00002": np.ones((2, 3))}
    xf, lf, _ = next(iter(video_dls(tr, tr, t=6, bs=2, features=feats, device="cpu").valid))
    assert xf.shape == (2, 6, 3) and xf[1, 2:].abs().sum() == 0 and lf.tolist() == [5, 2]
    bad = tr.copy()
    bad.loc[1, "Fear"] = np.nan
    with pytest.raises(ValueError, match="00002"):
        video_dls(bad, tr, t=4, size=8, device="cpu")


def test_corrupt_jpeg_is_dropped_and_named_when_building(tmp_path, frames):
    path = frames["path"].iloc[3]
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    msg = f"image {path} is a truncated JPEG (no end-of-image marker)"
    with pytest.warns(UserWarning) as caught:
        dls = frame_dls(frames, frames, size=16, device="cpu")
    assert [str(w.message) for w in caught] == [
        f"dropped 2 damaged image(s) (1 train, 1 valid) and their rows: {msg}; {msg} — all of them in dls.damaged"]
    assert dls.damaged == {"train": [(path, msg)], "valid": [(path, msg)]}
    _, yv = next(iter(dls.valid))
    assert len(dls.valid.dataset) == len(frames) - 1
    assert yv["expr"].tolist() == frames["expr"].drop(index=3).tolist()[:len(yv["expr"])]
    with pytest.raises(ValueError, match=r"00004\.jpg is a truncated JPEG"):
        load_image(path, 16)
    open(path, "wb").write(b"not an image at all")
    with pytest.raises(ValueError, match="could not be decoded"):
        load_image(path, 16)
    assert load_image(jpg(tmp_path / "ok.jpg"), 16).shape == (3, 16, 16)


def test_a_fastai_learner_trains_on_the_world(tiny_world):
    from fastai.learner import Learner

    tr, va = read_abaw_multitask(tiny_world, "train"), read_abaw_multitask(tiny_world, "val")
    dls = frame_dls(tr, va, targets=("expr",), size=32, bs=32, device="cpu")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten(), torch.nn.Linear(8, 7))

        def forward(self, x):
            return {"expr": self.body(x)}

    def loss(pred, y):
        keep = y["expr"] >= 0
        return torch.nn.functional.cross_entropy(pred["expr"][keep], y["expr"][keep])

    learn = Learner(dls, Net(), loss_func=loss)
    learn.fit(1, 1e-2)
    assert np.isfinite(learn.recorder.values[-1][0])


def test_augmentation_flips_and_jitters_training_batches_only(tmp_path):
    import cv2
    paths = []
    for i in range(32):
        img = np.zeros((16, 16, 3), np.uint8)
        img[:, :8] = (0, 0, 200)                    # left half red (BGR), right half black
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        paths.append(str(tmp_path / f"{i}.png"))
    df = pd.DataFrame({"path": paths, "expr": 0})
    dls = frame_dls(df, df, targets=("expr",), size=16, bs=32, device="cpu", seed=0)
    x, _ = dls.one_batch()
    red = denormalize(x)[:, 0]
    flipped = red[:, :, 8:].mean((1, 2)) > red[:, :, :8].mean((1, 2))
    assert 0 < flipped.sum() < 32                        # some, not all, flipped
    assert red[:, :, :8].mean((1, 2)).std() > 0.01 or red[:, :, 8:].mean((1, 2)).std() > 0.01   # jittered
    xv, _ = next(iter(dls.valid))
    assert torch.allclose(xv, xv[:1].expand_as(xv))      # validation: untouched, identical images


def test_a_learner_takes_two_inputs_from_video_batches(tmp_path):
    from fastai.learner import Learner

    hume(tmp_path, [(f"{i:05d}", "Train", [0.1 * (i % 7)] * 7) for i in range(1, 5)], frames={"00001": 2, "00002": 5})
    tr = read_hume(tmp_path, "train")
    dls = video_dls(tr, tr, t=5, size=8, bs=2, device="cpu")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 7)

        def forward(self, x, lengths):
            mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).float()
            pooled = (x.mean((-1, -2)) * mask[..., None]).sum(1) / lengths[:, None]
            return {"intensity": self.head(pooled)}

    learn = Learner(dls, Net(), loss_func=lambda p, y: ((p["intensity"] - y["intensity"]) ** 2).mean())
    learn.fit(1, 1e-2)
    assert np.isfinite(learn.recorder.values[-1][0])
