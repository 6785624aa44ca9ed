"""Mask generators for masked pretraining. 1 = masked (hidden from the encoder).

The numpy generators follow the official algorithms (VideoMAE `masking_generator.py`,
VideoMAE V2 `dataset/masking_generator.py`) and return a flat array over the token grid in the
model's token order (t slowest, w fastest). `random_tube_mask` draws a batch of tube masks
inside a compiled training step with static shapes.
"""

import numpy as np

import keras
from keras import ops


def _grid(input_size):
    try:
        frames, height, width = (int(s) for s in input_size)
    except (TypeError, ValueError):
        raise ValueError(
            "input_size must be the token grid (frames // tubelet, height // patch, "
            f"width // patch), e.g. (8, 14, 14); got {input_size!r}."
        ) from None
    if min(frames, height, width) < 1:
        raise ValueError(f"input_size must be positive; got {input_size!r}.")
    return frames, height, width


def _check_ratio(mask_ratio):
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}.")
    return float(mask_ratio)


def _make_rng(seed):
    """None: numpy's global state (np.random.shuffle), as the official loaders; an int: a
    private Generator with that seed; a Generator or RandomState: used as given."""
    if seed is None:
        return np.random
    if isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    return np.random.default_rng(seed)


def mask_with_count(input_size, num_masked, rng):
    """A flat bool mask with exactly `num_masked` True entries for a model whose masked count
    is fixed: one random spatial pattern tiled over time (tube) when the count divides by the
    temporal size, random over all tokens otherwise. `rng` is a numpy Generator."""
    frames, height, width = _grid(input_size)
    total = frames * height * width
    mask = np.zeros(total, bool)
    per_frame, remainder = divmod(int(num_masked), frames)
    if remainder == 0:
        spatial = np.zeros(height * width, bool)
        spatial[rng.permutation(height * width)[:per_frame]] = True
        mask[:] = np.tile(spatial, frames)
    else:
        mask[rng.permutation(total)[: int(num_masked)]] = True
    return mask


class TubeMaskingGenerator:
    """Tube masking: one random spatial mask of int(ratio * H'W') patches, repeated in every
    temporal slice, so a masked patch stays hidden for the whole clip.

    `TubeMaskingGenerator((8, 14, 14), 0.9)()` returns a float array of 1568 zeros and ones
    with 176 ones per slice (1408 in all).
    """

    def __init__(self, input_size, mask_ratio, seed=None):
        self.frames, self.height, self.width = _grid(input_size)
        self.mask_ratio = _check_ratio(mask_ratio)
        self.num_patches_per_frame = self.height * self.width
        self.total_patches = self.frames * self.num_patches_per_frame
        self.num_masks_per_frame = int(self.mask_ratio * self.num_patches_per_frame)
        self.total_masks = self.frames * self.num_masks_per_frame
        self.rng = _make_rng(seed)

    def __repr__(self):
        return (
            f"TubeMaskingGenerator(total patches {self.total_patches}, "
            f"masked patches {self.total_masks})"
        )

    def __call__(self):
        per_frame = np.hstack(
            [
                np.zeros(self.num_patches_per_frame - self.num_masks_per_frame),
                np.ones(self.num_masks_per_frame),
            ]
        )
        self.rng.shuffle(per_frame)
        return np.tile(per_frame, (self.frames, 1)).flatten()


class RandomMaskingGenerator:
    """Random masking over all tokens: int(ratio * T'H'W') ones, shuffled (VideoMAE V2's
    `RandomMaskingGenerator`, the one the official V1 code names but never builds)."""

    def __init__(self, input_size, mask_ratio, seed=None):
        self.frames, self.height, self.width = _grid(input_size)
        self.mask_ratio = _check_ratio(mask_ratio)
        self.total_patches = self.frames * self.height * self.width
        self.total_masks = int(self.mask_ratio * self.total_patches)
        self.rng = _make_rng(seed)

    def __repr__(self):
        return (
            f"RandomMaskingGenerator(total patches {self.total_patches}, "
            f"masked patches {self.total_masks})"
        )

    def __call__(self):
        mask = np.hstack(
            [np.zeros(self.total_patches - self.total_masks), np.ones(self.total_masks)]
        )
        self.rng.shuffle(mask)
        return mask


