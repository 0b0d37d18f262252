"""The safe VGGFace2 loader: the PyTorch port's layout (its SE gates conv4 / conv5) loads into the release
network, every backbone tensor or an error; code in a pickle is refused. The release network's features
against an independent reference: test_vggface2_release.py."""
import functools
import os
import pickle
import re

import numpy as np
import pytest
import torch

from affectlab.models.backbones import (Backbone, UnsafePickleError, VGGFace2Input, WeightMismatchError,
                                        backbone_name, load_vggface2, read_weight_pickle)


def _dump(path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@functools.cache
def _release_state(arch: str) -> dict:
    return {k: v.numpy() for k, v in Backbone(arch, vggface2=True).net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def _port_arrays(arch: str, shift: float = 0.0) -> dict:
    """A release network's tensors under the port's names (its SE gates conv4 / conv5), plus ``shift``."""
    return {re.sub(r"\.se\.fc([12])\.", lambda m: f".conv{int(m.group(1)) + 3}.", k): v + shift
            for k, v in _release_state(arch).items()}


@pytest.fixture(scope="module")
def senet50_file(tmp_path_factory):
    arrays = _port_arrays("seresnet50", 0.5)
    return arrays, _dump(tmp_path_factory.mktemp("w") / "senet50_ft_weight.pkl", arrays, protocol=4)


def test_port_names_map_onto_the_backbone():
    assert backbone_name("layer1.0.conv4.weight") == "layer1.0.se.fc1.weight"
    assert backbone_name("layer3.5.conv4.bias") == "layer3.5.se.fc1.bias"
    assert backbone_name("layer4.2.conv5.weight") == "layer4.2.se.fc2.weight"
    assert backbone_name("layer2.0.conv5.bias") == "layer2.0.se.fc2.bias"
    for same in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.conv3.weight",
                 "layer3.0.bn3.running_mean", "layer4.0.downsample.0.weight", "layer4.0.downsample.1.bias"):
        assert backbone_name(same) == same
    # names the port does not use map onto nothing of the SE gates
    assert backbone_name("layer1.0.conv_down.weight") == "layer1.0.conv_down.weight"
    assert backbone_name("layer1.0.conv4.running_mean") == "layer1.0.conv4.running_mean"


def test_a_senet50_file_fills_every_tensor_se_gates_included(senet50_file, recwarn):
    arrays, path = senet50_file
    body = Backbone("seresnet50", vggface2=True)
    report = load_vggface2(body, path)
    assert (len(report.loaded), report.model_tensors, report.missing, report.unexpected) == (329, 329, [], [])
    assert str(report) == ("senet50_ft_weight.pkl: matched 329 of the model's 329 tensors (100%); 0 missing, "
                           "0 unexpected, 0 with a different shape")
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    se = body.net.layer3[5].se
    for port, ours in (("conv4.weight", se.fc1.weight), ("conv4.bias", se.fc1.bias),
                       ("conv5.weight", se.fc2.weight), ("conv5.bias", se.fc2.bias)):
        assert torch.equal(ours, torch.from_numpy(arrays[f"layer3.5.{port}"]))


def test_the_identity_classifier_is_left_out_and_said(tmp_path):
    arrays = {**_port_arrays("resnet50"), "fc.weight": np.zeros((8631, 2048), np.float32),
              "fc.bias": np.zeros(8631, np.float32)}
    report = load_vggface2(Backbone("resnet50", vggface2=True), _dump(tmp_path / "resnet50_ft_weight.pkl", arrays, 4))
    assert (len(report.loaded), report.missing, report.unexpected) == (265, [], [])
    assert str(report).endswith("; the file's identity classifier (fc.weight, fc.bias: 8631 identities) is not "
                                "part of the backbone and was left out")


def test_a_resnet50_file_for_the_senet50_is_refused(tmp_path):
    path = _dump(tmp_path / "resnet50_ft_weight.pkl", _port_arrays("resnet50", 0.5), protocol=4)
    body = Backbone("seresnet50", vggface2=True)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    with pytest.raises(WeightMismatchError) as e:
        load_vggface2(body, path)
    assert str(e.value) == (
        f"{path}: would leave the backbone partly random — resnet50_ft_weight.pkl: matched 265 of the model's 329 "
        "tensors (81%); 64 missing, 0 unexpected, 0 with a different shape; not in the file: "
        "layer1.0.se.fc1.weight, layer1.0.se.fc1.bias, layer1.0.se.fc2.weight, layer1.0.se.fc2.bias, "
        "layer1.1.se.fc1.weight … (59 more). The SE gates (conv4 / conv5 in the file) belong to "
        "senet50_ft_weight.pkl, for Backbone('seresnet50', vggface2=True); resnet50_ft_weight.pkl is the plain "
        "ResNet-50's, for Backbone('resnet50', vggface2=True). Pass allow_partial=True to load what matches anyway.")
    assert all(torch.equal(before[k], v) for k, v in body.state_dict().items())


def test_a_senet50_file_for_the_resnet50_is_refused(senet50_file):
    _, path = senet50_file
    with pytest.raises(WeightMismatchError, match=r"matched 265 of the model's 265 tensors \(100%\); 0 missing, "
                                                  r"64 unexpected.*no place in the backbone for: "
                                                  r"layer1\.0\.conv4\.weight, layer1\.0\.conv4\.bias"):
        load_vggface2(Backbone("resnet50", vggface2=True), path)


def test_allow_partial_loads_what_matches_and_says_so(tmp_path):
    arrays = _port_arrays("resnet50", 1.0)
    del arrays["layer4.1.bn2.running_var"]
    path = _dump(tmp_path / "cut.pkl", arrays, protocol=4)
    body = Backbone("resnet50", vggface2=True)
    kept = body.net.layer4[1].bn2.running_var.clone()
    with pytest.raises(WeightMismatchError, match=r"cut\.pkl: would leave the backbone partly random — cut\.pkl: "
                                                  r"matched 264 of the model's 265 tensors \(100%\); 1 missing.*"
                                                  r"not in the file: layer4\.1\.bn2\.running_var\."):
        load_vggface2(body, path)
    with pytest.warns(UserWarning) as caught:
        report = load_vggface2(body, path, allow_partial=True)
    assert [str(w.message) for w in caught] == [
        f"{path}: partial load (allow_partial=True) — cut.pkl: matched 264 of the model's 265 tensors (100%); "
        "1 missing, 0 unexpected, 0 with a different shape; the 1 missing tensor(s) keep their random initial "
        "values (first: layer4.1.bn2.running_var)"]
    assert report.missing == ["layer4.1.bn2.running_var"]
    assert torch.equal(body.net.layer4[1].bn2.running_var, kept)
    assert torch.equal(body.net.conv1.weight, torch.from_numpy(arrays["conv1.weight"]))


def test_a_library_resnet_is_refused_the_release_weights(tmp_path):
    path = _dump(tmp_path / "resnet50_ft_weight.pkl", _port_arrays("resnet50"), protocol=4)
    body = Backbone("resnet50")
    before = body.net.conv1.weight.clone()
    with pytest.raises(WeightMismatchError, match=r"resnet50_ft_weight\.pkl: the VGGFace2 weights compute the "
                                                  r"release network.*Backbone\('resnet50', vggface2=True\)"):
        load_vggface2(body, path)
    assert torch.equal(before, body.net.conv1.weight)


def test_the_release_network_exists_for_its_two_architectures_only():
    with pytest.raises(ValueError, match="resnet50 and seresnet50 .* not resnet18"):
        Backbone("resnet18", vggface2=True)
    with pytest.raises(ValueError, match="of width 16"):
        Backbone("resnet50", width=16, vggface2=True)


def test_the_input_conversion_gives_bgr_pixels_minus_the_vggface2_mean():
    from affectlab.data.loaders import MEAN, STD      # what every loader normalises with

    rgb = torch.tensor([[[[0.0, 255.0]], [[128.0, 3.0]], [[255.0, 77.0]]]])        # [1, 3, 1, 2] pixels
    x = (rgb / 255 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)
    bgr = rgb.flip(1) - torch.tensor([91.4953, 103.8827, 131.0912]).view(1, 3, 1, 1)
    torch.testing.assert_close(VGGFace2Input()(x), bgr, rtol=0, atol=1e-4)


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


def test_under_half_is_refused_even_with_allow_partial(tmp_path):
    arrays = _port_arrays("resnet50")
    names = list(arrays)[:132]                                      # 132 of 265
    path = _dump(tmp_path / "half.pkl", {k: arrays[k] for k in names}, protocol=4)
    with pytest.raises(WeightMismatchError, match=r"half\.pkl: matched 132 of the model's 265 tensors \(50%\); "
                                                  r"133 missing, 0 unexpected.*fewer than 50%"):
        load_vggface2(Backbone("resnet50", vggface2=True), path, allow_partial=True)


def test_nested_dicts_are_read_as_dotted_names(tmp_path):
    arrays = read_weight_pickle(_dump(tmp_path / "nested.pkl", {"layer1": {"0": {"conv4": {"bias": np.ones(3)}}}}))
    assert list(arrays) == ["layer1.0.conv4.bias"] and arrays["layer1.0.conv4.bias"].tolist() == [1.0, 1.0, 1.0]


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
