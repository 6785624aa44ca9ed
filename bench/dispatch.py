#!/usr/bin/env python
"""Eager dispatch cost on torch: one ViT-B transformer block of ours against transformers'
VideoMAELayer, in one process, alternating calls, at a few token counts.

Usage: python bench/dispatch.py [--repeats 200] [--tokens 4,157,1568] [--out dispatch]

Both run the same PyTorch kernels (the matmuls, torch's fused CPU attention, LayerNorm, GELU),
so the difference per block is what Keras' layer calls and `keras.ops` wrappers add in eager
torch, plus our separate bias adds. At 4 tokens the kernels take almost nothing and the
difference is nearly all dispatch; 157 tokens is the pretraining encoder at batch 1 (10% of
1568 visible), where that cost weighs most; 1568 is fine-tuned inference.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402


def measure(tokens, repeats):
    """(transformers s, ours s, median ours/transformers) for one ViT-B block, (1, tokens, 768)."""
    import numpy as np
    import torch
    import transformers

    from videomae_keras.presets import SIZES
    from videomae_keras.layers import TransformerBlock

    config = SIZES["B16"].backbone
    hidden, heads, mlp = config["hidden_dim"], config["num_heads"], config["mlp_dim"]
    ours = TransformerBlock(hidden, heads, mlp)
    hf_config = transformers.VideoMAEConfig(hidden_size=hidden, num_attention_heads=heads,
                                            intermediate_size=mlp, qkv_bias=True)
    hf_config._attn_implementation = "sdpa"
    theirs = transformers.models.videomae.modeling_videomae.VideoMAELayer(hf_config).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, tokens, hidden),
                                                                 dtype=np.float32))
    ours(x)

    def run_ours():
        with torch.inference_mode():
            return ours(x, training=False)

    def run_theirs():
        with torch.inference_mode():
            return theirs(x)

    return _common.paired_seconds(run_theirs, run_ours, repeats, warmup=5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="alternating pairs per size")
    parser.add_argument("--tokens", default="4,157,1568", help="comma-separated token counts")
    parser.add_argument("--out", default="dispatch", help="results name under bench/results/")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported: eager torch is the subject
    rows = []
    for tokens in (int(t) for t in args.tokens.split(",")):
        repeats = max(5, args.repeats // max(1, tokens // 64))  # big blocks: fewer pairs
        theirs, ours, ratio = measure(tokens, repeats)
        rows.append({"tokens": tokens, "seconds": ours, "transformers_seconds": theirs,
                     "extra_ms": (ours - theirs) * 1e3, "ratio": ratio, "pairs": repeats})
        print(f"{tokens} tokens: {ours * 1e3:.2f} ms against {theirs * 1e3:.2f} ms",
              file=sys.stderr, flush=True)
    payload = {"machine": _common.machine(), "rows": rows,
               "command": _common.command()}
    path = _common.save(args.out, payload)
    print(render(payload))
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


def render(payload):
    """The Markdown table of one run."""
    return ("One ViT-B block, eager torch, same process, alternating calls "
            "(median of the per-pair ratios):\n\n" + _common.table(
                payload["rows"], [("tokens", "tokens"), ("seconds", "ours s"),
                                  ("transformers_seconds", "transformers s"),
                                  ("extra_ms", "extra ms"), ("ratio", "x transformers")]))


if __name__ == "__main__":
    main()
