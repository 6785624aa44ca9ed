#!/usr/bin/env python
"""Ports full-size random-weight fixtures of every kind and prints what --verify measured.

For each size (ViT-S, ViT-B), task (fine-tuned, pretraining) and checkpoint format (official
.pth under the wrapper the official scripts use; transformers folder) it writes a checkpoint
whose every parameter is random, runs the port command with all four formats and --verify,
and prints the max |diff| table. The official files are built with the tests' own official
key map (tests/reference.py), independent of the package's converter.

    python tools/check_ports.py [--sizes S,B] [--formats keras,h5,savedmodel,onnx] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

SIZES = {
    "S": dict(hidden_size=384, num_attention_heads=6, intermediate_size=1536,
              decoder_hidden_size=192, decoder_num_attention_heads=3,
              decoder_intermediate_size=768, decoder_num_hidden_layers=4),
    "B": dict(),  # transformers' defaults are ViT-B/16 with the 4-block decoder
}


def fixtures(size, folder):
    import reference

    config = dict(SIZES[size], num_labels=400)
    made = []
    for task, wrapper in (("classifier", "module"), ("pretrainer", "model")):
        extra = {} if task == "classifier" else {"use_mean_pooling": False}
        hf = reference.hf_model(task, seed=len(made) + 1, **config, **extra)
        hf_folder = os.path.join(folder, f"vit_{size.lower()}_{task}_transformers")
        hf.save_pretrained(hf_folder)
        made.append((f"ViT-{size} {task}, transformers folder", hf_folder))
        reference.set_official_epsilons(hf)
        path = os.path.join(folder, f"vit_{size.lower()}_{task}_official.pth")
        reference.save_official(reference.official_state_dict(hf), path, wrapper)
        made.append((f"ViT-{size} {task}, official .pth ('{wrapper}')", path))
    return made


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="S,B")
    parser.add_argument("--formats", default="keras,h5,savedmodel,onnx")
    parser.add_argument("--keep", help="keep fixtures and outputs in this folder")
    args = parser.parse_args()
    from videomae_keras.checkpoints.porting import port

    folder = args.keep or tempfile.mkdtemp(prefix="check-ports-")
    os.makedirs(folder, exist_ok=True)
    rows = []
    try:
        for size in args.sizes.split(","):
            for label, source in fixtures(size.strip().upper(), folder):
                print(f"== {label}", file=sys.stderr, flush=True)
                result = port(source, os.path.join(folder, "out"), formats=args.formats.split(","),
                              verify=True, overwrite=True, progress=False)
                rows.append((label, result.reference, result.differences))
                print(result.summary(), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps([{"fixture": l, "reference": r, "max_abs_diff": d} for l, r, d in rows], indent=1))


if __name__ == "__main__":
    main()
