"""The transformers format (`VideoMAEModel`, `VideoMAEForVideoClassification`,
`VideoMAEForPreTraining` state dicts and their config.json), both ways.

One declarative key table says how a transformers key and a canonical (official) key name
the same tensor; reading a checkpoint applies it forwards, writing the reference model for
`--verify` applies the same table backwards. The config mapping (config.json <-> our
model arguments) is here too, both directions side by side.
"""

import re

import numpy as np

from videomae_keras.configs import as_pair
from videomae_keras.convert import tensors
from videomae_keras.convert.checkpoint import CheckpointError

# (transformers, canonical) name parts, in the order they apply. A part ending in "." at
# the start of the table is a key prefix; "{n}" is a block number. Task models keep the
# encoder under `videomae.` (handled apart, since a backbone has no such prefix).
KEY_TABLE = (
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("encoder.layer.{n}.", "blocks.{n}."),
    ("decoder.decoder_layers.{n}.", "decoder.blocks.{n}."),
    ("layernorm.", "norm."),
    ("classifier.", "head."),
    (".attention.attention.query.weight", ".attn.query.weight"),  # fused into attn.qkv
    (".attention.attention.key.weight", ".attn.key.weight"),
    (".attention.attention.value.weight", ".attn.value.weight"),
    (".attention.attention.query.bias", ".attn.q_bias"),
    (".attention.attention.value.bias", ".attn.v_bias"),
    (".attention.attention.key.bias", ".attn.k_bias"),  # dropped: it cancels in the softmax
    (".attention.output.dense.", ".attn.proj."),
    (".intermediate.dense.", ".mlp.fc1."),
    (".output.dense.", ".mlp.fc2."),
    (".layernorm_before.", ".norm1."),
    (".layernorm_after.", ".norm2."),
)
_PREFIX_PARTS = 5  # the first five rows anchor at the start of a key
# transformers v4 named the q and v biases on the attention module itself
_V4_NAMES = ((".attention.attention.q_bias", ".attention.attention.query.bias"),
             (".attention.attention.v_bias", ".attention.attention.value.bias"))
# keys that only transformers checkpoints have
MARKERS = (r"^(videomae\.)?embeddings\.patch_embeddings\.", r"^(videomae\.)?encoder\.layer\.\d+\.",
           r"^decoder\.decoder_layers\.")
_ENCODER_KEYS = re.compile(r"^(embeddings|encoder|layernorm)\.")
MODEL_CLASSES = {
    "classifier": "VideoMAEForVideoClassification",
    "pretrainer": "VideoMAEForPreTraining",
    "backbone": "VideoMAEModel",
}


def _rules(source, target):
    """(regex, replacement) pairs that rewrite column `source` of KEY_TABLE into `target`."""
    rules = []
    for index, row in enumerate(KEY_TABLE):
        pattern = re.escape(row[source]).replace(re.escape("{n}"), r"(\d+)")
        if index < _PREFIX_PARTS:
            pattern = "^" + pattern
        elif not row[source].endswith("."):
            pattern += "$"
        rules.append((re.compile(pattern), row[target].replace("{n}", r"\1")))
    return tuple(rules)


_TO_CANONICAL = _rules(0, 1)
_FROM_CANONICAL = _rules(1, 0)


def _rename(key, rules):
    for pattern, replacement in rules:
        key = pattern.sub(replacement, key)
    return key


def is_transformers(keys):
    return any(re.match(p, k) for p in MARKERS for k in keys)


def to_canonical(state):
    """transformers keys -> canonical names, with query/key/value fused into one qkv."""
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("videomae.")
        for old, new in _V4_NAMES:
            key = key.replace(old, new)
        renamed[_rename(key, _TO_CANONICAL)] = value
    return _merge_qkv(renamed)


def from_canonical(state, task):
    """Canonical (official-named) tensors -> transformers' key names and layout (numpy)."""
    state = tensors.materialize(state)
    out = {}
    for key, value in state.items():
        if key.endswith(("gamma_1", "gamma_2")):
            raise ValueError(
                "The checkpoint uses layer scale (gamma_1/gamma_2), which transformers' "
                "VideoMAE does not implement: there is no PyTorch reference to verify against."
            )
        if key.endswith(".attn.qkv.weight"):
            prefix = key[: -len("qkv.weight")]
            for name, part in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
                out[prefix + f"{name}.weight"] = part
        else:
            out[key] = value
    renamed = {}
    for key, value in out.items():
        key = _rename(key, _FROM_CANONICAL)
        if task != "backbone" and _ENCODER_KEYS.match(key):
            key = "videomae." + key
        renamed[key] = value
    return renamed


