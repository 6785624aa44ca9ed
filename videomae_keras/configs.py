"""Numeric conventions and token arithmetic: the norms' epsilons of each checkpoint source,
the pixel normalisation, the token grid and the masked-token count. The model sizes are in
`videomae_keras.presets`."""

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
