"""Face detection, alignment and cropping on a real photograph that ships with matplotlib, the no-face error,
and running a model over a small video written by the test."""
from __future__ import annotations

import cv2
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib import cbook
from torch import nn

from affectlab import faces, video as vid

matplotlib.use("Agg")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def hopper_path():
    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="module")
def hopper(hopper_path):
    return faces.read_image(hopper_path)


def test_one_face_in_the_shipped_photograph(hopper_path):
    found = faces.crop_faces(hopper_path)
    assert len(found) == 1
    face = found[0]
    assert face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8
    assert face.aligned  # both eyes found
    x, y, w, h = face.box
    assert 100 < w < 400 and 0 <= x and x + w <= 512 and y + h <= 600


def test_crop_size_is_configurable(hopper):
    assert faces.crop_faces(hopper, size=64)[0].crop.shape == (64, 64, 3)


def test_noise_has_no_face_and_says_so():
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(faces.NoFaceFound, match="no face found"):
        faces.crop_faces(noise)
    assert issubclass(faces.NoFaceFound, ValueError)


def test_alignment_follows_the_head_tilt(hopper):
    def angle(deg):
        m = cv2.getRotationMatrix2D((256, 300), deg, 1.0)
        tilted = cv2.warpAffine(hopper, m, (512, 600), borderMode=cv2.BORDER_REPLICATE)
        return faces.crop_faces(tilted)[0].eye_angle

    # rotating the photo clockwise (negative angle) lowers the left eye: the aligner rotates back
    assert angle(-10) > angle(0) + 5
    assert angle(10) < angle(0) - 5


def test_aligned_crop_levels_the_eyes(hopper):
    m = cv2.getRotationMatrix2D((256, 300), -10, 1.0)
    tilted = cv2.warpAffine(hopper, m, (512, 600), borderMode=cv2.BORDER_REPLICATE)
    big = faces.crop_faces(tilted, size=336)[0]  # large enough for the eye cascade to run on the crop
    eyes = faces.find_eyes(big.crop, (40, 40, 256, 256))
    assert eyes is not None
    (lx, ly), (rx, ry) = eyes
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 4


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        faces.read_image(tmp_path / "missing.jpg")
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="could not be decoded"):
        faces.read_image(bad)
    with pytest.raises(FileNotFoundError):
        list(vid.video_faces(tmp_path / "missing.mp4"))
    with pytest.raises(ValueError, match="RGB image"):
        faces.crop_faces(np.zeros((4, 4, 4, 4)))


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path, hopper_path, hopper):
    data = open(hopper_path, "rb").read()
    half = tmp_path / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(half)) is not None  # what OpenCV alone does: a partly grey image, no error
    with pytest.raises(ValueError) as e:
        faces.read_image(half)
    assert str(e.value) == f"image {str(half)!r} is a truncated JPEG (no end-of-image marker)"
    # Zero padding after the end-of-image marker is a whole JPEG: same pixels as the original.
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data + bytes(100))
    assert np.array_equal(faces.read_image(padded), hopper)


def test_truncated_png_and_empty_file_are_errors(tmp_path, hopper):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(hopper, cv2.COLOR_RGB2BGR))
    whole, cut, empty = tmp_path / "whole.png", tmp_path / "cut.png", tmp_path / "empty.jpg"
    whole.write_bytes(buf.tobytes())
    cut.write_bytes(buf.tobytes()[:-20])
    empty.write_bytes(b"")
    assert np.array_equal(faces.read_image(whole), hopper)
    with pytest.raises(ValueError) as e:
        faces.read_image(cut)
    assert str(e.value) == f"image {str(cut)!r} is a truncated PNG (no IEND chunk)"
    with pytest.raises(ValueError) as e:
        faces.read_image(empty)
    assert str(e.value) == f"image {str(empty)!r} is empty (0 bytes)"


class _VAExpr(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.expr, self.va = nn.Linear(4, 7), nn.Linear(4, 2)

    def forward(self, x):
        f = self.body(x)
        return {"expr": self.expr(f), "va": torch.tanh(self.va(f))}


@pytest.fixture(scope="module")
def video(tmp_path_factory, hopper):
    """12 frames at 10 fps: the portrait, with every 4th frame replaced by noise (no face)."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    frame = cv2.resize(cv2.cvtColor(hopper, cv2.COLOR_RGB2BGR), (256, 300))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 300))
    for i in range(12):
        noise = np.random.default_rng(i).integers(0, 256, frame.shape, dtype=np.uint8)
        writer.write(frame if i % 4 else noise)
    writer.release()
    return path


def test_video_faces_skips_frames_without_a_face(video):
    seen = list(vid.video_faces(video))
    assert [i for i, _, _ in seen] == list(range(12))
    assert [f is not None for _, _, f in seen] == [i % 4 != 0 for i in range(12)]
    assert seen[5][1] == pytest.approx(0.5)


def test_predict_video_and_plot(video):
    torch.manual_seed(0)
    df = vid.predict_video(_VAExpr().eval(), video, image_size=32, every=2)
    assert len(df) == 6 and df["face"].tolist() == [False, True, False, True, False, True]
    found = df[df["face"]]
    assert found[["valence", "arousal"]].abs().le(1).all().all()
    assert np.allclose(found.filter(like="p_").sum(1), 1, atol=1e-5)
    assert df.loc[~df["face"], "valence"].isna().all()
    fig = vid.plot_video(df)
    assert len(fig.axes) == 2


def test_to_tensor_shape():
    crops = [np.zeros((112, 112, 3), np.uint8)] * 2
    assert faces.to_tensor(crops, 64).shape == (2, 3, 64, 64)
