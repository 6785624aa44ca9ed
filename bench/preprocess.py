#!/usr/bin/env python
"""Pre-processing a 16-frame 720p clip: videomae_keras.video.preprocess against transformers'
VideoMAEImageProcessor (PIL backend, ImageNet mean/std), on the same frames in one run.

Usage: python bench/preprocess.py [--repeats 20] [--out bench/results/preprocess.json]

Prints a table (median seconds, speed ratio) and the agreement with transformers' output
(max, mean and 99th-percentile |diff| in normalised units; one grey level is about 0.017).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from videomae_keras.video import preprocess  # noqa: E402


def clip(frames=16, height=720, width=1280, seed=0):
    """A 720p clip with smooth texture, edges and motion (what a resizer sees in real video)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.float32),
                            (0, 0), 6)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    out = []
    for t in range(frames):
        frame = base.copy()
        cv2.circle(frame, (200 + 30 * t, 300), 80, (255, 40, 10), -1)
        cv2.rectangle(frame, (700, 100 + 10 * t), (900, 300 + 10 * t), (20, 200, 90), -1)
        cv2.putText(frame, f"frame {t}", (60, 650), cv2.FONT_HERSHEY_SIMPLEX, 3,
                    (255, 255, 255), 6)
        out.append(frame)
    return np.stack(out)


def median_seconds(function, repeats):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "preprocess.json"))
    args = parser.parse_args()

    from transformers.models.videomae.image_processing_pil_videomae import (
        VideoMAEImageProcessorPil,
    )

    frames = clip()
    processor = VideoMAEImageProcessorPil(image_mean=list(IMAGENET_MEAN),
                                          image_std=list(IMAGENET_STD))

    def transformers_run():
        return processor(list(frames), return_tensors="np")["pixel_values"][0]

    reference = transformers_run().transpose(0, 2, 3, 1)
    rows = [{"method": "transformers VideoMAEImageProcessorPil",
             "seconds": median_seconds(transformers_run, max(3, args.repeats // 4))}]
    for interpolation in ("bilinear", "area"):
        ours = preprocess(frames, 224, interpolation=interpolation)[0]
        diff = np.abs(ours - reference)
        seconds = median_seconds(lambda: preprocess(frames, 224, interpolation=interpolation),
                                 args.repeats)
        rows.append({
            "method": f"videomae_keras preprocess ({interpolation})",
            "seconds": seconds,
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "p99_abs_diff": float(np.percentile(diff, 99)),
        })
    three = median_seconds(lambda: preprocess(frames, 224, num_crops=3), args.repeats)
    rows.append({"method": "videomae_keras preprocess (bilinear, 3 crops)", "seconds": three})
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup_vs_transformers"] = base / row["seconds"]

    print(f"16 frames 1280x720 -> 224x224, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, OpenCV {cv2.__version__}")
    print(f"{'method':<48} {'median s':>9} {'speed-up':>9} {'max|d|':>8} {'mean|d|':>8} "
          f"{'p99|d|':>8}")
    for row in rows:
        extra = "".join(f" {row[k]:>8.4f}" if k in row else f" {'':>8}"
                        for k in ("max_abs_diff", "mean_abs_diff", "p99_abs_diff"))
        print(f"{row['method']:<48} {row['seconds']:>9.4f} {row['speedup_vs_transformers']:>8.1f}x"
              f"{extra}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"benchmark": "preprocess", "frames": [16, 720, 1280], "rows": rows,
                   "cpu_count": os.cpu_count(), "opencv": cv2.__version__}, f, indent=2)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
