"""The official format (MCG-NJU/VideoMAE and OpenGVLab/VideoMAEv2 `.pth` files) and the
canonical names every source is brought to: `patch_embed.*`,
`blocks.N.{norm1,attn.qkv,attn.q_bias,attn.v_bias,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
`norm.*`, `fc_norm.*`, `head.*`, and for pretraining `mask_token`, `encoder_to_decoder.weight`,
`decoder.blocks.N.*`, `decoder.norm.*`, `decoder.head.*`. Official pretraining files prefix
the encoder with `encoder.`, which is dropped. Official files store no config, so the
architecture comes from the tensor shapes here, with the head counts of the official table.
"""

import collections
import re

from videomae_keras import configs, presets
from videomae_keras.convert import tensors
from videomae_keras.convert.checkpoint import CheckpointError

# keys of official checkpoints (fine-tuned, pretraining with `encoder.`, encoder-only)
MARKERS = (r"^(encoder\.)?patch_embed\.proj\.", r"^(encoder\.)?blocks\.\d+\.")


def is_official(keys):
    return any(re.match(p, k) for p in MARKERS for k in keys)


def to_canonical(state):
    """Official keys -> canonical names (the `encoder.` prefix dropped, a fused qkv bias
    split into q_bias and v_bias)."""
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    return _split_fused_qkv_bias(state)


def _split_fused_qkv_bias(state):
    """A fused qkv bias (some ports keep one) becomes q_bias and v_bias; its k third is dropped."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".attn.qkv.bias")]:
        prefix = key[: -len("qkv.bias")]
        q_bias, k_bias, v_bias = tensors.split(state[key], 3)
        del out[key]
        out.setdefault(prefix + "q_bias", q_bias)
        out.setdefault(prefix + "v_bias", v_bias)
        out[prefix + "k_bias"] = k_bias
    return out


def _most_common(state, sources):
    """The most common size among the tensors matching each (name pattern, axis); ties go to
    the first source listed. None when no tensor matches."""
    sizes = [int(v.shape[axis]) for pattern, axis in sources for k, v in state.items()
             if re.match(pattern, k) and len(v.shape) > axis]
    if not sizes:
        return None
    return collections.Counter(sizes).most_common(1)[0][0]


def _count(state, pattern):
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    if indices and indices != set(range(len(indices))):
        raise CheckpointError(f"Block indices are not contiguous: {sorted(indices)}.")
    return len(indices)


def infer_from_shapes(state):
    """(task, model arguments) that the tensor shapes of a canonical state dict give:
    patch, tubelet, channels, widths, depths, head size, pooling, layer scale, biases."""
    if "patch_embed.proj.weight" not in state:
        raise CheckpointError(
            "The checkpoint has no patch embedding (patch_embed.proj.weight / "
            "embeddings.patch_embeddings.projection.weight): it is not a VideoMAE model."
        )
    embedding = state["patch_embed.proj.weight"].shape
    if len(embedding) != 5:
        raise CheckpointError(
            f"patch_embed.proj.weight has shape {tuple(embedding)}; a VideoMAE patch embedding "
            "is a Conv3d weight (width, channels, tubelet, patch, patch).")
    _, num_channels, tubelet, patch, patch_w = embedding
    if patch != patch_w:
        raise CheckpointError(f"Non-square patches ({patch}x{patch_w}) are not supported.")
    depth = _count(state, r"^blocks\.(\d+)\.attn\.qkv\.weight$")
    if depth == 0:
        raise CheckpointError("The checkpoint has no transformer blocks (blocks.N.attn.qkv.*).")
    # Widths by the tensors' majority: one damaged tensor is then named as the mismatch,
    # instead of setting the width that every other tensor then fails.
    hidden_dim = _most_common(state, [
        (r"^patch_embed\.proj\.(weight|bias)$", 0),
        (r"^blocks\.\d+\.(norm1|norm2)\.(weight|bias)$", 0),
        (r"^blocks\.\d+\.(attn\.proj|mlp\.fc2)\.(weight|bias)$", 0),
        (r"^blocks\.\d+\.(attn\.qkv|mlp\.fc1)\.weight$", 1),
        (r"^(norm|fc_norm)\.(weight|bias)$", 0),
    ])
    kwargs = dict(
        num_channels=int(num_channels),
        tubelet_size=int(tubelet),
        patch_size=int(patch),
        hidden_dim=hidden_dim,
        depth=depth,
        mlp_dim=_most_common(state, [(r"^blocks\.\d+\.mlp\.fc1\.(weight|bias)$", 0),
                                     (r"^blocks\.\d+\.mlp\.fc2\.weight$", 1)]),
        qv_bias="blocks.0.attn.q_bias" in state,
        init_values=0.1 if "blocks.0.gamma_1" in state else 0.0,
        use_final_norm="norm.weight" in state,
    )
    is_pretrainer = "mask_token" in state or any(k.startswith("decoder.") for k in state)
    if is_pretrainer:
        task = "pretrainer"
        kwargs.update(
            decoder_hidden_dim=_most_common(state, [
                (r"^decoder\.norm\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.(norm1|norm2)\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.(attn\.proj|mlp\.fc2)\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.(attn\.qkv|mlp\.fc1)\.weight$", 1),
                (r"^decoder\.head\.weight$", 1),
            ]),
            decoder_depth=_count(state, r"^decoder\.blocks\.(\d+)\.attn\.qkv\.weight$"),
            decoder_mlp_dim=_most_common(state, [
                (r"^decoder\.blocks\.\d+\.mlp\.fc1\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.mlp\.fc2\.weight$", 1),
            ]),
        )
        expected = int(num_channels) * int(tubelet) * int(patch) ** 2
        if int(state["decoder.head.weight"].shape[0]) != expected:
            raise CheckpointError(
                f"The decoder head predicts {state['decoder.head.weight'].shape[0]} values per "
                f"token; a {patch}x{patch} patch over {tubelet} frames of {num_channels} "
                f"channels needs {expected}."
            )
    elif "head.weight" in state or "fc_norm.weight" in state:
        task = "classifier"
        kwargs.update(
            num_classes=_most_common(state, [(r"^head\.(weight|bias)$", 0)]) or 0,
            use_mean_pooling="fc_norm.weight" in state,
        )
    else:
        task = "backbone"  # e.g. the encoder-only V1 ViT-H pretrained file
    return task, kwargs


def conventions(kwargs, task, layout, given=()):
    """What a file without config.json does not store: head counts (the official table by
    width, unless `given`) and the LayerNorm epsilons of its layout."""
    out = {}
    if "num_heads" not in given:
        out["num_heads"] = presets.encoder_heads_for_width(kwargs["hidden_dim"])
    if task == "pretrainer" and "decoder_num_heads" not in given:
        out["decoder_num_heads"] = presets.decoder_heads_for_width(kwargs["decoder_hidden_dim"])
    eps = configs.EPSILON_CONVENTIONS["transformers" if layout == "transformers" else "official"]
    out.update(eps)
    return out
