"""Reconstruction pictures from a pretraining model: original | masked | reconstruction.

A model trained with the norm-pix loss (every released checkpoint) predicts each masked
patch in normalised-pixel space (per patch and channel, zero mean and unit std). To draw
it, the prediction is un-normalised with the mean and std of the *original* patch, as the
official visualisation (`run_videomae_vis.py`) does. The pictures therefore borrow each
masked patch's true brightness and contrast from the ground truth; only its structure is
predicted. A model trained on plain pixels (`norm_pix_loss=False`) is drawn as predicted.
"""

import dataclasses

import numpy as np

from videomae_keras.inference import load_views, model_clip_shape
from videomae_keras.masking import mask_with_count
from videomae_keras.patches import patch_statistics, patchify, unpatchify
from videomae_keras.pictures import (
    enlarge as _enlarge,
    gapped as _gapped,
    labelled as _labelled,
    save_gif,
    save_png,
    to_uint8 as _to_uint8,
)
from videomae_keras.video.preprocess import unnormalize

MASK_GREY = 0.5
ROW_NAMES = ("original", "masked", "reconstruction")


def mask_for_model(model, seed=0, mask_ratio=None):
    """A (N,) bool tube mask with exactly the model's number of masked tokens.

    The same random spatial pattern repeats in every temporal slice (tube masking). When the
    model's count is not a whole number per slice, the mask is random over all tokens.
    `mask_ratio` must give the model's count, since the count is fixed by the model.
    """
    frames, height, width = model.grid
    count = int(model.num_masked)
    if mask_ratio is not None:
        asked = frames * int(mask_ratio * height * width)
        if asked != count:
            raise ValueError(
                f"This model masks {count} of {model.num_tokens} tokens (ratio "
                f"{count / model.num_tokens:.3f}); mask_ratio={mask_ratio} gives {asked}. "
                "Rebuild the model with that mask_ratio (videomae-keras reconstruct "
                "--mask-ratio does)."
            )
    return mask_with_count(model.grid, count, np.random.default_rng(seed))


@dataclasses.dataclass
class Reconstruction:
    """One clip seen by a pretraining model; frames are float32 RGB in [0, 1]."""

    original: np.ndarray  # (T, H, W, 3)
    masked: np.ndarray  # (T, H, W, 3), masked patches grey
    reconstruction: np.ndarray  # (T, H, W, 3), visible patches original, masked predicted
    mask: np.ndarray  # (N,) bool, True = masked
    loss: float  # MSE over the masked patches, on the model's own target (norm-pix or pixels)
    frame_indices: np.ndarray
    source: str
    tubelet_size: int = 2
    target: str = "norm-pix"  # what `loss` compares: "norm-pix" or "pixels"

    def grid(self, frame_step=None, labels=True):
        """uint8 picture: rows original, masked, reconstruction, each named in a margin to
        its left; one column per shown frame (every `frame_step`-th frame, default the
        tubelet size). Small frames are enlarged (nearest neighbour, whole multiples) to at
        least MIN_FRAME_SIDE pixels on their short side."""
        step = frame_step or self.tubelet_size
        rows = [_gapped(list(_enlarge(frames)[::step])) for frames in self._rows()]
        return _labelled(rows, ROW_NAMES if labels else None)

    def animation_frames(self, labels=True):
        """uint8 (T, H', W', 3): per time step, the three rows (original, masked,
        reconstruction) stacked as in `grid`, named in the same margin."""
        rows = [_enlarge(frames) for frames in self._rows()]
        return np.stack([_labelled([row[t] for row in rows], ROW_NAMES if labels else None)
                         for t in range(len(rows[0]))])

    def _rows(self):
        return [_to_uint8(f) for f in (self.original, self.masked, self.reconstruction)]

    def save_png(self, path, overwrite=False, frame_step=None):
        """Writes `grid()` as a PNG (atomically); returns the path."""
        return save_png(self.grid(frame_step), path, overwrite)

    def save_gif(self, path, overwrite=False, fps=4.0):
        """Writes an animated GIF of `animation_frames()` (atomically), looping; returns the
        path."""
        return save_gif(self.animation_frames(), path, overwrite, fps)


def reconstruct_video(
    model,
    video,
    mask=None,
    seed=0,
    sampling_rate=4,
    interpolation="bilinear",
    backend="auto",
):
    """Runs a pretraining model on the centre clip (dense, stride `sampling_rate`, centre
    crop) of `video` (a file or frames) with a tube mask, and returns a `Reconstruction`.

    `mask`: (N,) bool with the model's masked count, or None for a tube mask drawn with
    `seed`.
    """
    from videomae_keras.models import VideoMAEPretrainer

    if not isinstance(model, VideoMAEPretrainer):
        raise ValueError(
            f"reconstruct_video needs a pretraining model (VideoMAEPretrainer, e.g. "
            f"VideoMAE_ViTB16PT or from_pretrained of a pretrained checkpoint); got "
            f"{type(model).__name__}."
        )
    frames, height, width = model_clip_shape(model)
    views = load_views(video, frames, (height, width), (1, 1), "dense", sampling_rate,
                       interpolation, backend)
    if mask is None:
        mask = mask_for_model(model, seed)
    mask = np.asarray(mask, bool).reshape(-1)
    if mask.shape != (model.num_tokens,) or mask.sum() != model.num_masked:
        raise ValueError(
            f"mask must be ({model.num_tokens},) with {model.num_masked} True entries; got "
            f"shape {mask.shape} with {int(mask.sum())}."
        )
    config = model.architecture
    tubelet, patch = config["tubelet_size"], config["patch_size"]
    prediction = model.predict_on_batch([views.data, mask[None]])  # (1, N_masked, P * 3)
    prediction = np.asarray(prediction, np.float32).reshape(1, int(mask.sum()), -1, 3)

    original = unnormalize(views.data)  # (1, T, H, W, 3) in [0, 1]
    patches = patchify(original, tubelet, patch)  # (1, N, P, 3)
    rebuilt = patches.copy()
    if model.norm_pix_loss:
        mean, std = patch_statistics(patches)
        target = (patches - mean) / std
        rebuilt[:, mask] = prediction * std[:, mask] + mean[:, mask]
    else:  # the model predicts [0, 1] pixels itself: nothing is borrowed
        target = patches
        rebuilt[:, mask] = prediction
    loss = float(np.mean((prediction - target[:, mask]) ** 2))
    hidden = patches.copy()
    hidden[:, mask] = MASK_GREY
    shape = (frames, height, width)
    return Reconstruction(
        original=original[0],
        masked=unpatchify(hidden, shape, tubelet, patch)[0],
        reconstruction=np.clip(unpatchify(rebuilt, shape, tubelet, patch)[0], 0.0, 1.0),
        mask=mask,
        loss=loss,
        frame_indices=views.frame_indices[0],
        source=views.source,
        tubelet_size=tubelet,
        target="norm-pix" if model.norm_pix_loss else "pixels",
    )
