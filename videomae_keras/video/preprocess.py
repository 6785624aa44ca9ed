"""Pre-processing frames for VideoMAE, in numpy, as the official test pipeline does it.

1. Resize so the short side is `size` (bilinear, OpenCV; the long side becomes
   int(size * long / short)), keeping the aspect ratio.
2. Crop `size` x `size`: the centre, or crop s of N along the long side at offset
   int(s * (long - size) / (N - 1)) (the official three crops).
3. Scale to [0, 1] and normalise with the ImageNet mean and std, in float32.

Step 3 goes through a 256-entry lookup table, so it gives exactly
(x / 255 - mean) / std in float32 at a fraction of the cost. The same steps as a Keras layer,
for models that take uint8 frames, are `videomae_keras.layers.VideoPreprocessing`.
"""

import cv2
import numpy as np

from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD
from videomae_keras.video.io import to_rgb
from videomae_keras.video.sampling import spatial_offsets

INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,  # the official pipeline (cv2 bilinear, no antialiasing)
    "area": cv2.INTER_AREA,  # antialiased: closer to PIL / torchvision antialias=True
    "bicubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def _pair(size):
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def resized_shape(height, width, size):
    """(height, width) after the short-side resize that makes the frame cover `size`.

    For a square `size` s the short side becomes s and the long one int(s * long / short),
    as the official loaders and transformers' processor compute it.
    """
    target_h, target_w = _pair(size)
    if target_h / height >= target_w / width:
        return target_h, max(target_w, int(target_h * width / height))
    return max(target_h, int(target_w * height / width)), target_w


def resize_short_side(frames, size=224, interpolation="bilinear"):
    """(T, H, W, 3) uint8 -> (T, H', W', 3) uint8 with the short side at `size`."""
    frames = to_rgb(frames)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"Unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}."
        )
    count, height, width = frames.shape[:3]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) == (height, width):
        return frames
    out = np.empty((count, new_h, new_w, 3), np.uint8)
    flag = INTERPOLATIONS[interpolation]
    for i in range(count):
        cv2.resize(frames[i], (new_w, new_h), dst=out[i], interpolation=flag)
    return out


def crop_boxes(height, width, size=224, num_crops=1):
    """(top, left) of each crop: the centre for one crop, else spread along the long side
    (the short side is centred)."""
    crop_h, crop_w = _pair(size)
    if height < crop_h or width < crop_w:
        raise ValueError(f"Cannot crop {crop_h}x{crop_w} from frames of {height}x{width}.")
    centre_top = spatial_offsets(height, crop_h, 1)[0]
    centre_left = spatial_offsets(width, crop_w, 1)[0]
    if num_crops == 1:
        return [(centre_top, centre_left)]
    if height - crop_h >= width - crop_w:
        return [(top, centre_left) for top in spatial_offsets(height, crop_h, num_crops)]
    return [(centre_top, left) for left in spatial_offsets(width, crop_w, num_crops)]


def normalize(frames, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (..., H, W, 3) -> float32 (x / 255 - mean) / std, exactly, via a lookup table."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"normalize takes uint8 frames; got {frames.dtype}.")
    table = _lookup_table(mean, std)
    flat = frames.reshape((-1,) + frames.shape[-3:])
    out = np.empty(flat.shape, np.float32)
    for i in range(flat.shape[0]):
        cv2.LUT(flat[i], table, dst=out[i])
    return out.reshape(frames.shape)


_TABLES = {}


def _lookup_table(mean, std):
    key = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    if key not in _TABLES:
        mean = np.asarray(mean, np.float32)
        std = np.asarray(std, np.float32)
        values = np.arange(256, dtype=np.float32)[:, None] / np.float32(255.0)
        _TABLES[key] = np.ascontiguousarray(((values - mean) / std).reshape(1, 256, 3))
    return _TABLES[key]


def preprocess(
    frames,
    size=224,
    num_crops=1,
    interpolation="bilinear",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
):
    """Frames (T, H, W, C) of any size -> (num_crops, T, size, size, 3) float32 model input.

    Resize (short side to `size`), crop (centre, or `num_crops` along the long side) and
    normalise, as the official test does. `frames` may be grayscale or RGBA; they are made
    RGB first.
    """
    resized = resize_short_side(frames, size, interpolation)
    return crop_and_normalize(resized, size, num_crops, mean, std)


def crop_and_normalize(resized, size=224, num_crops=1, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resized uint8 frames (T, H, W, 3) -> (num_crops, T, size, size, 3) float32."""
    crop_h, crop_w = _pair(size)
    boxes = crop_boxes(resized.shape[1], resized.shape[2], (crop_h, crop_w), num_crops)
    table = _lookup_table(mean, std)
    out = np.empty((len(boxes), resized.shape[0], crop_h, crop_w, 3), np.float32)
    for c, (top, left) in enumerate(boxes):
        for t in range(resized.shape[0]):
            cv2.LUT(resized[t, top : top + crop_h, left : left + crop_w], table, dst=out[c, t])
    return out


def unnormalize(video, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Model input back to [0, 1] pixels: x * std + mean (float32)."""
    return np.asarray(video, np.float32) * np.asarray(std, np.float32) + np.asarray(
        mean, np.float32
    )
