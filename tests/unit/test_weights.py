"""The safe VGGFace2 loader: loads pickles of numpy arrays by either naming scheme, refuses code."""
import os
import pickle

import numpy as np
import pytest
import torch

from affectlab.models.backbones import (Backbone, UnsafePickleError, load_vggface2, read_weight_pickle,
                                        _torch_name)


def _dump(path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_pytorch_style_names_load_and_report(tmp_path):
    src = Backbone("resnet18")
    arrays = {k: v.numpy() + 1.0 for k, v in src.net.state_dict().items() if "num_batches" not in k}
    arrays["fc.weight"] = np.zeros((8631, 512), np.float32)   # the identity classifier: not in the backbone
    del arrays["layer4.1.bn2.running_var"]
    path = _dump(tmp_path / "resnet18_ft_weight.pkl", arrays)
    dst = Backbone("resnet18")
    report = load_vggface2(dst, path)
    assert report.missing == ["layer4.1.bn2.running_var"]
    assert report.unexpected == ["fc.weight"]
    w = dst.net.state_dict()["layer1.0.conv1.weight"]
    torch.testing.assert_close(w, src.net.state_dict()["layer1.0.conv1.weight"] + 1.0)
    assert "resnet18_ft_weight.pkl" in str(report)


def test_caffe_style_names_map_onto_the_backbone():
    assert _torch_name("conv1/7x7_s2.weight") == "conv1.weight"
    assert _torch_name("conv1/7x7_s2/bn.running_mean") == "bn1.running_mean"
    assert _torch_name("conv2_1_1x1_reduce.weight") == "layer1.0.conv1.weight"
    assert _torch_name("conv3_4_3x3/bn.bias") == "layer2.3.bn2.bias"
    assert _torch_name("conv5_3_1x1_increase/bn.var") == "layer4.2.bn3.running_var"
    assert _torch_name("conv4_1_1x1_proj.weights") == "layer3.0.downsample.0.weight"
    assert _torch_name("conv4_1_1x1_proj/bn.scale") == "layer3.0.downsample.1.weight"
    assert _torch_name("conv2_1_1x1_down.weight") == "layer1.0.se.fc1.weight"
    assert _torch_name("layer1.0.conv_up.bias") == "layer1.0.se.fc2.bias"


def test_nested_caffe_dict_into_seresnet50(tmp_path):
    target = Backbone("seresnet50")
    w = target.net.state_dict()["layer1.0.se.fc1.weight"]
    arrays = {"conv2_1_1x1_down": {"weight": np.full(tuple(w.shape), 0.25, np.float32)},
              "conv1/7x7_s2/bn": {"mean": np.arange(64, dtype=np.float32)}}
    report = load_vggface2(target, _dump(tmp_path / "senet50_ft.pkl", arrays))
    assert set(report.loaded) == {"layer1.0.se.fc1.weight", "bn1.running_mean"}
    assert torch.all(target.net.state_dict()["layer1.0.se.fc1.weight"] == 0.25)
    assert len(report.missing) > 100
    with pytest.raises(ValueError, match="strict"):
        load_vggface2(target, tmp_path / "senet50_ft.pkl", strict=True)


def test_shape_mismatch_is_listed_not_loaded(tmp_path):
    target = Backbone("resnet18")
    before = target.net.conv1.weight.clone()
    report = load_vggface2(target, _dump(tmp_path / "w.pkl", {"conv1.weight": np.ones((3, 3), np.float32)}))
    assert report.mismatched and torch.equal(before, target.net.conv1.weight)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED_MARKER",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_runs_code_is_refused(tmp_path, monkeypatch, protocol):
    monkeypatch.chdir(tmp_path)
    path = _dump(tmp_path / "evil_weights.pkl", {"conv1.weight": _Evil()}, protocol)
    with pytest.raises(UnsafePickleError, match="evil_weights.pkl.*(system|posix)"):
        load_vggface2(Backbone("resnet18"), path)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_torch_objects_are_refused_too(tmp_path):
    path = _dump(tmp_path / "torch.pkl", {"w": torch.zeros(2)})
    with pytest.raises(UnsafePickleError, match="torch.pkl"):
        read_weight_pickle(path)


def test_not_a_pickle_and_missing_file(tmp_path):
    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="garbage.pkl"):
        read_weight_pickle(bad)
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        read_weight_pickle(tmp_path / "nope.pkl")
    with pytest.raises(ValueError, match="top level"):
        read_weight_pickle(_dump(tmp_path / "list.pkl", [np.zeros(2)]))
