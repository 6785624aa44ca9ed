"""Looking inside a model: the encoder's hidden states after every block and each block's
attention weights, as transformers returns them with `output_hidden_states=True,
output_attentions=True`.

Normal calls keep their fused attention kernels; only `intermediates` takes the explicit
softmax path, block by block, eagerly.
"""

import dataclasses
import os

import numpy as np

import keras

from videomae_keras import kernels
from videomae_keras.inference import load_views, model_clip_shape
from videomae_keras.layers.tokens import MaskedTokenIndex


@dataclasses.dataclass
class Intermediates:
    """What `intermediates` returns.

    hidden_states: depth + 1 arrays (B, N, D): the embeddings entering the first block
        (tubelets plus positions), then each block's output; the last is before the final
        norm, as in transformers.
    attentions: depth arrays (B, heads, N, N) of softmax weights (rows: queries, summing
        to 1), or [] when asked for none.
    visible_index: (B, N) token indices of the rows (all tokens, or the visible ones in
        ascending order under a mask), so row i of a sample is token visible_index[b, i]
        of the (T', H', W') grid, flattened time-major.
    grid: the (T', H', W') token grid.
    """

    hidden_states: list
    attentions: list
    visible_index: np.ndarray
    grid: tuple


def intermediates(model, video, bool_masked_pos=None, attentions=True, sampling_rate=4):
    """Every block's hidden states and attention weights for `video`.

    `model`: a VideoMAE backbone, classifier or pretraining model (its encoder runs).
    `video`: a video file (its centre clip, centre crop, sampled every `sampling_rate`
    frames, as `extract_features` takes it), or (B, T, H, W, C) clips normalised as the
    model expects (what `videomae_keras.preprocess` gives). `bool_masked_pos`: optional
    (B, N) boolean mask, True = hidden, the same count in every sample: only the visible
    tokens enter the blocks, as in transformers' `VideoMAEModel`. `attentions=False` skips
    the weights (B x heads x N^2 floats per block: 1.4 GB for ViT-B on one 16 x 224^2 clip).
    Returns `Intermediates`, as float32 numpy arrays.
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "intermediates"):
        raise ValueError(f"{getattr(model, 'name', model)!r} is not a VideoMAE model (it "
                         "has no encoder); pass a backbone, classifier or pretraining model.")
    if isinstance(video, (str, os.PathLike)):
        frames, height, width = model_clip_shape(model)
        video = load_views(video, frames, (height, width), (1, 1),
                           sampling_rate=sampling_rate).data
    video = np.asarray(keras.ops.convert_to_numpy(video), np.float32)
    if video.ndim != 5:
        raise ValueError(f"video must be (batch, frames, height, width, channels); got shape "
                         f"{video.shape}. Add the batch axis with video[None].")
    model._check_video(video)
    visible = _visible_index(bool_masked_pos, len(video), model.num_tokens)
    with kernels.no_gradients():
        hidden, weights = encoder.intermediates(
            keras.ops.convert_to_tensor(video),
            None if bool_masked_pos is None else keras.ops.convert_to_tensor(visible),
            attentions=attentions)
        hidden = [_numpy(x) for x in hidden]
        weights = [_numpy(x) for x in weights]
    return Intermediates(hidden, weights, visible, tuple(model.grid))


def _visible_index(bool_masked_pos, batch, num_tokens):
    """(B, K) ascending indices of the tokens that enter the blocks (K = N without a mask),
    int32, after checking the mask as transformers needs it."""
    if bool_masked_pos is None:
        return np.broadcast_to(np.arange(num_tokens, dtype=np.int32), (batch, num_tokens))
    mask = np.asarray(keras.ops.convert_to_numpy(bool_masked_pos))
    if mask.shape != (batch, num_tokens):
        raise ValueError(f"bool_masked_pos must be (batch, tokens) = ({batch}, {num_tokens}) "
                         f"for this model and video; got shape {mask.shape}.")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError("bool_masked_pos must be boolean (True = masked) or 0/1.")
    mask = mask.astype(bool)
    counts = mask.sum(axis=1)
    if (counts != counts[0]).any() or counts[0] == num_tokens:
        raise ValueError("bool_masked_pos must hide the same number of tokens in every sample, "
                         f"and not all of them; got {sorted(set(counts.tolist()))} hidden of "
                         f"{num_tokens}. Make the masks with TubeMaskingGenerator.")
    # the models' own indexing: visible first, each in token order
    visible, _, _ = MaskedTokenIndex(int(counts[0]))(mask)
    return np.asarray(keras.ops.convert_to_numpy(visible), np.int32)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))
