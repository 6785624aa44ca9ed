"""Official-format checkpoints (MCG-NJU/VideoMAE, OpenGVLab/VideoMAEv2 key names), saved with
torch.save under each wrapper the official scripts use, must give transformers' outputs for
the same weights, with LayerNorm epsilon at the official 1e-6 on both sides."""

import numpy as np
import pytest
import torch

import reference
import videomae_keras as vk

TOL = 1e-5

# Official widths need no head-count argument: heads come from the official table.
OFFICIAL_SMALL = dict(
    image_size=32,
    patch_size=8,
    num_frames=4,
    hidden_size=384,  # ViT-S width: 6 heads in the official table
    num_hidden_layers=2,
    num_attention_heads=6,
    intermediate_size=1536,
    decoder_hidden_size=192,  # ViT-S decoder: 3 heads
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=3,
    decoder_intermediate_size=768,
    num_labels=5,
)

WRAPPERS = {
    "raw": dict(wrapper=None, prefix=""),
    "model": dict(wrapper="model", prefix=""),
    "module": dict(wrapper="module", prefix=""),
    "module_ddp_prefix": dict(wrapper="module", prefix="module."),
    "model_compile_prefix": dict(wrapper="model", prefix="_orig_mod."),
    "raw_backbone_prefix": dict(wrapper=None, prefix="backbone."),
}


def _official_pair(task, seed, tmp_path, wrapper, prefix, **config):
    hf = reference.hf_model(task, seed=seed, **config)
    reference.set_official_epsilons(hf)
    state = reference.official_state_dict(hf)
    path = reference.save_official(state, str(tmp_path / "checkpoint.pth"), wrapper, prefix)
    return hf, state, path


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_finetuned_checkpoint(wrapper, tmp_path, record_parity):
    config = dict(OFFICIAL_SMALL)
    hf, state, path = _official_pair("classifier", 21, tmp_path, **WRAPPERS[wrapper], **config)
    assert "blocks.0.attn.qkv.weight" in state and "fc_norm.weight" in state
    pixels, video = reference.random_video(config, seed=11)
    model = vk.from_pretrained(path, num_frames=4, image_size=32)
    assert isinstance(model, vk.VideoMAEClassifier)
    assert model.encoder.num_heads == 6 and model.encoder.layer_norm_epsilon == 1e-6
    assert model.get_layer("fc_norm").epsilon == 1e-6
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= TOL


@pytest.mark.parametrize("wrapper", ["raw", "model", "module_ddp_prefix", "model_compile_prefix"])
def test_pretraining_checkpoint(wrapper, tmp_path, record_parity):
    config = dict(OFFICIAL_SMALL, use_mean_pooling=False)
    hf, state, path = _official_pair("pretrainer", 22, tmp_path, **WRAPPERS[wrapper], **config)
    assert "encoder.blocks.0.attn.q_bias" in state and "encoder_to_decoder.weight" in state
    pixels, video = reference.random_video(config, seed=12)
    mask = reference.tube_masks(config, ratio=0.75, seed=13)
    model = vk.from_pretrained(path, num_frames=4, image_size=32, mask_ratio=0.75)
    assert isinstance(model, vk.VideoMAEPretrainer)
    assert model.decoder.num_heads == 3 and model.decoder.norm_epsilon == 1e-6
    diff = record_parity("predictions", model([video, mask]), reference.hf_outputs(hf, pixels, mask))
    assert diff <= TOL


def test_first_token_checkpoint(tmp_path, record_parity):
    """`--use_cls` fine-tunes: norm.* instead of fc_norm.*, head on the first token."""
    config = dict(OFFICIAL_SMALL, use_mean_pooling=False)
    hf, state, path = _official_pair("classifier", 23, tmp_path, None, "", **config)
    assert "norm.weight" in state and "fc_norm.weight" not in state
    pixels, video = reference.random_video(config, seed=14)
    model = vk.from_pretrained(path, num_frames=4, image_size=32)
    assert model.get_config()["use_mean_pooling"] is False
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= TOL


