#!/usr/bin/env python
"""ONNX Runtime float32 and int8 (`port --format onnx-int8`) against transformers' float32
VideoMAE on the CPU: speed, and what int8 costs in accuracy.

Usage: python bench/onnx_runtime.py [--batches 1,4] [--repeats 10] [--clips 256]
                                    [--out onnx_runtime] [--readme] [--no-readme]

Two steps, each in a process of its own:
  prepare  (Keras on tensorflow) writes ViT-B/16 fine-tuned (400 classes, the factory's
           random initialisation) and the shipped demo classifier
           (weights/demo/tiny_finetuned.keras) as float ONNX files through the library's
           exporter and quantises them with `export.quantize_onnx`, the code `port --format
           onnx-int8` runs; it keeps the float32 Keras logits of the accuracy clips.
  time     (no Keras model) runs both ONNX files of each model with onnxruntime and
           transformers' VideoMAEForVideoClassification (SDPA, torch.inference_mode) on 16
           random 224x224 frames, the three calls alternating in one process (rotating
           which goes first) at each batch size; every library uses all cores.

Accuracy: top-1 agreement of the int8 demo model with the float32 Keras model (and each
one's accuracy) on --clips held-out synthetic clips (bench/quantize.py's), and for ViT-B
the mean |logit difference| relative to the logits' std and the top-1 agreement over 8
random clips. Writes bench/results/onnx_runtime.json and the README's table (between the
onnx markers; --no-readme leaves it, --readme rewrites it from the JSON alone); --out NAME
writes bench/results/NAME.json instead (a run on a CPU of another kind) and leaves the
README alone. About 8
minutes on a 2-core CPU, half of it exporting ViT-B.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402

BEGIN, END = "<!-- onnx:begin -->", "<!-- onnx:end -->"
FRAMES, SIZE = 16, 224
VIT_CLIPS = 8
DEMO = os.path.join(_common.ROOT, "weights", "demo", "tiny_finetuned.keras")


def prepare(folder, clips):
    """Writes {vit_b,demo}{.onnx,.int8.onnx} and the float32 Keras logits of the accuracy
    clips (with the clips and the demo labels) into `folder`; returns the seconds each
    export and quantisation took."""
    import numpy as np

    import keras
    from videomae_keras.checkpoints import export
    from videomae_keras.models import VideoMAE_ViTB16FT
    from quantize import demo_clips

    seconds = {}
    rng = np.random.default_rng(0)
    vit_clips = rng.standard_normal((VIT_CLIPS, FRAMES, SIZE, SIZE, 3)).astype("float32")
    demo_videos, demo_labels = demo_clips(clips)
    for name, model, videos, batch in (
            ("vit_b", VideoMAE_ViTB16FT(num_classes=400), vit_clips, 2),
            ("demo", keras.saving.load_model(DEMO), demo_videos, 64)):
        logits = np.concatenate([np.asarray(model.predict_on_batch(videos[i:i + batch]))
                                 for i in range(0, len(videos), batch)])
        np.save(os.path.join(folder, f"{name}_clips.npy"), videos)
        np.save(os.path.join(folder, f"{name}_float32_logits.npy"), logits)
        path = os.path.join(folder, name + ".onnx")
        start = time.perf_counter()
        export.export_onnx(model, path)
        seconds[f"{name}_export_s"] = time.perf_counter() - start
        start = time.perf_counter()
        export.quantize_onnx(path, os.path.join(folder, name + ".int8.onnx"), folder)
        seconds[f"{name}_quantize_s"] = time.perf_counter() - start
    np.save(os.path.join(folder, "demo_labels.npy"), demo_labels)
    return seconds


def _session(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def accuracy(folder):
    """The rows of int8 against the float32 Keras logits (and float32 ONNX as a check)."""
    import numpy as np

    from videomae_keras.checkpoints.export import int8_agreement

    rows = []
    for name, fixture in (("demo", "demo classifier"), ("vit_b", "ViT-B (random weights)")):
        clips = np.load(os.path.join(folder, f"{name}_clips.npy"))
        expected = np.load(os.path.join(folder, f"{name}_float32_logits.npy"))
        for variant, path in (("onnxruntime float32", name + ".onnx"),
                              ("onnxruntime int8", name + ".int8.onnx")):
            session = _session(os.path.join(folder, path))
            batch = 64 if name == "demo" else 2
            logits = np.concatenate([session.run(None, {"video": clips[i:i + batch]})[0]
                                     for i in range(0, len(clips), batch)])
            row = {"fixture": fixture, "variant": variant,
                   "size_mb": os.path.getsize(os.path.join(folder, path)) / 2**20,
                   **int8_agreement(expected, logits)}
            if name == "demo":
                labels = np.load(os.path.join(folder, "demo_labels.npy"))
                row["top1_float32"] = float((expected.argmax(-1) == labels).mean())
                row["top1_onnx"] = float((logits.argmax(-1) == labels).mean())
            rows.append(row)
    return rows


def speed(folder, batches, repeats):
    """Rows of median seconds per variant and batch: transformers, ORT float32, ORT int8."""
    import numpy as np
    import torch

    from speed import _transformers_model

    torch.set_num_threads(os.cpu_count())
    model = _transformers_model("ft", "B").eval()
    sessions = {"onnxruntime float32": _session(os.path.join(folder, "vit_b.onnx")),
                "onnxruntime int8": _session(os.path.join(folder, "vit_b.int8.onnx"))}
    rows = []
    for batch in batches:
        video = np.random.default_rng(batch).standard_normal(
            (batch, FRAMES, SIZE, SIZE, 3)).astype("float32")
        pixels = torch.from_numpy(video.transpose(0, 1, 4, 2, 3).copy())

        def transformers_call():
            with torch.inference_mode():
                return model(pixel_values=pixels).logits

        functions = {"transformers": transformers_call}
        for name, session in sessions.items():
            functions[name] = lambda session=session: session.run(None, {"video": video})
        medians = _common.rotating_seconds(functions, repeats)
        case = f"ft-B-b{batch}"
        rows += [{"case": case, "backend": name, "seconds": seconds,
                  "clips_per_s": batch / seconds} for name, seconds in medians.items()]
    _common.add_ratios(rows)
    for row in rows:
        row["speedup"] = 1 / row["ratio"]
    return rows


def worker(step, folder, args):
    if step == "prepare":
        return prepare(folder, args.clips)
    import onnxruntime

    return {"accuracy": accuracy(folder),
            "speed": speed(folder, [int(b) for b in args.batches.split(",")], args.repeats),
            "onnxruntime": onnxruntime.__version__}


def render(payload):
    """The speed and accuracy tables as Markdown."""
    info = payload["machine"]
    versions = ", ".join(f"{k} {info[k]}" for k in ("keras", "torch", "transformers")
                         if k in info)
    return "\n".join([
        f"Measured with `{payload['command'].strip()}` on "
        f"{info.get('cpu') or info['machine']}, "
        f"{info['cores']} cores (onnxruntime {payload['onnxruntime']}, {versions}); "
        f"ViT-B/16 fine-tuned, 16 frames at 224x224; median of {payload['repeats']} calls, "
        "the three alternating in one process.", "",
        _common.table(payload["speed"], [
            ("case", "case"), ("backend", "variant"), ("seconds", "median s"),
            ("clips_per_s", "clips/s"), ("speedup", "x faster than transformers")]), "",
        "Against the float32 Keras model on the same clips:", "",
        _common.table(payload["accuracy"], [
            ("fixture", "fixture"), ("variant", "variant"), ("size_mb", "file MB"),
            ("clips", "clips"), ("top1_agreement", "top-1 agreement"),
            ("top1_float32", "top-1 float32"), ("top1_onnx", "top-1 ONNX"),
            ("max_abs_diff", "max |dlogit|"), ("relative_diff", "mean |dlogit| / std")]),
    ]) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--batches", default="1,4", help="batch sizes (default 1,4)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls (default 10)")
    parser.add_argument("--clips", type=int, default=256, help="demo clips (default 256)")
    parser.add_argument("--out", default="onnx_runtime",
                        help="results name under bench/results/ (default onnx_runtime); "
                             "another name leaves the README's table alone")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--readme", action="store_true",
                        help="only put the table of bench/results/OUT.json into README.md")
    args = parser.parse_args()
    if args.worker:
        _common.emit(worker(args.worker, args.folder, args))
        return
    if args.readme:
        _common.replace_readme_block(BEGIN, END, render(_common.load(args.out)))
        return
    folder = tempfile.mkdtemp(prefix="videomae-keras-onnx-")
    try:
        shared = ["--folder", folder, "--clips", str(args.clips), "--batches", args.batches,
                  "--repeats", str(args.repeats)]
        script = os.path.abspath(__file__)
        print("[prepare] exporting and quantising ...", file=sys.stderr, flush=True)
        prepared = _common.run_worker(script, "prepare", shared, backend="tensorflow")
        if "error" in prepared:
            raise SystemExit(f"prepare failed: {prepared['error']}")
        print("[time] onnxruntime and transformers ...", file=sys.stderr, flush=True)
        answer = _common.run_worker(script, "time", shared, backend="torch")
        if "error" in answer:
            raise SystemExit(f"timing failed: {answer['error']}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    payload = {"machine": _common.machine(), "repeats": args.repeats, "prepare": prepared,
               **answer, "command": _common.command()}
    path = _common.save(args.out, payload)
    print(render(payload))
    print(f"written: {os.path.relpath(path, _common.ROOT)}")
    if not args.no_readme and args.out == "onnx_runtime":  # the README shows this one
        _common.replace_readme_block(BEGIN, END, render(payload))
        print("and the README's ONNX Runtime table")


if __name__ == "__main__":
    main()