def _merge_qkv(state):
    """Joins separate query/key/value weights into the fused (3D, D) qkv rows."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".attn.query.weight")]:
        prefix = key[: -len("query.weight")]
        parts = [prefix + name + ".weight" for name in ("query", "key", "value")]
        if not all(p in state for p in parts):
            continue  # reported as unexpected keys later
        out[prefix + "qkv.weight"] = tensors.concatenate([state[p] for p in parts], axis=0)
        for p in parts:
            del out[p]
    return out


# --- config.json <-> model arguments ---------------------------------------------------------

def config_to_arguments(config, task):
    """Our model arguments from a transformers config.json (checked: one sentence naming
    the key for a bad value). Shapes the tensors give (widths, depths) are not read here."""
    if not isinstance(config, dict):
        raise CheckpointError(
            f"config.json must hold a JSON object of settings; it holds a "
            f"{type(config).__name__}.")
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise CheckpointError(
            f"config.json uses hidden_act={activation!r}; VideoMAE models use exact 'gelu'."
        )
    eps = _value(config, "layer_norm_eps", 1e-12, "epsilon")
    out = dict(
        num_frames=_value(config, "num_frames", 16, "count"),
        image_size=_value(config, "image_size", 224, "size"),
        num_heads=_value(config, "num_attention_heads", 12, "count"),
        dropout_rate=_value(config, "hidden_dropout_prob", 0.0, "rate"),
        attention_dropout_rate=_value(config, "attention_probs_dropout_prob", 0.0, "rate"),
        layer_norm_epsilon=eps,
        # transformers builds fc_norm and decoder.norm with nn.LayerNorm's default eps.
        fc_norm_epsilon=1e-5,
        decoder_layer_norm_epsilon=eps,
        decoder_norm_epsilon=1e-5,
    )
    if task == "pretrainer":
        out["decoder_num_heads"] = _value(config, "decoder_num_attention_heads", 6, "count")
        out["norm_pix_loss"] = _value(config, "norm_pix_loss", True, "flag")
    return out


def arguments_to_config(arguments, task):
    """transformers VideoMAEConfig arguments for our model arguments (`model.arguments()`)."""
    height, width = as_pair(arguments["image_size"])
    hf = dict(
        image_size=height if height == width else [height, width],
        patch_size=arguments["patch_size"],
        num_channels=arguments["num_channels"],
        num_frames=arguments["num_frames"],
        tubelet_size=arguments["tubelet_size"],
        hidden_size=arguments["hidden_dim"],
        num_hidden_layers=arguments["depth"],
        num_attention_heads=arguments["num_heads"],
        intermediate_size=arguments["mlp_dim"],
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=arguments["layer_norm_epsilon"],
        qkv_bias=arguments["qv_bias"],
    )
    if task == "classifier":
        hf.update(use_mean_pooling=arguments["use_mean_pooling"],
                  num_labels=arguments["num_classes"])
    else:
        hf["use_mean_pooling"] = not arguments.get("use_final_norm", True)
    if task == "pretrainer":
        hf.update(
            decoder_hidden_size=arguments["decoder_hidden_dim"],
            decoder_num_hidden_layers=arguments["decoder_depth"],
            decoder_num_attention_heads=arguments["decoder_num_heads"],
            decoder_intermediate_size=arguments["decoder_mlp_dim"],
        )
    return hf


def _value(config, key, default, kind):
    """config.json's `key` checked to be of `kind`: one sentence naming the key otherwise."""
    value = config.get(key, default)
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if kind == "size":
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return tuple(_value({key: v}, key, None, "count") for v in value)
        if isinstance(value, (list, tuple)):
            raise CheckpointError(
                f"config.json: {key} must be a size (224) or [height, width]; got {value!r}.")
        kind = "count"
    if kind == "count":
        if not number or value != int(value) or value < 1:
            raise CheckpointError(
                f"config.json: {key} must be a whole number of at least 1; got {value!r}.")
        return int(value)
    if kind == "rate":
        if not number or not 0 <= value < 1:
            raise CheckpointError(f"config.json: {key} must be a number in [0, 1); got {value!r}.")
        return float(value)
    if kind == "epsilon":
        if not number or not value > 0:
            raise CheckpointError(f"config.json: {key} must be a positive number; got {value!r}.")
        return float(value)
    if not isinstance(value, bool):  # "flag"
        raise CheckpointError(f"config.json: {key} must be true or false; got {value!r}.")
    return value