def test_encoder_only_pretraining_file(tmp_path, record_parity):
    """The released V1 ViT-H pretrained file holds only `encoder.*` (no decoder, no
    mask_token): it loads as a backbone with its final norm."""
    config = dict(OFFICIAL_SMALL, use_mean_pooling=False)
    hf = reference.hf_model("backbone", seed=24, **config)
    reference.set_official_epsilons(hf)
    state = {"encoder." + k: v for k, v in reference.official_state_dict(hf).items()}
    path = reference.save_official(state, str(tmp_path / "vit_h_pt.pth"), "module")
    pixels, video = reference.random_video(config, seed=15)
    model = vk.from_pretrained(path, num_frames=4, image_size=32)
    assert isinstance(model, vk.VideoMAEBackbone)
    assert record_parity("tokens", model(video), reference.hf_outputs(hf, pixels)) <= TOL


def test_pretrained_file_into_finetuning_model(tmp_path):
    """Fine-tuning starts: the encoder transfers; fc_norm and the head stay fresh; decoder
    keys are reported as unused (strict=False), as run_class_finetuning.py does."""
    config = dict(OFFICIAL_SMALL, use_mean_pooling=False)
    hf, state, path = _official_pair("pretrainer", 25, tmp_path, "model", "", **config)
    model = vk.VideoMAE_ViTS16FT(
        num_classes=5, num_frames=4, image_size=32, patch_size=8, depth=2
    )
    head_before = np.array(model.get_layer("head").kernel)
    with pytest.raises(ValueError, match="missing in the checkpoint"):
        vk.load_pytorch_weights(model, path)
    report = vk.load_pytorch_weights(model, path, strict=False)
    assert report.missing == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert "mask_token" in report.unexpected and "norm.weight" in report.unexpected
    np.testing.assert_array_equal(np.array(model.get_layer("head").kernel), head_before)
    np.testing.assert_array_equal(
        np.array(model.encoder.blocks[1].attn.q_bias),
        state["encoder.blocks.1.attn.q_bias"].numpy(),
    )


def test_fused_qkv_bias_checkpoint(tmp_path, record_parity):
    """Some ports keep one fused qkv bias; its q and v thirds load, the k third cancels."""
    config = dict(OFFICIAL_SMALL)
    hf, state, _ = _official_pair("classifier", 26, tmp_path, None, "", **config)
    fused = {}
    for key, value in state.items():
        if key.endswith("attn.q_bias"):
            prefix = key[: -len("q_bias")]
            k_bias = torch.randn(value.shape)  # any k bias: it cannot change the output
            fused[prefix + "qkv.bias"] = torch.cat([value, k_bias, state[prefix + "v_bias"]])
        elif not key.endswith("attn.v_bias"):
            fused[key] = value
    path = reference.save_official(fused, str(tmp_path / "fused.pth"))
    pixels, video = reference.random_video(config, seed=16)
    model = vk.from_pretrained(path, num_frames=4, image_size=32)
    assert any("key bias" in note for note in model.load_report.notes)
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= TOL


def test_checkpoint_training_metadata_is_readable_but_code_is_refused(tmp_path):
    """weights_only loading accepts the argparse.Namespace official scripts store, and
    refuses a pickle that would run code."""
    import os
    import pickle

    config = dict(OFFICIAL_SMALL)
    _, _, path = _official_pair("classifier", 27, tmp_path, "model", "", **config)
    assert vk.from_pretrained(path, num_frames=4, image_size=32) is not None

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    plain = tmp_path / "evil_pickle.pth"
    with open(plain, "wb") as f:
        pickle.dump({"model": Exploit()}, f, protocol=2)  # the protocol torch.save uses
    zipped = tmp_path / "evil_zip.pth"
    torch.save({"model": Exploit()}, zipped)  # torch's own zip container
    for evil in (plain, zipped):
        with pytest.raises(ValueError, match="Refusing to load.*system"):
            vk.from_pretrained(str(evil))
    assert not marker.exists()
