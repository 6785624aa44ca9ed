"""Canonical names <-> Keras variables, and the dispatch to each source format.

Every checkpoint is first brought to one canonical naming, the official one (see
`convert.official`), by the module of its format (`convert.official`,
`convert.transformers`). Then `keras_weight_map` says which Keras variable each canonical
key fills and how.
"""

import numpy as np

from videomae_keras.convert import official, transformers
from videomae_keras.convert.checkpoint import CheckpointError

def detect_layout(state):
    """'transformers' or 'official', from the key names; a clear error for anything else."""
    keys = list(state)
    if transformers.is_transformers(keys):
        return "transformers"
    if official.is_official(keys):
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
    state = (transformers if layout == "transformers" else official).to_canonical(state)
    k_biases = [k for k in state if k.endswith(".attn.k_bias")]
    if k_biases:
        notes.append(
            f"dropped {len(k_biases)} key bias(es): a bias on k cancels in the softmax, so "
            "VideoMAE has none"
        )
        state = {k: v for k, v in state.items() if k not in k_biases}
    return state, layout, notes


# How a PyTorch tensor becomes a Keras variable value.
def _linear(weight):
    """(out, in) -> (in, out), copied in blocks of rows: a plain transposed copy of a large
    matrix runs at a third of the speed, and it was half the time of loading ViT-L."""
    out = np.empty(weight.shape[::-1], weight.dtype)
    for start in range(0, weight.shape[0], 64):
        out[:, start:start + 64] = weight[start:start + 64].T
    return out


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
