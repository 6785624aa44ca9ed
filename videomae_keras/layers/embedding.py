"""Tubelet patch embedding and the fixed sinusoid position table."""

import numpy as np

import keras
from keras import ops

from videomae_keras.initializers import TORCH_DEFAULT_KERNEL, for_weight, torch_default_bias
from videomae_keras.patches import patchify

# torch.nn.Conv3d's default kernel init (kaiming_uniform with a=sqrt(5)): U(+-1/sqrt(fan_in)).
TORCH_DEFAULT_KERNEL_INIT = TORCH_DEFAULT_KERNEL


# Tables by (num_tokens, dim). Layers fill this in build(), outside any trace, so jit tracers
# (torch.compile in particular, which would trace the numpy code) only ever look tables up.
_TABLES = {}


def sinusoid_table(num_tokens, dim):
    """The (num_tokens, dim) VideoMAE position table: interleaved sin/cos over the flat token index.

    Computed in float64 and cast to float32, like the reference. It is never a weight, so any
    token count (frame count, resolution) gets its own table. Cached: do not modify it.
    """
    key = (int(num_tokens), int(dim))
    table = _TABLES.get(key)
    if table is None:
        position = np.arange(key[0], dtype=np.float64)[:, None]
        column = np.arange(key[1])
        angle = position / np.power(10000, 2 * (column // 2) / key[1])
        table = np.where(column % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)
        _TABLES[key] = table
    return table


@keras.saving.register_keras_serializable(package="videomae_keras")
class TubeletEmbedding(keras.layers.Layer):
    """Cuts a (B, T, H, W, C) clip into tubelet x patch x patch cubes and projects each to a token.

    The weights are a Conv3D's with kernel = stride = (tubelet_size, patch_size, patch_size),
    the reference's layout; the call applies them as one matmul over flattened tubelets, the
    same linear map (on torch CPU a strided Conv3D takes about 4x longer at batch > 1 and
    under autograd). Tokens come out (B, N, hidden_dim) in t, h, w order (w fastest), or
    only the tokens at `token_index` (masked pretraining embeds the visible ones alone).

    Initialised as the official Conv3d (torch's default): kernel and bias U(+-1/sqrt(fan_in)),
    fan_in = channels x tubelet x patch x patch; `bias_initializer` replaces the bias draw.
    """

    def __init__(
        self,
        hidden_dim,
        patch_size=16,
        tubelet_size=2,
        num_channels=3,
        kernel_initializer=TORCH_DEFAULT_KERNEL_INIT,
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.patch_size = int(patch_size)
        self.tubelet_size = int(tubelet_size)
        self.num_channels = int(num_channels)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        fan_in = self.num_channels * self.tubelet_size * self.patch_size**2
        self.bias_initializer = keras.initializers.get(
            bias_initializer or torch_default_bias(fan_in)
        )
        self.proj = keras.layers.Conv3D(
            self.hidden_dim,
            kernel_size=(self.tubelet_size, self.patch_size, self.patch_size),
            strides=(self.tubelet_size, self.patch_size, self.patch_size),
            padding="valid",
            data_format="channels_last",
            kernel_initializer=for_weight(self.kernel_initializer, "kernel"),
            bias_initializer=for_weight(self.bias_initializer, "bias"),
            dtype=self.dtype_policy,
            name="proj",
        )

    def check_video_shape(self, shape):
        """Raises a ValueError naming the problem when `shape` is not a (B, T, H, W, C) clip."""
        shape = tuple(shape)
        if len(shape) != 5:
            raise ValueError(
                f"Expected a video batch of rank 5, (batch, frames, height, width, "
                f"{self.num_channels}), channels last; got shape {shape}. Add a batch axis for "
                "one clip, and move channels last if your frames are (C, H, W)."
            )
        _, frames, height, width, channels = shape
        if channels is not None and channels != self.num_channels:
            raise ValueError(
                f"Expected {self.num_channels} channels in the last axis; got shape {shape}. "
                "Frames must be channels last: (batch, frames, height, width, channels)."
            )
        if frames is not None and frames % self.tubelet_size:
            raise ValueError(
                f"The clip has {frames} frames, which is not divisible by the tubelet size "
                f"{self.tubelet_size}; sample a multiple of {self.tubelet_size} frames."
            )
        for axis, size in (("height", height), ("width", width)):
            if size is not None and size % self.patch_size:
                raise ValueError(
                    f"The frame {axis} {size} is not divisible by the patch size "
                    f"{self.patch_size}; resize or crop to a multiple of {self.patch_size}."
                )

    def build(self, input_shape):
        self.check_video_shape(input_shape)
        self.proj.build(input_shape)

    def call(self, video, token_index=None):
        """Tokens (B, N, D); with token_index (B, K), only those K tokens, in that order."""
        cubes = patchify(video, self.tubelet_size, self.patch_size, ops=ops)
        cubes = ops.reshape(cubes, (-1, cubes.shape[1], cubes.shape[2] * cubes.shape[3]))
        if token_index is not None:
            # Gathering the tubelets before the projection, not the tokens after it: the
            # same rows, with the matmul done only for them (a tenth at 90% masking).
            cubes = ops.take_along_axis(cubes, token_index[..., None], axis=1)
        kernel = ops.reshape(ops.cast(self.proj.kernel, cubes.dtype), (-1, self.hidden_dim))
        return ops.matmul(cubes, kernel) + ops.cast(self.proj.bias, cubes.dtype)

    def compute_output_spec(self, video, token_index=None):
        if token_index is not None:
            shape = (video.shape[0], token_index.shape[1], self.hidden_dim)
        else:
            shape = self.compute_output_shape(video.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch, frames, height, width, _ = input_shape
        num_tokens = None
        if None not in (frames, height, width):
            num_tokens = (
                (frames // self.tubelet_size)
                * (height // self.patch_size)
                * (width // self.patch_size)
            )
        return (batch, num_tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            patch_size=self.patch_size,
            tubelet_size=self.tubelet_size,
            num_channels=self.num_channels,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class SinusoidPositionEmbedding(keras.layers.Layer):
    """Adds the fixed sinusoid position table to tokens (no weights).

    `layer(x)` adds rows 0..N-1 to x of shape (B, N, D). `layer(x, positions=idx,
    num_tokens=N)` adds the rows at integer positions idx (B, K) of the N-row table, for tokens
    that were gathered out of order (visible or masked subsets).

    The owning layer calls `prepare` in its build. On JAX and TensorFlow the numpy table is
    folded into each compiled graph as a constant (a tensor captured from outside would become
    an extra graph input in exported SavedModel/ONNX files). On torch it is converted to a
    device tensor once there: no host copy per call, and torch.compile never meets numpy code.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tables = {}
        self.built = True  # no weights: built from the start (model.quantize needs that)

    def prepare(self, num_tokens, dim):
        """Computes the (num_tokens, dim) table now, outside any trace."""
        key = (int(num_tokens), int(dim))
        table = sinusoid_table(*key)
        if keras.backend.backend() == "torch" and key not in self._tables:
            self._tables[key] = ops.convert_to_tensor(table)

    def _table(self, num_tokens, dim):
        table = self._tables.get((int(num_tokens), int(dim)))
        if table is None:
            table = ops.convert_to_tensor(sinusoid_table(num_tokens, dim))
        return table

    def call(self, x, positions=None, num_tokens=None):
        dim = x.shape[-1]
        if positions is None:
            table = self._table(x.shape[-2], dim)
            return x + ops.cast(table, x.dtype)[None]
        if num_tokens is None:
            raise ValueError("Pass num_tokens (the full token count) together with positions.")
        table = ops.cast(self._table(num_tokens, dim), x.dtype)
        return x + ops.take(table, positions, axis=0)
