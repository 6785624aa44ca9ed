#!/usr/bin/env python
"""The fixed cost of one inference call, without the compute: ours (`predict_on_batch`, the
call `predict` and the serving paths make) on each backend against transformers' model call,
on models of ViT-B's and ViT-L's depth (12 and 24 blocks) that compute almost nothing (64
wide, one token).

Usage: python bench/call_overhead.py [--repeats 300] [--depths 12,24]

On a GPU, small batches take a few milliseconds of compute, so what a call costs besides
its kernels decides the latency (bench/gpu.py's batch-8 rows). That cost is Python and
framework bookkeeping on the host, the same on a CPU: this script measures it here. Rows:
transformers (eager PyTorch under inference_mode); jax, tensorflow (jit_compile: XLA) and
torch (eager) through `predict_on_batch`; torch-compile (`jit_compile=True`); and
"jax (jitted function)", the model's jitted stateless call with its weights passed in,
which is the floor XLA itself sets. Each variant runs in its own process; the median over
--repeats calls. Writes bench/results/call_overhead.json; --readme puts the table into
README.md.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402

VARIANTS = ("transformers", "jax", "jax (jitted function)", "tensorflow", "torch",
            "torch-compile")
BACKEND = {"transformers": None, "jax": "jax", "jax (jitted function)": "jax",
           "tensorflow": "tensorflow", "torch": "torch", "torch-compile": "torch"}
# one 16x16 frame pair at patch 16: one token; 64 wide, so the weights are small
MODEL = dict(num_frames=2, image_size=16, patch_size=16, hidden_dim=64, num_heads=4,
             mlp_dim=128, num_classes=400)
BATCH = 8
BEGIN, END = "<!-- overhead:begin -->", "<!-- overhead:end -->"


def worker(variant, depth, repeats):
    """Median seconds of one call for `variant` on a `depth`-block model."""
    import numpy as np

    video = np.random.default_rng(0).standard_normal(
        (BATCH, MODEL["num_frames"], MODEL["image_size"], MODEL["image_size"], 3)
    ).astype(np.float32)
    if variant == "transformers":
        import torch
        import transformers

        import videomae_keras as vk
        from videomae_keras.convert.transformers import arguments_to_config

        ours = vk.VideoMAEClassifier.from_arguments(**MODEL, depth=depth)  # for its arguments
        config = transformers.VideoMAEConfig(
            **arguments_to_config(ours.arguments(), "classifier"), attn_implementation="sdpa")
        del ours
        model = transformers.VideoMAEForVideoClassification(config).eval()
        pixels = torch.from_numpy(video.transpose(0, 1, 4, 2, 3).copy())

        def call():
            with torch.inference_mode():
                return model(pixel_values=pixels).logits
    else:
        import keras

        import videomae_keras as vk

        model = vk.VideoMAEClassifier.from_arguments(**MODEL, depth=depth)
        model.compile(jit_compile=variant != "torch")
        if variant == "jax (jitted function)":
            import jax

            state = ([v.value for v in model.trainable_variables],
                     [v.value for v in model.non_trainable_variables])
            step = jax.jit(lambda state, x: model.stateless_call(*state, x)[0])
            data = keras.ops.convert_to_tensor(video)

            def call():
                return np.asarray(step(state, data))
        else:
            def call():
                return model.predict_on_batch(video)
    seconds, runs = _common.median_seconds(call, repeats, warmup=10)
    return {"seconds": seconds, "runs": runs}


def render(payload):
    rows = [dict(r, ms=r.get("seconds", float("nan")) * 1e3) for r in payload["rows"]]
    return _common.table(rows, [("blocks", "blocks"), ("variant", "variant"),
                                ("ms", "ms per call"), ("ratio", "x transformers"),
                                ("error", "error")])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--depths", default="12,24")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README table from the saved results")
    args = parser.parse_args()
    if args.worker:
        _common.emit(worker(args.worker, args.depth, args.repeats))
        return
    if args.readme:
        _common.replace_readme_block(BEGIN, END, render(_common.load("call_overhead")) + "\n")
        return
    rows = []
    for depth in [int(d) for d in args.depths.split(",") if d]:
        for variant in [v for v in args.variants.split(",") if v]:
            print(f"[{depth} blocks] {variant} ...", file=sys.stderr, flush=True)
            answer = _common.run_worker(os.path.abspath(__file__), variant,
                                        ["--depth", str(depth), "--repeats", str(args.repeats)],
                                        backend=BACKEND[variant], timeout=900)
            rows.append({"case": f"{depth} blocks", "blocks": depth, "variant": variant,
                         "backend": variant, **answer})
    _common.add_ratios(rows)
    payload = {"machine": _common.machine(), "batch": BATCH, "model": MODEL, "rows": rows,
               "command": _common.command()}
    path = _common.save("call_overhead", payload)
    print(render(payload))
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


if __name__ == "__main__":
    main()
