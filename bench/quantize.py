#!/usr/bin/env python
"""What int8 weights (Keras `model.quantize("int8")`) cost in accuracy, on each backend.

Usage: python bench/quantize.py [--clips 256] [--backends jax,tensorflow,torch]

Two fixtures, float32 model against the same model after `quantize("int8")`:
  demo   the shipped fine-tuned demo model (weights/demo/tiny_finetuned.keras) on freshly
         drawn synthetic clips of its 4 motion classes: top-1 agreement, accuracy of each,
         max and mean |logit difference|;
  ViT-B  VideoMAE ViT-B/16 (400 classes, random weights) on random clips: top-1 agreement
         and the logit difference relative to the logits' spread (std).
Writes bench/results/quantize.json and prints a table.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402


def demo_clips(count, seed=20_000):
    """Synthetic validation clips as the demo model was evaluated: 16 frames at rate 2,
    short side to 32, centre crop; labels cycle over the classes."""
    import numpy as np

    from videomae_keras.data import MOTION_CLASSES, render_clip
    from videomae_keras.video import preprocess

    rng = np.random.default_rng(seed)
    videos, labels = [], []
    for index in range(count):
        label = index % len(MOTION_CLASSES)
        frames = render_clip(label, rng)[0:32:2]
        videos.append(preprocess(frames, 32)[0])
        labels.append(label)
    return np.stack(videos), np.asarray(labels)


def _compare(model, videos, batch):
    import numpy as np

    def logits(m):
        return np.concatenate([np.asarray(m.predict_on_batch(videos[i:i + batch]))
                               for i in range(0, len(videos), batch)])

    before = logits(model)
    model.quantize("int8")
    after = logits(model)
    diff = np.abs(after - before)
    return before, after, {
        "top1_agreement": float((before.argmax(-1) == after.argmax(-1)).mean()),
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "relative_logit_diff": float(diff.mean() / before.std()),
    }


def worker(clips):
    import numpy as np

    import keras
    from videomae_keras.models import VideoMAE_ViTB16FT

    demo = keras.saving.load_model(os.path.join(_common.ROOT, "weights", "demo",
                                                "tiny_finetuned.keras"))
    videos, labels = demo_clips(clips)
    before, after, demo_result = _compare(demo, videos, 64)
    demo_result["top1_float32"] = float((before.argmax(-1) == labels).mean())
    demo_result["top1_int8"] = float((after.argmax(-1) == labels).mean())
    demo_result["clips"] = int(clips)

    model = VideoMAE_ViTB16FT(num_classes=400)
    rng = np.random.default_rng(0)
    videos = rng.standard_normal((8, 16, 224, 224, 3)).astype("float32")
    _, _, vit_result = _compare(model, videos, 2)
    vit_result["clips"] = 8
    return {"demo": demo_result, "ViT-B": vit_result}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=int, default=256, help="demo clips (default 256)")
    parser.add_argument("--backends", default=",".join(_common.BACKENDS))
    args = parser.parse_args()
    if args.worker:
        _common.emit(worker(args.clips))
        return
    rows = []
    for backend in [b for b in args.backends.split(",") if b]:
        print(f"[{backend}] ...", file=sys.stderr, flush=True)
        answer = _common.run_worker(os.path.abspath(__file__), backend,
                                    ["--clips", str(args.clips)], backend=backend)
        if "error" in answer:
            rows.append({"backend": backend, "fixture": "-", "error": answer["error"]})
            continue
        for fixture, result in answer.items():
            rows.append({"backend": backend, "fixture": fixture, **result})
    payload = {"machine": _common.machine(), "rows": rows,
               "command": _common.command()}
    path = _common.save("quantize", payload)
    print(render(payload))
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


def render(payload):
    """The int8 accuracy table as Markdown."""
    return _common.table(payload["rows"], [
        ("backend", "backend"), ("fixture", "fixture"), ("clips", "clips"),
        ("top1_agreement", "top-1 agreement"), ("top1_float32", "top-1 float32"),
        ("top1_int8", "top-1 int8"), ("max_abs_logit_diff", "max |dlogit|"),
        ("mean_abs_logit_diff", "mean |dlogit|"), ("relative_logit_diff", "mean |dlogit| / std"),
        ("error", "error")])


if __name__ == "__main__":
    main()
