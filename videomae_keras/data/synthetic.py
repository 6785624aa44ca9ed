"""A synthetic video data set made here: a shape moving over a textured background, one
class per direction of motion. Telling the classes apart needs motion, not appearance (every
class uses the same shapes, colours and backgrounds)."""

import os

import cv2
import numpy as np

from videomae_keras.atomic import atomic_output
from videomae_keras.pictures import save_mp4

MOTION_CLASSES = ("moving right", "moving left", "moving down", "moving up")
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _background(rng, height, width):
    """A colour grating of random orientation, period and phase plus a weaker second one:
    texture whose normalised patches are predictable from their neighbours."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for amplitude in (1.0, 0.4):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6.0, 16.0)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period + phase)
        image += amplitude * wave[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
    image += rng.uniform(-0.5, 0.5, 3).astype(np.float32)
    return np.clip(128 + 30 * image, 0, 255).astype(np.uint8)


def _start(rng, extent, direction, radius, travel):
    """A start coordinate along one axis: anywhere for no motion along it, otherwise one that
    keeps the whole path inside the frame, or centres the path when it cannot."""
    if direction == 0:
        if extent < 2 * radius:  # a frame smaller than the shape: centre it
            return extent / 2
        return rng.uniform(radius, extent - radius)
    low, high = ((radius, extent - radius - travel) if direction > 0 else
                 (radius + travel, extent - radius))
    if high < low:
        return (extent - direction * travel) / 2
    return rng.uniform(low, high)


def render_clip(label, rng, frames=32, height=48, width=64, return_mask=False):
    """(frames, H, W, 3) uint8 RGB: a disc or square of random colour crossing a textured
    background (colour gratings) in direction `label` (see MOTION_CLASSES). With
    `return_mask`, (clip, mask): mask (frames, H, W) bool is True on the shape (the same
    random draws either way, so a clip is the same with or without its mask).

    The shape is large (radius 12-17 px, moving 0.8-1.6 px per frame): whatever patches a
    tube mask hides, parts of it stay visible in most frames, so a reconstruction model can
    place it in the hidden ones. Its colour, size and form carry nothing about the class.
    """
    background = _background(rng, height, width)
    dx, dy = _DIRECTIONS[label]
    radius = int(rng.integers(12, 18))
    speed = rng.uniform(0.8, 1.6)
    travel = speed * (frames - 1)
    x0 = _start(rng, width, dx, radius, travel)
    y0 = _start(rng, height, dy, radius, travel)
    # a colour far from the mid-grey background in every channel, so the shape stands out
    colour = tuple(int(c) for c in np.where(rng.random(3) < 0.5, rng.integers(0, 40, 3),
                                            rng.integers(216, 256, 3)))
    square = rng.random() < 0.5
    clip, masks = [], []
    for t in range(frames):
        frame, mask = background.copy(), np.zeros((height, width), np.uint8)
        x, y = int(round(x0 + dx * speed * t)), int(round(y0 + dy * speed * t))
        for canvas, fill in ((frame, colour), (mask, 255)):
            if square:
                cv2.rectangle(canvas, (x - radius, y - radius), (x + radius, y + radius),
                              fill, -1)
            else:
                cv2.circle(canvas, (x, y), radius, fill, -1, cv2.LINE_AA)
        clip.append(frame)
        masks.append(mask >= 128)
    return (np.stack(clip), np.stack(masks)) if return_mask else np.stack(clip)


def _write(path, frames, fps=25):
    save_mp4(frames, path, overwrite=True, fps=fps)


def make_synthetic_dataset(folder, train_per_class=64, val_per_class=16, frames=32,
                           height=48, width=64, seed=0, progress=None):
    """Writes videos/*.mp4, train.txt, val.txt (official `path label` lists) and labels.txt
    into `folder`; returns {"train": path, "val": path, "labels": path}."""
    from videomae_keras.data.annotations import write_annotations

    folder = os.fspath(folder)
    os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": train_per_class, "val": val_per_class}
    total = sum(splits.values()) * len(MOTION_CLASSES)
    bar = progress.bar(total, "synthetic videos", unit="video") if progress else None
    out = {}
    for split, per_class in splits.items():
        samples = []
        for index in range(per_class):
            for label in range(len(MOTION_CLASSES)):
                path = os.path.join(folder, "videos", f"{split}_{label}_{index:04d}.mp4")
                _write(path, render_clip(label, rng, frames, height, width))
                samples.append((path, label))
                if bar:
                    bar.update(1)
        out[split] = write_annotations(os.path.join(folder, f"{split}.txt"), samples, folder,
                                       overwrite=True)
    labels = os.path.join(folder, "labels.txt")
    with atomic_output(labels, overwrite=True) as temp:
        with open(temp, "w", encoding="utf-8") as f:
            f.write("\n".join(MOTION_CLASSES) + "\n")
    out["labels"] = labels
    if bar:
        bar.close()
    return out
