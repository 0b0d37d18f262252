"""The safe VGGFace2 loader: loads pickles of numpy arrays by either naming scheme, refuses code."""
import os
import pickle

import numpy as np
import pytest
import torch

from affectlab.models.backbones import (Backbone, UnsafePickleError, WeightMismatchError, load_vggface2,
                                        read_weight_pickle, _torch_name)


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
    with pytest.warns(UserWarning) as caught:           # one tensor missing: a partial load, said aloud
        report = load_vggface2(dst, path)
    assert [str(w.message) for w in caught] == [
        f"{path}: partial load — resnet18_ft_weight.pkl: matched 99 of the model's 100 tensors (99%); 1 missing, "
        "1 unexpected, 0 with a different shape; the 1 missing tensor(s) keep their random initial values "
        "(e.g. layer4.1.bn2.running_var)"]
    assert report.missing == ["layer4.1.bn2.running_var"]
    assert report.unexpected == ["fc.weight"]
    w = dst.net.state_dict()["layer1.0.conv1.weight"]
    torch.testing.assert_close(w, src.net.state_dict()["layer1.0.conv1.weight"] + 1.0)
    assert "resnet18_ft_weight.pkl" in str(report)


def test_a_complete_file_loads_without_a_word(tmp_path, recwarn):
    src = Backbone("resnet18")
    arrays = {k: v.numpy() for k, v in src.net.state_dict().items() if "num_batches" not in k}
    arrays["fc.weight"] = np.zeros((8631, 512), np.float32)   # the identity classifier is expected
    report = load_vggface2(Backbone("resnet18"), _dump(tmp_path / "w.pkl", arrays))
    assert (len(report.loaded), report.model_tensors, report.missing) == (100, 100, [])
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_a_file_whose_names_match_nothing_is_refused(tmp_path):
    target = Backbone("resnet18")
    before = {k: v.clone() for k, v in target.net.state_dict().items()}
    arrays = {f"block{i}.kernel_{j}": np.ones((4, 4), np.float32) for i in range(20) for j in range(3)}
    path = _dump(tmp_path / "imagenet_vgg16.pkl", arrays)
    with pytest.raises(WeightMismatchError) as e:
        load_vggface2(target, path)
    assert str(e.value) == (
        f"{path}: not weights for this model — imagenet_vgg16.pkl: matched 0 of the model's 100 tensors (0%); "
        "100 missing, 60 unexpected, 0 with a different shape; fewer than 50% of its tensors matched (file names "
        "such as 'block0.kernel_0', 'block0.kernel_1', 'block0.kernel_2'). Is it the right file, for this backbone?")
    assert all(torch.equal(before[k], v) for k, v in target.net.state_dict().items())   # untouched


def test_a_file_matching_under_half_of_the_model_is_refused(tmp_path):
    src = Backbone("resnet18")
    names = [k for k in src.net.state_dict() if "num_batches" not in k][:49]
    path = _dump(tmp_path / "half.pkl", {k: src.net.state_dict()[k].numpy() for k in names})
    with pytest.raises(WeightMismatchError, match=r"half\.pkl: matched 49 of the model's 100 tensors \(49%\); "
                                                  r"51 missing, 0 unexpected"):
        load_vggface2(Backbone("resnet18"), path)
    names = [k for k in src.net.state_dict() if "num_batches" not in k][:50]     # exactly half: loads, warns
    path = _dump(tmp_path / "half.pkl", {k: src.net.state_dict()[k].numpy() for k in names})
    with pytest.warns(UserWarning, match=r"partial load — half\.pkl: matched 50 of the model's 100 tensors"):
        assert len(load_vggface2(Backbone("resnet18"), path).loaded) == 50


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
    w = target.net.state_dict()["layer1.0.se.fc1.weight"].clone()
    arrays = {"conv2_1_1x1_down": {"weight": np.full(tuple(w.shape), 0.25, np.float32)},
              "conv1/7x7_s2/bn": {"mean": np.arange(64, dtype=np.float32)}}
    # the names map (both tensors are found) but two of 329 is not a weight file for this model
    with pytest.raises(WeightMismatchError, match=r"senet50_ft\.pkl: matched 2 of the model's 329 tensors \(1%\); "
                                                  r"327 missing, 0 unexpected"):
        load_vggface2(target, _dump(tmp_path / "senet50_ft.pkl", arrays))
    assert not torch.any(target.net.state_dict()["layer1.0.se.fc1.weight"] == 0.25)
    with pytest.raises(ValueError, match="strict"):
        load_vggface2(target, tmp_path / "senet50_ft.pkl", strict=True)
    # the whole network in Caffe names loads
    full = {}
    for k, v in target.net.state_dict().items():
        if "num_batches" in k:
            continue
        layer, _, param = k.rpartition(".")
        m = __import__("re").match(r"layer(\d)\.(\d+)\.(conv|bn)(\d)$", layer)
        if m:
            part = {"1": "1x1_reduce", "2": "3x3", "3": "1x1_increase"}[m.group(4)]
            name = f"conv{int(m.group(1)) + 1}_{int(m.group(2)) + 1}_{part}" + ("/bn" if m.group(3) == "bn" else "")
            param = {"running_mean": "mean", "running_var": "var"}.get(param, param)
            full.setdefault(name, {})[param] = v.numpy() + 0.5
        else:
            full[k] = v.numpy() + 0.5
    report = load_vggface2(target, _dump(tmp_path / "senet50_caffe.pkl", full))
    assert (len(report.loaded), report.missing, report.unexpected) == (329, [], [])
    assert torch.all(target.net.state_dict()["layer1.0.se.fc1.weight"] == w + 0.5)


def test_shape_mismatch_is_refused_and_nothing_loaded(tmp_path):
    src, target = Backbone("resnet18"), Backbone("resnet18")
    before = target.net.conv1.weight.clone()
    arrays = {k: v.numpy() for k, v in src.net.state_dict().items() if "num_batches" not in k}
    arrays["layer1.0.conv1.weight"] = np.ones((3, 3), np.float32)
    path = _dump(tmp_path / "resnet34.pkl", arrays)
    with pytest.raises(WeightMismatchError) as e:
        load_vggface2(target, path)
    assert str(e.value) == (
        f"{path}: not weights of this ResNet — resnet34.pkl: matched 99 of the model's 100 tensors (99%); 1 missing, "
        "0 unexpected, 1 with a different shape (e.g. layer1.0.conv1.weight: file (3, 3) vs model (64, 64, 3, 3)); "
        "a tensor of another shape means another architecture (e.g. ResNet-18 weights for a ResNet-50)")
    assert torch.equal(before, target.net.conv1.weight)


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
