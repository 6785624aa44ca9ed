"""Reference models for parity tests: transformers' PyTorch VideoMAE with every parameter
randomised, and official-format checkpoints built from the documented official key names.

Nothing here uses videomae_keras: the official key map below is written from the official
state-dict layout (facts file section 4), independently of the package's own converter.
"""

import re

import numpy as np
import torch
from transformers import (
    VideoMAEConfig,
    VideoMAEForPreTraining,
    VideoMAEForVideoClassification,
    VideoMAEModel,
)

HF_CLASSES = {
    "classifier": VideoMAEForVideoClassification,
    "pretrainer": VideoMAEForPreTraining,
    "backbone": VideoMAEModel,
}

# A small config that still has several heads and blocks in encoder and decoder.
SMALL = dict(
    image_size=32,
    patch_size=8,
    num_frames=4,
    tubelet_size=2,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    decoder_hidden_size=24,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=3,
    decoder_intermediate_size=29,
    num_labels=7,
)

# Full ViT-B/16, 16 frames at 224 (transformers' defaults).
VIT_B = dict(num_labels=400)


def hf_config(**kwargs):
    return VideoMAEConfig(**kwargs)


def randomize_parameters(model, seed):
    """Draws every parameter afresh (weights, biases, norms, q/v biases, mask token), so a
    wrong or missing mapping cannot hide behind zeros or ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight") and param.ndim == 1:  # LayerNorm scales
                param.copy_(1.0 + 0.2 * noise)
            elif param.ndim == 1 or name.endswith("mask_token"):  # biases, q/v bias, token
                param.copy_(0.2 * noise)
            else:
                fan_in = int(np.prod(param.shape[1:]))
                param.copy_(noise / np.sqrt(fan_in))
    return model


def hf_model(task, seed=0, **config):
    """A transformers model of `task` with all parameters random, in eval mode."""
    model = HF_CLASSES[task](hf_config(**config)).eval()
    randomize_parameters(model, seed)
    names = [n for n, p in model.named_parameters() if torch.all(p == 0) or torch.all(p == 1)]
    assert not names, f"parameters left at a constant: {names}"
    return model


def random_video(config, batch=2, seed=0):
    """(B, T, C, H, W) float32 normalised pixels for transformers, and the same clip channels-last."""
    cfg = hf_config(**config)
    size = cfg.image_size if isinstance(cfg.image_size, (list, tuple)) else (cfg.image_size,) * 2
    rng = np.random.default_rng(seed)
    pixels = rng.standard_normal((batch, cfg.num_frames, cfg.num_channels, *size)).astype("float32")
    return pixels, pixels.transpose(0, 1, 3, 4, 2)


def tube_masks(config, batch=2, ratio=0.75, seed=0):
    """(B, N) bool tube masks, a different spatial pattern per sample, same count each."""
    cfg = hf_config(**config)
    size = cfg.image_size if isinstance(cfg.image_size, (list, tuple)) else (cfg.image_size,) * 2
    frames = cfg.num_frames // cfg.tubelet_size
    per_frame = (size[0] // cfg.patch_size) * (size[1] // cfg.patch_size)
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(batch):
        spatial = np.zeros(per_frame, bool)
        spatial[rng.permutation(per_frame)[: int(ratio * per_frame)]] = True
        masks.append(np.tile(spatial, frames))
    return np.stack(masks)


def hf_outputs(model, pixels, mask=None):
    with torch.no_grad():
        if isinstance(model, VideoMAEForVideoClassification):
            return model(torch.from_numpy(pixels)).logits.numpy()
        out = model(torch.from_numpy(pixels), bool_masked_pos=None if mask is None else torch.from_numpy(mask))
        if isinstance(model, VideoMAEForPreTraining):
            return out.logits.numpy()
        return out.last_hidden_state.numpy()


def set_official_epsilons(model, eps=1e-6):
    """Puts every LayerNorm of a transformers model at the official epsilon (1e-6)."""
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = eps
    return model


# --- official checkpoints, from the documented official key names -------------------------

_BLOCK_RENAMES = (
    ("attention.output.dense.", "attn.proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
)


def official_state_dict(hf_model_):
    """The official-format state dict holding the same weights as a transformers model.

    Fine-tuned: patch_embed.*, blocks.N.*, fc_norm / norm, head. Pretraining: the encoder
    under `encoder.`, then mask_token, encoder_to_decoder.weight, decoder.blocks.N.*,
    decoder.norm, decoder.head. Attention uses one fused qkv weight (rows q, k, v) with
    attn.q_bias / attn.v_bias and no k bias.
    """
    pretraining = isinstance(hf_model_, VideoMAEForPreTraining)
    state = {k: v.detach().clone() for k, v in hf_model_.state_dict().items()}
    encoder = "encoder." if pretraining else ""
    out = {}
    qkv = {}
    for key, value in state.items():
        key = re.sub(r"^videomae\.", "", key)
        if key.startswith("embeddings.patch_embeddings.projection."):
            out[encoder + "patch_embed.proj." + key.rsplit(".", 1)[1]] = value
            continue
        if key.startswith("layernorm."):
            out[encoder + "norm." + key.rsplit(".", 1)[1]] = value
            continue
        if key.startswith("classifier."):
            out["head." + key.rsplit(".", 1)[1]] = value
            continue
        m = re.match(r"^(encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.*)$", key)
        if not m:
            out[key] = value  # fc_norm, mask_token, encoder_to_decoder, decoder.norm/head
            continue
        stack, index, rest = m.groups()
        prefix = (encoder + "blocks." if stack == "encoder.layer" else "decoder.blocks.") + index + "."
        a = re.match(r"^attention\.attention\.(query|key|value)\.weight$", rest)
        if a:
            qkv.setdefault(prefix, {})[a.group(1)] = value
            continue
        if rest in ("attention.attention.q_bias", "attention.attention.query.bias"):
            out[prefix + "attn.q_bias"] = value
            continue
        if rest in ("attention.attention.v_bias", "attention.attention.value.bias"):
            out[prefix + "attn.v_bias"] = value
            continue
        for old, new in _BLOCK_RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        else:
            raise AssertionError(f"unmapped transformers key {key}")
        out[prefix + rest] = value
    for prefix, parts in qkv.items():
        out[prefix + "attn.qkv.weight"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    return out


def save_official(state, path, wrapper=None, prefix=""):
    """Writes an official-style .pth with torch.save: raw, or under 'model' (pretraining
    scripts, with optimizer/epoch/args beside it) or 'module' (DeepSpeed fine-tunes)."""
    import argparse

    state = {prefix + k: v for k, v in state.items()}
    if wrapper == "model":
        obj = {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4}]},
            "epoch": 799,
            "scaler": {"scale": 65536.0},
            "args": argparse.Namespace(model="pretrain_videomae_base_patch16_224", mask_ratio=0.9),
        }
    elif wrapper == "module":
        obj = {"module": state, "epoch": np.int64(74)}
    else:
        obj = state
    torch.save(obj, path)
    return path
