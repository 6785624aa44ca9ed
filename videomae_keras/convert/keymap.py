"""Declarative key maps between PyTorch VideoMAE checkpoints and the Keras models.

Every checkpoint is first brought to one canonical naming, the official one: `patch_embed.*`,
`blocks.N.{norm1,attn.qkv,attn.q_bias,attn.v_bias,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
`norm.*`, `fc_norm.*`, `head.*`, and for pretraining `mask_token`,
`encoder_to_decoder.weight`, `decoder.blocks.N.*`, `decoder.norm.*`, `decoder.head.*`
(official pretraining files prefix the encoder with `encoder.`, which is dropped). Then
`keras_weight_map` says which Keras variable each canonical key fills and how.
"""

import re

import numpy as np

from videomae_keras.convert.checkpoint import CheckpointError

# transformers -> canonical, applied in order to every key.
HF_RENAMES = (
    (r"^videomae\.", ""),  # task models keep the encoder under `videomae.`
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
    (r"^decoder\.decoder_layers\.(\d+)\.", r"decoder.blocks.\1."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
    (r"\.attention\.attention\.(query|key|value)\.weight$", r".attn.\1.weight"),
    (r"\.attention\.attention\.(?:q_bias|query\.bias)$", ".attn.q_bias"),  # v4 / v5 names
    (r"\.attention\.attention\.(?:v_bias|value\.bias)$", ".attn.v_bias"),
    (r"\.attention\.attention\.key\.bias$", ".attn.k_bias"),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
)

# Keys that only transformers checkpoints have.
_HF_MARKERS = (
    r"^(videomae\.)?embeddings\.patch_embeddings\.",
    r"^(videomae\.)?encoder\.layer\.\d+\.",
    r"^decoder\.decoder_layers\.",
)
# Keys of official checkpoints (fine-tuned, pretraining with `encoder.` and encoder-only).
_OFFICIAL_MARKERS = (r"^(encoder\.)?patch_embed\.proj\.", r"^(encoder\.)?blocks\.\d+\.")


def detect_layout(state):
    """'transformers' or 'official', from the key names; a clear error for anything else."""
    keys = list(state)
    if any(re.match(p, k) for p in _HF_MARKERS for k in keys):
        return "transformers"
    if any(re.match(p, k) for p in _OFFICIAL_MARKERS for k in keys):
        return "official"
    raise CheckpointError(
        "Unknown checkpoint layout: found neither official VideoMAE keys (patch_embed.proj.*, "
        "blocks.N.*) nor transformers keys (videomae.embeddings.*, videomae.encoder.layer.N.*). "
        f"First keys: {keys[:8]}."
    )


def to_canonical(state):
    """Renames a checkpoint's keys to the canonical (official fine-tuning) names.

    Returns (canonical_state, layout, notes); notes lists harmless things that were dropped.
    """
    layout = detect_layout(state)
    notes = []
    if layout == "transformers":
        renamed = {}
        for key, value in state.items():
            for pattern, replacement in HF_RENAMES:
                key = re.sub(pattern, replacement, key)
            renamed[key] = value
        state = _merge_qkv(renamed)
    else:
        state = {
            (k[len("encoder.") :] if k.startswith("encoder.") else k): v
            for k, v in state.items()
        }
        state = _split_fused_qkv_bias(state)
    k_biases = [k for k in state if k.endswith(".attn.k_bias")]
    if k_biases:
        notes.append(
            f"dropped {len(k_biases)} key bias(es): a bias on k cancels in the softmax, so "
            "VideoMAE has none"
        )
        state = {k: v for k, v in state.items() if k not in k_biases}
    return state, layout, notes


def _merge_qkv(state):
    """Joins transformers' separate query/key/value weights into the fused (3D, D) qkv rows."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".attn.query.weight")]:
        prefix = key[: -len("query.weight")]
        parts = [prefix + name + ".weight" for name in ("query", "key", "value")]
        if not all(p in state for p in parts):
            continue  # reported as unexpected keys later
        out[prefix + "qkv.weight"] = np.concatenate([state[p] for p in parts], axis=0)
        for p in parts:
            del out[p]
    return out


def _split_fused_qkv_bias(state):
    """A fused qkv bias (some ports keep one) becomes q_bias and v_bias; its k third is dropped."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".attn.qkv.bias")]:
        prefix = key[: -len("qkv.bias")]
        q_bias, k_bias, v_bias = np.split(state[key], 3)
        del out[key]
        out.setdefault(prefix + "q_bias", q_bias)
        out.setdefault(prefix + "v_bias", v_bias)
        out[prefix + "k_bias"] = k_bias
    return out


# How a PyTorch tensor becomes a Keras variable value.
def _linear(weight):
    return np.ascontiguousarray(weight.T)  # (out, in) -> (in, out)


def _conv3d(weight):
    return np.ascontiguousarray(weight.transpose(2, 3, 4, 1, 0))  # OIThw -> ThwIO


def _copy(value):
    return value


TRANSFORMS = {"linear": _linear, "conv3d": _conv3d, "copy": _copy}

# A Keras variable's shape as the PyTorch tensor that would fill it would have it.
TORCH_SHAPES = {
    "linear": lambda shape: tuple(reversed(shape)),
    "conv3d": lambda shape: (shape[4], shape[3], shape[0], shape[1], shape[2]),
    "copy": tuple,
}


def _dense(prefix, layer, bias=True):
    entries = {prefix + ".weight": (layer.kernel, "linear")}
    if bias:
        entries[prefix + ".bias"] = (layer.bias, "copy")
    return entries


def _layer_norm(prefix, layer):
    return {prefix + ".weight": (layer.gamma, "copy"), prefix + ".bias": (layer.beta, "copy")}


def _block(prefix, block):
    entries = {}
    entries.update(_layer_norm(prefix + "norm1", block.norm1))
    entries.update(_dense(prefix + "attn.qkv", block.attn.qkv, bias=False))
    if block.attn.qv_bias:
        entries[prefix + "attn.q_bias"] = (block.attn.q_bias, "copy")
        entries[prefix + "attn.v_bias"] = (block.attn.v_bias, "copy")
    entries.update(_dense(prefix + "attn.proj", block.attn.proj))
    entries.update(_layer_norm(prefix + "norm2", block.norm2))
    entries.update(_dense(prefix + "mlp.fc1", block.mlp.fc1))
    entries.update(_dense(prefix + "mlp.fc2", block.mlp.fc2))
    if block.layer_scale_1 is not None:
        entries[prefix + "gamma_1"] = (block.layer_scale_1.gamma, "copy")
        entries[prefix + "gamma_2"] = (block.layer_scale_2.gamma, "copy")
    return entries


def keras_weight_map(model):
    """{canonical key: (keras variable, transform name)} for every weight of a VideoMAE model."""
    encoder = model.encoder
    entries = {
        "patch_embed.proj.weight": (encoder.patch_embed.proj.kernel, "conv3d"),
        "patch_embed.proj.bias": (encoder.patch_embed.proj.bias, "copy"),
    }
    for i, block in enumerate(encoder.blocks):
        entries.update(_block(f"blocks.{i}.", block))
    if encoder.norm is not None:
        entries.update(_layer_norm("norm", encoder.norm))
    layer_names = {layer.name for layer in model.layers}
    if "fc_norm" in layer_names:
        entries.update(_layer_norm("fc_norm", model.get_layer("fc_norm")))
    if "head" in layer_names:
        entries.update(_dense("head", model.get_layer("head")))
    decoder = getattr(model, "decoder", None)
    if decoder is not None:
        entries["mask_token"] = (decoder.mask_token, "copy")
        entries.update(
            _dense("encoder_to_decoder", model.get_layer("encoder_to_decoder"), bias=False)
        )
        for i, block in enumerate(decoder.blocks):
            entries.update(_block(f"decoder.blocks.{i}.", block))
        entries.update(_layer_norm("decoder.norm", decoder.norm))
        entries.update(_dense("decoder.head", decoder.head))
    return entries
