#!/usr/bin/env python
"""Clips per second of the training input pipeline at 16x224 (decode + augmentation, as
`fit` gets them from VideoClipDataset), on one worker and on several.

Usage: python bench/data_loader.py [--videos 24] [--batches 12] [--workers 1 2]

Videos: 10-second 30 fps clips at 340x256 (Kinetics' usual size), written with OpenCV
(mp4v) into a temporary folder. Modes: pretraining (multi-scale crop, tube masks) and
fine-tuning (random resized crop and flip). Workers are threads, as `finetune`/`pretrain`
run them (`--workers`); "processes" rows use a process pool, what `use_multiprocessing`
would give. Writes bench/results/data_loader.json.
"""

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, save, table  # noqa: E402

_DATA = None


def write_videos(folder, count, seconds=10, fps=30, width=340, height=256):
    """Moving textured clips (so the codec has real work) and a 'path label' list."""
    rng = np.random.default_rng(0)
    lines = []
    base = (rng.random((height * 2, width * 2, 3)) * 255).astype(np.uint8)
    base = cv2.GaussianBlur(base, (0, 0), 3)
    for n in range(count):
        path = os.path.join(folder, f"clip_{n:03d}.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        dx, dy = rng.integers(1, 4, size=2)
        for t in range(seconds * fps):
            x, y = (t * dx) % width, (t * dy) % height
            writer.write(base[y:y + height, x:x + width])
        writer.release()
        lines.append(f"{path} {n % 4}")
    listing = os.path.join(folder, "train.txt")
    with open(listing, "w") as f:
        f.write("\n".join(lines) + "\n")
    return listing


def dataset(listing, mode, batch_size):
    from videomae_keras.data import VideoClipDataset, read_annotations
    from videomae_keras.masking import TubeMaskingGenerator

    samples = read_annotations(listing)
    masks = TubeMaskingGenerator((8, 14, 14), 0.9) if mode == "pretrain" else None
    return VideoClipDataset(samples, mode, 16, 224, batch_size, sampling_rate=4,
                            mask_generator=masks, seed=0)


def _init(listing, mode, batch_size):
    global _DATA
    _DATA = dataset(listing, mode, batch_size)


def _batch(index):
    _DATA[index % len(_DATA)]
    return index


def measure(listing, mode, workers, kind, batches, batch_size):
    """Clips per second over `batches` batches (after one warm-up batch)."""
    if kind == "threads":
        _init(listing, mode, batch_size)
        pool = concurrent.futures.ThreadPoolExecutor(workers)
    else:
        pool = concurrent.futures.ProcessPoolExecutor(workers, initializer=_init,
                                                      initargs=(listing, mode, batch_size))
    with pool:
        list(pool.map(_batch, range(workers)))  # warm-up: imports, decoder start
        start = time.perf_counter()
        list(pool.map(_batch, range(workers, workers + batches)))
        seconds = time.perf_counter() - start
    return batches * batch_size / seconds


# bfloat16 dense peak per chip (TFLOP/s), from the vendors' published specifications.
PEAK_TFLOPS = {"TPU v5e": 197, "TPU v4": 275, "H100": 989}
UTILISATION = 0.4  # an assumed model-FLOP utilisation of a well-fed chip


def cores_needed(rows):
    """Host cores one chip needs to stay fed: the clips per second a chip trains (estimated
    from the architecture's FLOPs: 6 x multiply-adds per clip for forward and backward, at
    UTILISATION of the peak) over the clips per second one loader core gives (measured)."""
    import keras

    from videomae_keras.models.factories import build
    from videomae_keras.flops import count

    per_core = {r["mode"]: r["clips_per_s_per_worker"] for r in rows if r["workers"] == 1}
    estimates = []
    for name in ("B16FT", "L16FT", "g14FT", "B16PT", "L16PT", "g14PT"):
        with keras.StatelessScope():  # the config only; no weights are made
            model = build(name)
        flops = 6 * count(model.arguments())["flops"]
        mode = "train" if name.endswith("FT") else "pretrain"
        for chip, peak in PEAK_TFLOPS.items():
            clips = peak * 1e12 * UTILISATION / flops
            estimates.append({"model": name, "chip": chip, "train_tflop_per_clip":
                              round(flops / 1e12, 3), "chip_clips_per_s": round(clips, 1),
                              "cores_per_chip": round(clips / per_core[mode], 1)})
    return estimates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        listing = write_videos(folder, args.videos)
        for mode in ("pretrain", "train"):
            for workers in args.workers:
                for kind in (("threads",) if workers == 1 else ("threads", "processes")):
                    rate = measure(listing, mode, workers, kind, args.batches, args.batch_size)
                    rows.append({"mode": mode, "workers": workers, "kind": kind,
                                 "clips_per_s": round(rate, 2),
                                 "clips_per_s_per_worker": round(rate / workers, 2)})
                    print(rows[-1], flush=True)
    print(table(rows, [("mode", "mode"), ("workers", "workers"), ("kind", "as"),
                                 ("clips_per_s", "clips/s"),
                                 ("clips_per_s_per_worker", "clips/s per worker")]))
    estimates = cores_needed(rows)
    print(table(estimates, [("model", "model"), ("chip", "chip"),
                            ("train_tflop_per_clip", "TFLOP per clip"),
                            ("chip_clips_per_s", "clips/s a chip trains (est.)"),
                            ("cores_per_chip", "loader cores per chip")]))
    save("data_loader", {"machine": machine(), "rows": rows, "estimates": estimates,
                         "utilisation": UTILISATION, "peak_tflops": PEAK_TFLOPS,
                         "clip": "16 frames, stride 4, 224x224, from 10 s 30 fps 340x256 mp4v"})


if __name__ == "__main__":
    main()
