#!/usr/bin/env python
"""The whole benchmark suite in one command: model speed and memory (speed.py), int8
accuracy (quantize.py), pre-processing (preprocess.py), eager torch's per-block dispatch
cost (dispatch.py), the fixed cost of one call (call_overhead.py), checkpoint loading
(load.py), `videomae-keras predict` end to end (predict_e2e.py) and ONNX Runtime float32
and int8 (onnx_runtime.py), each side by side with transformers, then the tables into
bench/results/SUMMARY.md and the README.

Usage: python bench/run_all.py [--quick] [--no-readme]

Needs the three backends, torch and transformers (`pip install -e ".[all,test]"`). About
an hour and a half on a 2-core CPU, predict_e2e.py about 17 minutes of it and
onnx_runtime.py 10 (`--quick`: about 25 minutes). Keep the machine otherwise idle.
bench/gpu.py (bfloat16 on one GPU against transformers) is not run here: it needs a GPU and
writes its own README table.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402
import dispatch  # noqa: E402
import quantize  # noqa: E402
import speed  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
TARGETS = """Targets (2-core CPU): the fastest backend at or below 1.0x transformers for ViT-B
fine-tuned inference and the pretraining train step, every backend at or below 1.5x, and
the pretraining forward at 90% masking at or below 0.25x of the fine-tuned forward."""


def _run(script, args):
    command = [sys.executable, os.path.join(_common.ROOT, "bench", script)] + args
    print("$ " + " ".join(["python", "bench/" + script] + args), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def summary(speed_payload, quantize_payload, preprocess_payload, dispatch_payload):
    """All tables as one Markdown text."""
    info = speed_payload["machine"]
    versions = ", ".join(f"{k} {info[k]}" for k in ("keras", "jax", "tensorflow", "torch",
                                                     "transformers") if k in info)
    lines = [f"Measured with `{speed_payload['command'].strip()}` on {info['machine']}, "
             f"{info['cores']} cores ({versions}); 16 frames at 224x224.", "", TARGETS, "",
             speed.render(speed_payload), "",
             "int8 weights (`model.quantize(\"int8\")`) against float32:", "",
             quantize.render(quantize_payload), "",
             "Pre-processing a 16-frame 1280x720 clip to 224x224 (ratio: ours / transformers):",
             "", _common.table(
                 [dict(r, ratio=1 / r["speedup_vs_transformers"])
                  for r in preprocess_payload["rows"]],
                 [("method", "method"), ("seconds", "median s"), ("ratio", "x transformers")]),
             "", dispatch.render(dispatch_payload)]
    return "\n".join(lines) + "\n"


def update_readme(text):
    """Replaces the README's benchmark block (between the bench markers)."""
    _common.replace_readme_block(BEGIN, END, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and runs")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--skip-run", action="store_true",
                        help="only rebuild the summary from the saved results")
    args = parser.parse_args()
    if not args.skip_run:
        _run("speed.py", ["--quick"] if args.quick else [])
        _run("quantize.py", ["--clips", "64"] if args.quick else [])
        _run("preprocess.py", ["--repeats", "5"] if args.quick else [])
        _run("dispatch.py", ["--repeats", "50"] if args.quick else [])
        _run("call_overhead.py", ["--repeats", "50"] if args.quick else [])
        _run("load.py", ["--sizes", "B"] if args.quick else [])
        _run("predict_e2e.py", ["--repeats", "1"] if args.quick else [])
        _run("onnx_runtime.py", ["--no-readme"] + (["--batches", "1", "--repeats", "3",
                                                    "--clips", "64"] if args.quick else []))
    text = summary(*(_common.load(name) for name in ("speed", "quantize", "preprocess",
                                                       "dispatch")))
    path = os.path.join(_common.RESULTS, "SUMMARY.md")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    if not args.no_readme:
        update_readme(text)
        _run("load.py", ["--readme"])  # its own block: loading memory and time
        _run("predict_e2e.py", ["--readme"])  # and end to end: predict
        _run("onnx_runtime.py", ["--readme"])  # and ONNX Runtime
        _run("call_overhead.py", ["--readme"])  # and the fixed cost of a call
    print(text)
    print(f"written: bench/results/SUMMARY.md{'' if args.no_readme else ' and README.md'}")


if __name__ == "__main__":
    main()
