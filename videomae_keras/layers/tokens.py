"""Token bookkeeping: visible/masked index sets with static sizes, and pooling."""

import numpy as np

import keras
from keras import ops

from videomae_keras.utils import concrete_numpy


def count_mismatches(counts, expected):
    """'sample i: n, ...' for the samples whose count is not `expected` (the first five,
    then '...'), or '' when every sample has it."""
    bad = np.flatnonzero(np.asarray(counts) != expected)
    shown = ", ".join(f"sample {i}: {counts[i]}" for i in bad[:5])
    return shown + (" ..." if bad.size > 5 else "")


@keras.saving.register_keras_serializable(package="videomae_keras")
class MaskedTokenIndex(keras.layers.Layer):
    """Turns a boolean mask (B, N), True = masked, into token indices with static sizes.

    Returns (visible_index (B, N - num_masked), masked_index (B, num_masked), valid (B,)), each
    index set in ascending token order: the order of `x[~mask]` / `x[mask]` in PyTorch. The
    sort key mask * N + arange(N) has no ties, so every backend's argsort gives the same
    result. `valid` is False for samples whose mask count differs from `num_masked`; eager
    calls raise a ValueError for those instead.
    """

    def __init__(self, num_masked, **kwargs):
        super().__init__(**kwargs)
        self.num_masked = int(num_masked)

    def check_mask(self, mask_values):
        """Raises a clear ValueError when a concrete mask has the wrong count in any sample."""
        counts = np.asarray(mask_values).astype(bool).reshape(len(mask_values), -1).sum(-1)
        shown = count_mismatches(counts, self.num_masked)
        if shown:
            raise ValueError(
                f"bool_masked_pos must mask exactly {self.num_masked} of "
                f"{np.shape(mask_values)[-1]} tokens in every sample (this model was built "
                f"for that count, which keeps its shapes static); got {shown}. Use TubeMaskingGenerator with the model's "
                "mask ratio, or build the model with num_masked= matching your masks."
            )

    def call(self, bool_masked_pos):
        values = concrete_numpy(bool_masked_pos)
        if values is not None:
            self.check_mask(values)
        num_tokens = bool_masked_pos.shape[-1]
        masked = ops.cast(bool_masked_pos, "int32")
        key = masked * num_tokens + ops.arange(num_tokens, dtype="int32")
        order = ops.argsort(key, axis=-1)
        num_visible = num_tokens - self.num_masked
        valid = ops.equal(ops.sum(masked, axis=-1), self.num_masked)
        return order[:, :num_visible], order[:, num_visible:], valid

    def compute_output_spec(self, bool_masked_pos):
        batch, num_tokens = bool_masked_pos.shape
        return (
            keras.KerasTensor((batch, num_tokens - self.num_masked), dtype="int32"),
            keras.KerasTensor((batch, self.num_masked), dtype="int32"),
            keras.KerasTensor((batch,), dtype="bool"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(num_masked=self.num_masked)
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class TokenPooling(keras.layers.Layer):
    """(B, N, D) -> (B, D): the mean over all tokens, or the first token (VideoMAE has no cls
    token, so "first" is the first patch token, as in the official `--use_cls` models)."""

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "first"):
            raise ValueError(f"mode must be 'mean' or 'first'; got {mode!r}.")
        self.mode = mode

    def call(self, x):
        if self.mode == "mean":
            return ops.mean(x, axis=1)
        return x[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class InvalidSampleGuard(keras.layers.Layer):
    """Sets a sample's output to NaN where `valid` is False.

    Under jit a wrong mask cannot raise, so its sample turns NaN instead of silently
    returning numbers computed from the wrong tokens.
    """

    def call(self, x, valid):
        valid = ops.reshape(valid, (-1,) + (1,) * (len(x.shape) - 1))
        return ops.where(valid, x, ops.cast(float("nan"), x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape
