"""transformers' PyTorch VideoMAE as the reference `--verify` compares against.

For a transformers folder it is transformers' own `from_pretrained` (its loader, its model).
For anything else (official files, bare state dicts) it is the transformers model of the
same architecture holding the checkpoint's weights, mapped from the official names, with
every LayerNorm epsilon set as the Keras model has it (1e-6 for official files). Needs torch
and transformers (`pip install torch transformers`); neither is needed to use the models.
"""

import os
import re

import numpy as np

from videomae_keras.configs import as_pair

HF_CLASSES = {
    "classifier": "VideoMAEForVideoClassification",
    "pretrainer": "VideoMAEForPreTraining",
    "backbone": "VideoMAEModel",
}

# canonical (official) -> transformers, applied to every key in order.
_TO_HF = (
    (r"^patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
    (r"^blocks\.(\d+)\.", r"encoder.layer.\1."),
    (r"^decoder\.blocks\.(\d+)\.", r"decoder.decoder_layers.\1."),
    (r"^norm\.", "layernorm."),
    (r"^head\.", "classifier."),
    (r"\.attn\.q_bias$", ".attention.attention.query.bias"),
    (r"\.attn\.v_bias$", ".attention.attention.value.bias"),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
)
_ENCODER_KEYS = re.compile(r"^(embeddings|encoder|layernorm)\.")


def _imports():
    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError(
            "Verifying against the PyTorch reference needs torch and transformers: "
            'pip install "torch" "transformers>=5"'
        ) from None
    return torch, transformers


def transformers_state_dict(state, task):
    """Canonical (official-named) numpy tensors -> transformers' key names and layout."""
    out = {}
    for key, value in state.items():
        if key.endswith(("gamma_1", "gamma_2")):
            raise ValueError(
                "The checkpoint uses layer scale (gamma_1/gamma_2), which transformers' "
                "VideoMAE does not implement: there is no PyTorch reference to verify against."
            )
        if key.endswith(".attn.qkv.weight"):
            prefix = key[: -len("attn.qkv.weight")]
            for name, part in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
                out[prefix + f"attn.{name}.weight"] = part
            continue
        out[key] = value
    renamed = {}
    for key, value in out.items():
        key = re.sub(r"\.attn\.(query|key|value)\.weight$", r".attention.attention.\1.weight", key)
        for pattern, replacement in _TO_HF:
            key = re.sub(pattern, replacement, key)
        if task != "backbone" and _ENCODER_KEYS.match(key):
            key = "videomae." + key
        renamed[key] = value
    return renamed


def transformers_config(config, task):
    """transformers VideoMAEConfig arguments for a Keras model config."""
    height, width = as_pair(config["image_size"])
    if height != width:
        image_size = [height, width]
    else:
        image_size = height
    hf = dict(
        image_size=image_size,
        patch_size=config["patch_size"],
        num_channels=config["num_channels"],
        num_frames=config["num_frames"],
        tubelet_size=config["tubelet_size"],
        hidden_size=config["hidden_dim"],
        num_hidden_layers=config["depth"],
        num_attention_heads=config["num_heads"],
        intermediate_size=config["mlp_dim"],
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=config["layer_norm_epsilon"],
        qkv_bias=config["qv_bias"],
    )
    if task == "classifier":
        hf.update(use_mean_pooling=config["use_mean_pooling"], num_labels=config["num_classes"])
    else:
        hf["use_mean_pooling"] = not config.get("use_final_norm", True)
    if task == "pretrainer":
        hf.update(
            decoder_hidden_size=config["decoder_hidden_dim"],
            decoder_num_hidden_layers=config["decoder_depth"],
            decoder_num_attention_heads=config["decoder_num_heads"],
            decoder_intermediate_size=config["decoder_mlp_dim"],
        )
    return hf


def reference_from_state(state, config, task):
    """A transformers model of the Keras model's architecture holding `state` (canonical)."""
    torch, transformers = _imports()
    cls = getattr(transformers, HF_CLASSES[task])
    model = cls(transformers.VideoMAEConfig(**transformers_config(config, task))).eval()
    own_keys = set(model.state_dict())
    tensors = transformers_state_dict(state, task)
    if not any(k.endswith("query.bias") for k in own_keys):  # transformers v4 names
        tensors = {
            k.replace("attention.query.bias", "attention.q_bias").replace(
                "attention.value.bias", "attention.v_bias"
            ): v
            for k, v in tensors.items()
        }
    result = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, strict=False
    )
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            "Could not place the checkpoint in transformers' model: missing "
            f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}."
        )
    _set_epsilons(model, config)
    return model


def _set_epsilons(model, config):
    """transformers hard-codes 1e-5 in fc_norm and decoder.norm; match the Keras model."""
    import torch

    decoder_blocks = config.get("decoder_layer_norm_epsilon")
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.LayerNorm):
            continue
        if name == "fc_norm":
            module.eps = config["fc_norm_epsilon"]
        elif name == "decoder.norm":
            module.eps = config["decoder_norm_epsilon"]
        elif name.startswith("decoder.") and decoder_blocks is not None:
            module.eps = decoder_blocks
        else:
            module.eps = config["layer_norm_epsilon"]


def reference_from_folder(folder, task):
    """transformers' own from_pretrained; refuses a load that left any weight at its init."""
    _, transformers = _imports()
    cls = getattr(transformers, HF_CLASSES[task])
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"}
    if problems or info.get("error_msgs"):
        raise ValueError(
            f"transformers did not load {folder} cleanly ({problems or info['error_msgs']}). "
            "Some transformers 5.x releases load VideoMAE's q_bias/v_bias as zeros; use a "
            "release with the fix (or 4.x) for a trustworthy reference."
        )
    return model.eval()


def reference_outputs(model, video, mask=None):
    """The reference's output for channels-last `video` (and `mask`) as numpy."""
    torch, transformers = _imports()
    pixels = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 1, 4, 2, 3)))
    with torch.no_grad():
        if isinstance(model, transformers.VideoMAEForVideoClassification):
            return model(pixels).logits.numpy()
        masked = None if mask is None else torch.from_numpy(np.asarray(mask, bool))
        out = model(pixels, bool_masked_pos=masked)
        if isinstance(model, transformers.VideoMAEForPreTraining):
            return out.logits.numpy()
        return out.last_hidden_state.numpy()


def build_reference(source_path, layout, hf_config, state, config, task):
    """The reference for a source: transformers' loader for a folder with its config.json,
    else a transformers model holding the mapped weights. Returns (model, description)."""
    natural = hf_config.get("architectures", [None])[0] if hf_config else None
    if (
        layout == "transformers"
        and hf_config is not None
        and os.path.isdir(source_path)
        and natural == HF_CLASSES[task]
    ):
        return reference_from_folder(source_path, task), (
            f"transformers {HF_CLASSES[task]}.from_pretrained"
        )
    model = reference_from_state(state, config, task)
    eps = config["layer_norm_epsilon"]
    return model, f"transformers {HF_CLASSES[task]} holding the mapped weights (LayerNorm eps {eps:g})"
