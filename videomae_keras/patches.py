"""Videos to tubelet patches and back, in the token and pixel order of the official models.

A video (B, T, H, W, C) becomes (B, N, tubelet * p * p, C): tokens in (t, h, w) order, each
token's pixels in (t, y, x) order. Flattened with the channel fastest this is the layout of
the pretraining model's predictions and of the official norm-pix target.
"""

import numpy as np

from videomae_keras.configs import as_pair


def patchify(video, tubelet_size=2, patch_size=16, ops=np):
    """(B, T, H, W, C) -> (B, N, tubelet * ph * pw, C). `ops` is numpy (default) or
    `keras.ops`, for the same layout inside a compiled training step."""
    if ops is np:
        video = np.asarray(video)
    _, frames, height, width, channels = video.shape
    ph, pw = as_pair(patch_size)
    t, h, w = frames // tubelet_size, height // ph, width // pw
    x = ops.reshape(video, (-1, t, tubelet_size, h, ph, w, pw, channels))
    x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
    return ops.reshape(x, (-1, t * h * w, tubelet_size * ph * pw, channels))


def unpatchify(patches, video_shape, tubelet_size=2, patch_size=16, ops=np):
    """(B, N, tubelet * ph * pw, C) -> (B, T, H, W, C); `video_shape` = (T, H, W)."""
    if ops is np:
        patches = np.asarray(patches)
    frames, height, width = video_shape
    ph, pw = as_pair(patch_size)
    channels = patches.shape[-1]
    t, h, w = frames // tubelet_size, height // ph, width // pw
    x = ops.reshape(patches, (-1, t, h, w, tubelet_size, ph, pw, channels))
    x = ops.transpose(x, (0, 1, 4, 2, 5, 3, 6, 7))
    return ops.reshape(x, (-1, frames, height, width, channels))


def patch_statistics(patches, epsilon=1e-6):
    """Per token and channel: mean and sqrt(unbiased variance) + epsilon over the pixels (the
    official norm-pix target's statistics), each (B, N, 1, C)."""
    patches = np.asarray(patches, np.float64)
    mean = patches.mean(axis=-2, keepdims=True)
    std = np.sqrt(patches.var(axis=-2, ddof=1, keepdims=True)) + epsilon
    return mean.astype(np.float32), std.astype(np.float32)
