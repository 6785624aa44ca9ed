"""Parity with transformers' PyTorch VideoMAE: random weights (every parameter), written with
save_pretrained (or as single files) and read back by `from_pretrained`; float32 outputs must
agree to 1e-5."""

import json
import zlib
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import reference
import videomae_keras as vk

TOL = 1e-5


def _save_folder(model, folder, **kwargs):
    model.save_pretrained(folder, **kwargs)
    return folder


def _keras_out(model, video, mask=None):
    return model(video) if mask is None else model([video, mask])


SMALL_CASES = {
    "classifier_mean_pooling": ("classifier", {}),
    "classifier_first_token": ("classifier", dict(use_mean_pooling=False)),
    "classifier_16_heads_8_frames": (
        "classifier",
        dict(num_frames=8, hidden_size=64, num_attention_heads=16, intermediate_size=96),
    ),
    "classifier_non_square": ("classifier", dict(image_size=[32, 48])),
    "classifier_no_qv_bias": ("classifier", dict(qkv_bias=False)),
    "pretrainer_final_norm": ("pretrainer", dict(use_mean_pooling=False)),
    "pretrainer_no_final_norm": ("pretrainer", dict(use_mean_pooling=True)),
    "pretrainer_no_norm_pix": ("pretrainer", dict(use_mean_pooling=False, norm_pix_loss=False)),
    "backbone_final_norm": ("backbone", dict(use_mean_pooling=False)),
    "backbone_mean_pooling_config": ("backbone", dict(use_mean_pooling=True)),
}


@pytest.mark.parametrize("case", sorted(SMALL_CASES))
def test_small_configs_via_save_pretrained(case, tmp_path, record_parity):
    task, overrides = SMALL_CASES[case]
    config = dict(reference.SMALL, **overrides)
    hf = reference.hf_model(task, seed=zlib.crc32(case.encode()) % 1000, **config)
    pixels, video = reference.random_video(config, batch=2, seed=1)
    folder = _save_folder(hf, str(tmp_path / "hf"))
    assert json.load(open(os.path.join(folder, "config.json")))["architectures"]

    if task == "classifier":
        model = vk.from_pretrained(folder)
        assert model.load_report.missing == [] and model.load_report.unexpected == []
        diff = record_parity("logits", model(video), reference.hf_outputs(hf, pixels))
    else:
        mask = reference.tube_masks(config, batch=2, ratio=0.75, seed=2)
        model = vk.from_pretrained(folder, num_masked=int(mask[0].sum()))
        label = "predictions" if task == "pretrainer" else "visible tokens"
        diff = record_parity(label, model([video, mask]), reference.hf_outputs(hf, pixels, mask))
    assert diff <= TOL


def test_backbone_all_tokens(tmp_path, record_parity):
    config = dict(reference.SMALL, use_mean_pooling=False)
    hf = reference.hf_model("backbone", seed=5, **config)
    pixels, video = reference.random_video(config, batch=2, seed=3)
    model = vk.from_pretrained(_save_folder(hf, str(tmp_path / "hf")))
    assert isinstance(model, vk.VideoMAEBackbone) and model.num_masked is None
    assert record_parity("tokens", model(video), reference.hf_outputs(hf, pixels)) <= TOL


def test_pretrainer_with_random_masks(tmp_path, record_parity):
    """Masks that are not tubes (HF's tests mask the first tokens) work with num_masked."""
    config = dict(reference.SMALL, use_mean_pooling=False)
    hf = reference.hf_model("pretrainer", seed=6, **config)
    pixels, video = reference.random_video(config, batch=3, seed=4)
    n = 2 * 4 * 4
    mask = np.zeros((3, n), bool)
    mask[0, :22] = True  # HF tester style: the first tokens
    mask[1, -22:] = True
    mask[2, np.random.default_rng(0).permutation(n)[:22]] = True
    model = vk.from_pretrained(_save_folder(hf, str(tmp_path / "hf")), num_masked=22)
    diff = record_parity("predictions", model([video, mask]), reference.hf_outputs(hf, pixels, mask))
    assert diff <= TOL


