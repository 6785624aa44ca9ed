#!/usr/bin/env python
"""ONNX export: peak memory and time of ours against transformers' model through torch.onnx.

Usage: python bench/export_memory.py [--sizes B] [--cases ours,ours-external,transformers]
                                     [--out export_memory]

Each case runs in a fresh process that builds a random-weight ViT classifier (400 classes,
16x224x224), resets the peak-RSS counter (Linux /proc/self/clear_refs) and exports it once;
the figure is the peak resident memory above the built model (VmHWM - VmRSS before the
export). Cases:
  ours                  `export_onnx` (tf2onnx, TensorFlow backend), weights inside the file
  ours-external         the same in ONNX's external-data form (the form ViT-H and ViT-g take)
  ours-unrenewed        `ours` without `export._node_protos_renewed`: tf2onnx as it comes,
                        which keeps one copy of the weights per optimizer pass
  ours-external-unrenewed
  transformers          VideoMAEForVideoClassification through torch.onnx.export
                        (TorchScript exporter, opset 17, free batch axis)
Writes bench/results/<out>.json and prints the table.
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402

SIZES = {"S": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                   intermediate_size=1536),
         "B": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   intermediate_size=3072),
         "L": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                   intermediate_size=4096)}
FACTORIES = {"S": "VideoMAE_ViTS16FT", "B": "VideoMAE_ViTB16FT", "L": "VideoMAE_ViTL16FT"}
CASES = ("ours", "ours-external", "ours-unrenewed", "ours-external-unrenewed", "transformers")


def _file_mb(path):
    return sum(os.path.getsize(p) for p in (path, path + ".data") if os.path.exists(p)) / 2**20


def worker(case, size, folder):
    """Builds one model and exports it; {peak_mb above the built model, seconds, file_mb}."""
    path = os.path.join(folder, f"{case}-{size}.onnx")
    if case == "transformers":
        import torch
        import transformers

        torch.manual_seed(0)
        config = transformers.VideoMAEConfig(num_labels=400, use_mean_pooling=True,
                                             **SIZES[size])
        model = transformers.VideoMAEForVideoClassification(config).eval()
        clip = torch.rand(1, 16, 3, 224, 224)

        def export():
            torch.onnx.export(model, (clip,), path, dynamo=False, opset_version=17,
                              input_names=["pixel_values"], output_names=["logits"],
                              dynamic_axes={"pixel_values": {0: "batch"}})
    else:
        import keras

        import videomae_keras
        from videomae_keras.checkpoints import export as exporter

        keras.utils.set_random_seed(0)
        model = getattr(videomae_keras, FACTORIES[size])(num_classes=400)
        if case.endswith("-unrenewed"):
            exporter._node_protos_renewed = contextlib.nullcontext

        def export():
            exporter.export_onnx(model, path, external_data="external" in case)
    _common.reset_peak()
    base = _common.status_mb("VmRSS")
    start = time.perf_counter()
    export()
    seconds = time.perf_counter() - start
    return {"peak_mb": _common.status_mb("VmHWM") - base, "seconds": seconds,
            "file_mb": _file_mb(path)}


def render(payload):
    """The export table as Markdown."""
    return _common.table(payload["rows"], [
        ("case", "model"), ("backend", "exporter"), ("file_mb", "file (MiB)"),
        ("peak_mb", "peak above the model (MiB)"), ("peak_ratio", "peak / file"),
        ("seconds", "seconds"), ("ratio", "time / transformers"), ("error", "error")])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="B", help="ViT sizes, of S, B, L (default B)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"which exports (default all: {','.join(CASES)})")
    parser.add_argument("--out", default="export_memory",
                        help="results name: bench/results/NAME.json (default export_memory)")
    args = parser.parse_args()
    if args.worker:
        _common.emit(worker(args.worker, args.size, args.folder))
        return
    if not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("bench/export_memory.py measures peak memory through "
                         "/proc/self/clear_refs, which only Linux has.")
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    if unknown or set(sizes) - set(SIZES):
        raise SystemExit(f"Unknown --cases {unknown} or --sizes {sizes}: cases are "
                         f"{', '.join(CASES)}; sizes {', '.join(SIZES)}.")
    rows = []
    for size in sizes:
        for case in cases:
            print(f"[ViT-{size}] {case} ...", file=sys.stderr, flush=True)
            folder = tempfile.mkdtemp(prefix="videomae-keras-export-")
            try:
                answer = _common.run_worker(
                    os.path.abspath(__file__), case,
                    ["--size", size, "--folder", folder],
                    backend=None if case == "transformers" else "tensorflow")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            row = {"case": f"ViT-{size}", "backend": case, **answer}
            if answer.get("peak_mb") and answer.get("file_mb"):
                row["peak_ratio"] = answer["peak_mb"] / answer["file_mb"]
            rows.append(row)
    _common.add_ratios(rows)
    payload = {"machine": _common.machine(), "rows": rows, "command": _common.command()}
    path = _common.save(args.out, payload)
    print(render(payload))
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


if __name__ == "__main__":
    main()
