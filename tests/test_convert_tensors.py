"""Lazy checkpoint tensors: shapes known before any data is read, each tensor read when it is
assigned, the same values as an eager read for every file kind (memory-mapped zip .pth,
legacy .pth, float32 and bfloat16 safetensors)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import keras
import reference
import videomae_keras as vk
from videomae_keras.convert import tensors
from videomae_keras.convert.tensors import LazyTensor

SMALL = dict(reference.SMALL)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    hf = reference.hf_model("classifier", seed=41, **SMALL)
    path = tmp_path_factory.mktemp("official") / "finetuned.pth"
    state = reference.official_state_dict(hf)
    reference.save_official(state, str(path), wrapper="model")
    return str(path), {k: v.numpy() for k, v in state.items()}


def _counting_reads(monkeypatch):
    reads = []
    original = LazyTensor.load

    def load(self):
        reads.append(self.shape)
        return original(self)

    monkeypatch.setattr(LazyTensor, "load", load)
    return reads


def test_split_and_concatenate_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 4)).astype("float32"), rng.standard_normal((3, 4))
    lazy_a = LazyTensor(a.shape, "float32", lambda: a)
    lazy_b = LazyTensor(b.shape, "float64", lambda: b)
    for ours, theirs in zip(tensors.split(lazy_a, 3), np.split(a, 3)):
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours.load(), theirs)
    joined = tensors.concatenate([lazy_a, lazy_b], axis=0)
    assert joined.shape == (9, 4)
    np.testing.assert_array_equal(np.asarray(joined), np.concatenate([a, b]))
    with pytest.raises(ValueError, match="do not join"):
        tensors.concatenate([lazy_a, LazyTensor((2, 5), "float32", lambda: None)])
    with pytest.raises(ValueError, match="equal parts"):
        tensors.split(lazy_b, 2)


def test_lazy_read_gives_the_eager_values(official_file):
    path, expected = official_file
    lazy = vk.read_checkpoint(path, lazy=True).state
    assert all(isinstance(v, LazyTensor) for v in lazy.values())
    assert {k: v.shape for k, v in lazy.items()} == {k: v.shape for k, v in expected.items()}
    for key, value in lazy.items():
        # twice: the first read hands the mapped pages back, the second reads them again
        np.testing.assert_array_equal(value.load(), expected[key])
        np.testing.assert_array_equal(value.load(), expected[key])
    eager = vk.read_checkpoint(path).state
    assert all(isinstance(v, np.ndarray) for v in eager.values())


def test_legacy_pth_and_bfloat16_safetensors(tmp_path, official_file):
    path, expected = official_file
    legacy = str(tmp_path / "legacy.pth")
    torch.save({"model": {k: torch.from_numpy(v) for k, v in expected.items()}}, legacy,
               _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    for key, value in vk.read_checkpoint(legacy).state.items():
        np.testing.assert_array_equal(value, expected[key])
    bf16 = {k: torch.from_numpy(v).bfloat16() for k, v in expected.items()}
    half = str(tmp_path / "bf16.safetensors")
    save_file(bf16, half)
    lazy = vk.read_checkpoint(half, lazy=True).state
    assert lazy["head.weight"].dtype == "bfloat16"
    for key, value in lazy.items():
        np.testing.assert_array_equal(value.load(), bf16[key].float().numpy())


def test_shapes_are_checked_before_any_tensor_is_read(official_file, monkeypatch):
    path, _ = official_file
    model = vk.VideoMAEClassifier.from_arguments(
        num_classes=3, num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=2,
        num_heads=4, mlp_dim=37)
    reads = _counting_reads(monkeypatch)
    with pytest.raises(ValueError, match="shape mismatches"):
        vk.load_pytorch_weights(model, path)
    assert reads == []


def test_each_tensor_is_read_once_and_assigned(official_file, monkeypatch):
    path, expected = official_file
    reads = _counting_reads(monkeypatch)
    model = vk.from_pretrained(path, num_heads=4, num_frames=4, image_size=32)
    assert len(reads) == len(expected) == model.load_report.matched
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("head").kernel),
                                  expected["head.weight"].T)
