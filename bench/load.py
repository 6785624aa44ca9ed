#!/usr/bin/env python
"""Loading checkpoints: peak memory and time of `from_pretrained` against transformers.

Usage: python bench/load.py [--sizes B,L] [--backends jax,tensorflow,torch]
                            [--fixtures DIR] [--readme]

Fixtures (random weights, written once into --fixtures DIR and reused, else into a
temporary folder removed at the end): for each size a transformers folder
(`save_pretrained`, model.safetensors), an official-format `.pth` of the same tensors
(torch.save of {"model": state dict} under the official key names), and the `.keras` file
our loader makes of the folder. Each case runs in a fresh process: after the imports the
peak-RSS counter is reset (Linux /proc/self/clear_refs), the checkpoint is loaded and the
peak resident memory above the post-import RSS is read (VmHWM). transformers loads its
own folder (`VideoMAEForVideoClassification.from_pretrained`); a `.pth` needs torch, whose
import is measured on its own and not counted in the load (column "torch import").
Writes bench/results/load.json; --readme puts the table into README.md.
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

SIZES = {"B": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   intermediate_size=3072),
         "L": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                   intermediate_size=4096)}
KINDS = ("transformers folder", "official .pth", ".keras")
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"


def worker(variant, source):
    """Loads `source` once; {peak above post-import RSS, seconds, torch import}."""
    torch_import = None
    if variant == "transformers":
        import torch  # noqa: F401
        import transformers

        load = transformers.VideoMAEForVideoClassification.from_pretrained
    else:
        import keras  # noqa: F401

        import videomae_keras

        load = videomae_keras.from_pretrained
        if source.endswith(".pth") and "torch" not in sys.modules:
            _common.reset_peak()
            before = _common.status_mb("VmRSS")
            import torch  # noqa: F401,F811

            torch_import = _common.status_mb("VmHWM") - before
    _common.reset_peak()
    base = _common.status_mb("VmRSS")
    start = time.perf_counter()
    model = load(source)
    seconds = time.perf_counter() - start
    peak = _common.status_mb("VmHWM") - base
    after = _common.status_mb("VmRSS") - base
    del model
    return {"peak_mb": peak, "after_mb": after, "seconds": seconds,
            "torch_import_mb": torch_import}


def make_fixtures(folder, size):
    """{kind: path} of the three checkpoints of one size, each written (in its own process)
    unless present: the transformers folder first, the other two made from it."""
    hf = os.path.join(folder, f"hf-{size}")
    paths = {"transformers folder": hf,
             "official .pth": os.path.join(folder, f"official-{size}.pth"),
             ".keras": os.path.join(folder, f"{size}.keras")}
    jobs = [("transformers folder", "make-hf", ["--size", size, "--source", hf], None),
            ("official .pth", "make-pth", ["--source", hf], None),
            (".keras", "make-keras", ["--source", hf], "jax")]
    for kind, job, args, backend in jobs:
        target = paths[kind]
        written = os.path.join(target, "config.json") if os.path.isdir(target) else target
        if os.path.exists(written):
            continue
        print(f"[fixtures] ViT-{size} {kind} ...", file=sys.stderr, flush=True)
        answer = _common.run_worker(os.path.abspath(__file__), job,
                                    args + ["--target", target], backend=backend)
        if "error" in answer:
            raise SystemExit(f"Cannot write the ViT-{size} {kind}: {answer['error']}")
    return paths


def make_hf(size, target):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(num_labels=400, use_mean_pooling=True, **SIZES[size])
    transformers.VideoMAEForVideoClassification(config).eval().save_pretrained(target)
    return {"written": target}


def make_pth(source, target):
    """The official layout of a transformers folder's tensors: official key names, a fused
    qkv weight, q and v biases (no k bias), under "model" as the official scripts save."""
    import numpy as np
    import torch

    from videomae_keras.convert import read_checkpoint, to_canonical

    state, _, _ = to_canonical(read_checkpoint(source).state)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    torch.save({"model": state, "epoch": 0}, target + ".tmp")
    os.replace(target + ".tmp", target)
    return {"written": target}


def make_keras(source, target):
    import videomae_keras

    model = videomae_keras.from_pretrained(source)
    model.save(target + ".tmp.keras")
    os.replace(target + ".tmp.keras", target)
    return {"written": target}


def checkpoint_mb(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)
                   if name.endswith((".safetensors", ".bin"))) / 2**20
    return os.path.getsize(path) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="B,L", help="ViT sizes (default B,L)")
    parser.add_argument("--backends", default=",".join(_common.BACKENDS))
    parser.add_argument("--fixtures", help="folder to keep the fixtures in (reused)")
    parser.add_argument("--readme", action="store_true",
                        help="put the table of bench/results/load.json into README.md")
    args = parser.parse_args()
    if args.worker:
        jobs = {"make-hf": lambda: make_hf(args.size, args.target),
                "make-pth": lambda: make_pth(args.source, args.target),
                "make-keras": lambda: make_keras(args.source, args.target)}
        job = jobs.get(args.worker, lambda: worker(args.worker, args.source))
        _common.emit(job())
        return
    if args.readme:
        _common.replace_readme_block(BEGIN, END, render(_common.load("load")) + "\n")
        return
    if not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("bench/load.py measures peak memory through /proc/self/clear_refs, "
                         "which only Linux has.")
    folder = args.fixtures or tempfile.mkdtemp(prefix="videomae-keras-load-")
    os.makedirs(folder, exist_ok=True)
    rows = []
    try:
        for size in [s for s in args.sizes.split(",") if s]:
            paths = make_fixtures(folder, size)
            cases = [("transformers", "transformers folder")]
            cases += [(b, kind) for kind in KINDS for b in args.backends.split(",") if b]
            for variant, kind in cases:
                print(f"[ViT-{size} {kind}] {variant} ...", file=sys.stderr, flush=True)
                answer = _common.run_worker(os.path.abspath(__file__), variant,
                                            ["--source", paths[kind]], backend=(
                                                None if variant == "transformers" else variant))
                size_mb = checkpoint_mb(paths[kind])
                row = {"case": f"ViT-{size}", "source": kind, "backend": variant,
                       "checkpoint_mb": size_mb, **answer}
                if "peak_mb" in answer:
                    row["peak_ratio"] = answer["peak_mb"] / size_mb
                rows.append(row)
    finally:
        if not args.fixtures:
            shutil.rmtree(folder, ignore_errors=True)
    _common.add_ratios(rows)
    payload = {"machine": _common.machine(), "rows": rows,
               "command": _common.command()}
    path = _common.save("load", payload)
    print(render(payload))
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


def render(payload):
    """The loading table as Markdown."""
    return _common.table(payload["rows"], [
        ("case", "model"), ("source", "checkpoint"), ("backend", "loader"),
        ("checkpoint_mb", "size (MiB)"), ("peak_mb", "peak above import (MiB)"),
        ("peak_ratio", "peak / size"), ("seconds", "seconds"),
        ("ratio", "time / transformers"), ("torch_import_mb", "torch import (MiB)"),
        ("error", "error")])


if __name__ == "__main__":
    main()
