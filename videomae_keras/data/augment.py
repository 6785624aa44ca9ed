"""Training augmentation, the same for every frame of a clip (official: random resized crop
with scale (0.08, 1) and ratio (3/4, 4/3), horizontal flip except for SSv2)."""

import math

import cv2
import numpy as np

from videomae_keras.video.preprocess import normalize


def random_resized_crop_box(height, width, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            attempts=10):
    """(top, left, crop_h, crop_w) as torchvision's RandomResizedCrop draws it."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # fall back to a centre crop at the nearest allowed aspect ratio
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_clip_transform(frames, size, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                         flip=True, interpolation=cv2.INTER_LINEAR):
    """uint8 frames (T, H, W, 3) -> float32 (T, size, size, 3) normalised: one random
    resized crop and (with `flip`) one coin flip for the whole clip."""
    height, width = frames.shape[1:3]
    top, left, h, w = random_resized_crop_box(height, width, rng, scale, ratio)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        cv2.resize(frame[top : top + h, left : left + w], (size, size), dst=out[i],
                   interpolation=interpolation)
    if flip and rng.random() < 0.5:
        out = out[:, :, ::-1]
    return normalize(np.ascontiguousarray(out))