class RunningCellMaskingGenerator:
    """VideoMAE V2's decoder mask: a 2x2 cell of int(4 * ratio) ones that shifts by one
    position per temporal slice, tiled over the frame. 1 = NOT reconstructed.

    The four possible maps (one per starting position) are precomputed; each call returns
    one at random, flat over the grid. At ratio 0.5 half of every slice is decoded (784 of
    1568 tokens at 8x14x14). Height and width of the grid must be even.
    """

    def __init__(self, input_size, mask_ratio=0.5, seed=None):
        self.frames, self.height, self.width = _grid(input_size)
        if self.height % 2 or self.width % 2:
            raise ValueError(
                f"Running-cell masking tiles 2x2 cells, so the grid height and width must be "
                f"even; got {self.height}x{self.width}."
            )
        self.mask_ratio = float(mask_ratio)
        num_masks = int(4 * self.mask_ratio)
        if not 0 < num_masks < 4:
            raise ValueError(
                "Running-cell masking needs 1 to 3 masked positions in its 2x2 cell, i.e. "
                f"0.25 <= mask_ratio < 1; got {mask_ratio}."
            )
        queue = np.hstack([np.ones(num_masks), np.zeros(4 - num_masks)])
        maps = []
        for start in range(4):
            slices = []
            for frame in range(self.frames):
                pointer = start + frame + 1  # the pointer advances before each slice
                cell = queue[(np.arange(4) + pointer) % 4].reshape(2, 2)
                slices.append(np.tile(cell, (self.height // 2, self.width // 2)).flatten())
            maps.append(np.stack(slices).flatten())
        self.all_mask_maps = np.stack(maps)
        self.total_patches = self.frames * self.height * self.width
        self.total_masks = int(self.all_mask_maps[0].sum())
        self.rng = _make_rng(seed)

    def __repr__(self):
        return (
            f"RunningCellMaskingGenerator(total patches {self.total_patches}, "
            f"not decoded {self.total_masks})"
        )

    def __call__(self):
        if isinstance(self.rng, np.random.Generator):
            index = int(self.rng.integers(4))
        else:
            index = int(self.rng.randint(4))
        return self.all_mask_maps[index].copy()


def num_decoded_tokens(input_size, decoder_mask_ratio):
    """Tokens a running-cell decoder mask of this ratio leaves decoded (0 for ratio 0: no
    VideoMAE V2 dual masking)."""
    if not decoder_mask_ratio:
        return 0
    frames, height, width = _grid(input_size)
    masked = RunningCellMaskingGenerator((frames, height, width), decoder_mask_ratio).total_masks
    return frames * height * width - masked


def random_tube_mask(batch_size, input_size, mask_ratio, seed=None):
    """A (batch_size, T'H'W') boolean batch of tube masks drawn in-graph, True = masked.

    Every sample hides exactly int(ratio * H'W') patches per slice (ranks of uniform noise,
    so the count is exact and shapes are static under jit). `seed` is an int or a
    `keras.random.SeedGenerator`; pass a SeedGenerator tracked by your model inside a
    compiled training step so each step draws new masks.
    """
    frames, height, width = _grid(input_size)
    mask_ratio = _check_ratio(mask_ratio)
    per_frame = height * width
    num_masked = int(mask_ratio * per_frame)
    noise = keras.random.uniform((batch_size, per_frame), seed=seed)
    rank = ops.argsort(ops.argsort(noise, axis=-1), axis=-1)
    mask = ops.less(rank, num_masked)
    mask = ops.tile(mask[:, None, :], (1, frames, 1))
    return ops.reshape(mask, (batch_size, frames * per_frame))