def test_sharded_safetensors_folder(tmp_path, record_parity):
    config = dict(reference.SMALL)
    hf = reference.hf_model("classifier", seed=7, **config)
    folder = _save_folder(hf, str(tmp_path / "hf"), max_shard_size="20KB")
    assert os.path.exists(os.path.join(folder, "model.safetensors.index.json"))
    pixels, video = reference.random_video(config, seed=5)
    model = vk.from_pretrained(folder)
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= TOL


def test_pytorch_model_bin_folder_with_legacy_bias_names(tmp_path, record_parity):
    """transformers v4 layout: pytorch_model.bin with attention.attention.q_bias / v_bias."""
    config = dict(reference.SMALL, use_mean_pooling=False)
    hf = reference.hf_model("pretrainer", seed=8, **config)
    folder = tmp_path / "hf"
    folder.mkdir()
    hf.config.to_json_file(str(folder / "config.json"))
    state = {}
    for key, value in hf.state_dict().items():
        key = key.replace("attention.attention.query.bias", "attention.attention.q_bias")
        key = key.replace("attention.attention.value.bias", "attention.attention.v_bias")
        state[key] = value
    assert any(k.endswith("q_bias") for k in state)
    torch.save(state, folder / "pytorch_model.bin")
    pixels, video = reference.random_video(config, seed=6)
    mask = reference.tube_masks(config, ratio=0.5, seed=3)
    model = vk.from_pretrained(str(folder), num_masked=int(mask[0].sum()))
    diff = record_parity("predictions", model([video, mask]), reference.hf_outputs(hf, pixels, mask))
    assert diff <= TOL


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_single_file_with_v5_bias_names(suffix, tmp_path, record_parity):
    """A bare state dict as transformers v5 holds it in memory (query.bias / value.bias), no
    config.json: the shapes give the architecture; heads and clip size are passed."""
    config = dict(reference.SMALL)
    hf = reference.hf_model("classifier", seed=9, **config)
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.endswith("query.bias") for k in state)
    path = str(tmp_path / ("weights" + suffix))
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    pixels, video = reference.random_video(config, seed=7)
    model = vk.from_pretrained(path, num_heads=4, num_frames=4, image_size=32)
    assert model.load_report.layout == "transformers"
    # transformers conventions without a config: 1e-12 in blocks, 1e-5 in fc_norm.
    assert model.encoder.layer_norm_epsilon == 1e-12
    assert model.get_layer("fc_norm").epsilon == 1e-5
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= TOL


@pytest.mark.slow
def test_full_vit_b_classifier(tmp_path, record_parity):
    hf = reference.hf_model("classifier", seed=10, **reference.VIT_B)
    pixels, video = reference.random_video(reference.VIT_B, batch=1, seed=8)
    model = vk.from_pretrained(_save_folder(hf, str(tmp_path / "hf")))
    assert model.count_params() == sum(p.numel() for p in hf.parameters())
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= TOL


@pytest.mark.slow
def test_full_vit_b_pretrainer(tmp_path, record_parity):
    config = dict(use_mean_pooling=False)  # as MCG-NJU/videomae-base
    hf = reference.hf_model("pretrainer", seed=11, **config)
    pixels, video = reference.random_video(config, batch=1, seed=9)
    mask = reference.tube_masks(config, batch=1, ratio=0.9, seed=4)
    assert mask.sum() == 1408
    model = vk.from_pretrained(_save_folder(hf, str(tmp_path / "hf")))
    assert model.num_masked == 1408  # tube masking at 0.9 is the default
    assert model.count_params() == sum(p.numel() for p in hf.parameters())
    diff = record_parity("predictions", model([video, mask]), reference.hf_outputs(hf, pixels, mask))
    assert diff <= TOL
