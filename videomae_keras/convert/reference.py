"""transformers' PyTorch VideoMAE as the reference `--verify` compares against.

For a transformers folder it is transformers' own `from_pretrained` (its loader, its model).
For anything else (official files, bare state dicts) it is the transformers model of the
same architecture holding the checkpoint's weights, mapped from the official names, with
every LayerNorm epsilon set as the Keras model has it (1e-6 for official files). Needs torch
and transformers (`pip install torch transformers`); neither is needed to use the models.
"""

import os

import numpy as np

from videomae_keras.convert.transformers import MODEL_CLASSES, arguments_to_config, from_canonical


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


def reference_from_state(state, config, task):
    """A transformers model of the Keras model's architecture holding `state` (canonical)."""
    torch, transformers = _imports()
    cls = getattr(transformers, MODEL_CLASSES[task])
    model = cls(transformers.VideoMAEConfig(**arguments_to_config(config, task))).eval()
    own_keys = set(model.state_dict())
    tensors = from_canonical(state, task)
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
    cls = getattr(transformers, MODEL_CLASSES[task])
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
        and natural == MODEL_CLASSES[task]
    ):
        return reference_from_folder(source_path, task), (
            f"transformers {MODEL_CLASSES[task]}.from_pretrained"
        )
    model = reference_from_state(state, config, task)
    eps = config["layer_norm_epsilon"]
    return model, (f"transformers {MODEL_CLASSES[task]} holding the mapped weights "
                   f"(LayerNorm eps {eps:g})")
