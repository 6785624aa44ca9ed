"""Parameter and FLOP counts of a VideoMAE architecture, from its arguments alone.

FLOPs are counted as multiply-adds (one fused multiply-add = one FLOP), the convention of
fvcore and of the VideoMAE papers (ViT-B/16 at 16x224: 180 GFLOPs per view). LayerNorms,
softmax and GELU are left out, as there.
"""

from videomae_keras.configs import as_pair, grid_size
from videomae_keras.masking import num_decoded_tokens


def _block_params(dim, mlp_dim, qv_bias=True):
    attention = 3 * dim * dim + (2 * dim if qv_bias else 0) + dim * dim + dim
    mlp = dim * mlp_dim + mlp_dim + mlp_dim * dim + dim
    return attention + mlp + 4 * dim  # two LayerNorms


def _block_flops(tokens, dim, mlp_dim):
    projections = 4 * tokens * dim * dim + 2 * tokens * dim * mlp_dim
    attention = 2 * tokens * tokens * dim  # q k^T and attn v
    return projections + attention


def _tokens(config):
    grid = grid_size(
        config["num_frames"], config["image_size"], config["patch_size"], config["tubelet_size"]
    )
    return grid[0] * grid[1] * grid[2]


def _patch_size(config):
    return config["num_channels"] * config["tubelet_size"] * config["patch_size"] ** 2


def count(config):
    """{'params': int, 'flops': int} for a model config (`model.get_config()`).

    Classifiers count one forward pass of one view. Pretrainers count the masked forward:
    the encoder on the visible tokens and the decoder on all of them (with VideoMAE V2 dual
    masking, on the visible and the decoded ones).
    """
    dim, depth, mlp = config["hidden_dim"], config["depth"], config["mlp_dim"]
    qv_bias = config.get("qv_bias", True)
    tokens = _tokens(config)
    patch_values = _patch_size(config)
    params = patch_values * dim + dim + depth * _block_params(dim, mlp, qv_bias)
    if config.get("init_values", 0) > 0:
        params += 2 * dim * depth
    if "decoder_hidden_dim" in config:  # pretrainer
        visible = tokens - config["num_masked"]
        dec, dec_depth = config["decoder_hidden_dim"], config["decoder_depth"]
        dec_mlp = config["decoder_mlp_dim"]
        params += (2 * dim if config.get("use_final_norm", True) else 0) + dim * dec + dec
        params += dec_depth * _block_params(dec, dec_mlp, qv_bias) + 2 * dec
        params += dec * patch_values + patch_values
        grid = grid_size(config["num_frames"], config["image_size"], config["patch_size"],
                         config["tubelet_size"])
        predicted = (num_decoded_tokens(grid, config.get("decoder_mask_ratio"))
                     or config["num_masked"])
        flops = visible * patch_values * dim + depth * _block_flops(visible, dim, mlp)
        flops += visible * dim * dec + dec_depth * _block_flops(visible + predicted, dec, dec_mlp)
        flops += predicted * dec * patch_values
        return {"params": params, "flops": flops}
    flops = tokens * patch_values * dim + depth * _block_flops(tokens, dim, mlp)
    if "num_classes" in config:  # classifier
        classes = config["num_classes"]
        params += 2 * dim + (dim * classes + classes if classes else 0)
        flops += dim * classes
    elif config.get("use_final_norm"):
        params += 2 * dim
    return {"params": params, "flops": flops}


def describe(config, task):
    """One line naming the architecture, e.g. 'ViT-B/16 classifier, 16x224x224, 400 classes'."""
    height, width = as_pair(config["image_size"])
    size = {384: "S", 768: "B", 1024: "L", 1280: "H", 1408: "g"}.get(config["hidden_dim"])
    name = f"ViT-{size}/{config['patch_size']}" if size else f"ViT {config['hidden_dim']}-wide"
    parts = [
        f"{name} {task}",
        f"{config['num_frames']}x{height}x{width}",
        f"{config['depth']} blocks x {config['num_heads']} heads",
    ]
    if task == "classifier":
        pooling = "mean pooling" if config["use_mean_pooling"] else "first token"
        parts.append(f"{config['num_classes']} classes, {pooling}")
    if task == "pretrainer":
        parts.append(
            f"decoder {config['decoder_hidden_dim']}x{config['decoder_depth']} blocks, "
            f"{config['num_masked']} masked tokens"
        )
    return ", ".join(parts)
