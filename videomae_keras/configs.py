"""Architecture tables: the one source of truth for model sizes and norm conventions.

Numbers follow the official registries (MCG-NJU/VideoMAE, OpenGVLab/VideoMAEv2); see
MODEL_ZOO.md and the facts file for where each comes from.
"""

# Encoder sizes. Official ViT-S has 6 heads (transformers' converted small checkpoints use 16;
# `from_pretrained` reads those from config.json). ViT-g uses patch 14 and mlp_ratio 48/11.
ENCODERS = {
    "S": dict(patch_size=16, hidden_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "B": dict(patch_size=16, hidden_dim=768, depth=12, num_heads=12, mlp_dim=3072),
    "L": dict(patch_size=16, hidden_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
    "H": dict(patch_size=16, hidden_dim=1280, depth=32, num_heads=16, mlp_dim=5120),
    "g": dict(patch_size=14, hidden_dim=1408, depth=40, num_heads=16, mlp_dim=6144),
}

# Pretraining decoders as the released V1 scripts use them (L and H: 12 blocks; V2 ViT-g: 4).
DECODERS = {
    "S": dict(decoder_hidden_dim=192, decoder_depth=4, decoder_num_heads=3, decoder_mlp_dim=768),
    "B": dict(decoder_hidden_dim=384, decoder_depth=4, decoder_num_heads=6, decoder_mlp_dim=1536),
    "L": dict(decoder_hidden_dim=512, decoder_depth=12, decoder_num_heads=8, decoder_mlp_dim=2048),
    "H": dict(decoder_hidden_dim=640, decoder_depth=12, decoder_num_heads=8, decoder_mlp_dim=2560),
    "g": dict(decoder_hidden_dim=512, decoder_depth=4, decoder_num_heads=8, decoder_mlp_dim=2234),
}

# Head counts of the official models by width: official checkpoints do not store them.
ENCODER_HEADS_BY_WIDTH = {cfg["hidden_dim"]: cfg["num_heads"] for cfg in ENCODERS.values()}
DECODER_HEADS_BY_WIDTH = {192: 3, 384: 6, 512: 8, 640: 8}

# LayerNorm epsilons per module. Keras' own default (1e-3) matches neither source.
OFFICIAL_EPSILONS = dict(
    layer_norm_epsilon=1e-6,  # block norms and the encoder's final norm
    fc_norm_epsilon=1e-6,  # the norm after mean pooling
    decoder_layer_norm_epsilon=1e-6,  # decoder block norms
    decoder_norm_epsilon=1e-6,  # the decoder's final norm
)
TRANSFORMERS_EPSILONS = dict(
    layer_norm_epsilon=1e-12,  # config.layer_norm_eps in every MCG-NJU hub config
    fc_norm_epsilon=1e-5,  # nn.LayerNorm default: transformers ignores the config here
    decoder_layer_norm_epsilon=1e-12,
    decoder_norm_epsilon=1e-5,
)
EPSILON_CONVENTIONS = {"official": OFFICIAL_EPSILONS, "transformers": TRANSFORMERS_EPSILONS}

# Normalisation the official models were trained with (x / 255, then this mean and std).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A small architecture that trains on a laptop CPU in minutes: the shipped demo models
# (`videomae-keras demo`, `pretrain --arch tiny`), 16 frames at 32x32.
TINY_ENCODER = dict(patch_size=8, tubelet_size=2, hidden_dim=96, depth=4, num_heads=4,
                    mlp_dim=192, layer_norm_epsilon=1e-6)
TINY_DECODER = dict(decoder_hidden_dim=64, decoder_depth=2, decoder_num_heads=4,
                    decoder_mlp_dim=128)


def grid_size(num_frames, image_size, patch_size, tubelet_size):
    """Token grid (T', H', W') for a clip; raises a clear error when sizes do not divide."""
    height, width = as_pair(image_size)
    problems = []
    if num_frames % tubelet_size:
        problems.append(
            f"num_frames={num_frames} is not divisible by tubelet_size={tubelet_size}"
        )
    if height % patch_size or width % patch_size:
        problems.append(
            f"image size {height}x{width} is not divisible by patch_size={patch_size}"
        )
    if problems:
        raise ValueError(
            "; ".join(problems)
            + ". Use a frame count that is a multiple of the tubelet size and a height and "
            "width that are multiples of the patch size (e.g. 16 frames at 224x224 for patch 16)."
        )
    return (num_frames // tubelet_size, height // patch_size, width // patch_size)


def as_pair(size):
    """An int or (height, width) pair as a (height, width) tuple of ints."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or (height, width); got {size!r}.")
    return size


def encoder_heads_for_width(hidden_dim):
    """Head count of the official encoder of this width (official checkpoints do not store it)."""
    if hidden_dim in ENCODER_HEADS_BY_WIDTH:
        return ENCODER_HEADS_BY_WIDTH[hidden_dim]
    if hidden_dim % 64 == 0:
        return hidden_dim // 64
    raise ValueError(
        f"Cannot tell the number of attention heads of a {hidden_dim}-wide encoder; pass num_heads=."
    )


def decoder_heads_for_width(hidden_dim):
    """Head count of the official pretraining decoder of this width."""
    if hidden_dim in DECODER_HEADS_BY_WIDTH:
        return DECODER_HEADS_BY_WIDTH[hidden_dim]
    if hidden_dim % 64 == 0:
        return hidden_dim // 64
    raise ValueError(
        f"Cannot tell the number of attention heads of a {hidden_dim}-wide decoder; "
        "pass decoder_num_heads=."
    )


def num_masked_tokens(grid, mask_ratio, mask_type="tube"):
    """Static number of masked tokens that a mask generator of this kind produces."""
    frames, height, width = grid
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}.")
    if mask_type == "tube":
        return frames * int(mask_ratio * height * width)
    if mask_type == "random":
        return int(mask_ratio * frames * height * width)
    raise ValueError(f"mask_type must be 'tube' or 'random'; got {mask_type!r}.")
