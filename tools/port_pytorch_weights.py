#!/usr/bin/env python
"""Port a PyTorch VideoMAE checkpoint to Keras files (same as `videomae-keras port`).

    python tools/port_pytorch_weights.py SOURCE --out DIR [--format keras,h5,savedmodel,onnx]
        [--verify] [--overwrite]

SOURCE is an official .pth, a transformers folder, a .safetensors/.bin file or a registered
name (--list). See `--help` for the rest, and MODEL_ZOO.md for the released checkpoints.
"""

import os
import sys

if __name__ == "__main__":
    # Run from a source checkout without installing: use the package next to this file.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from videomae_keras_cli import main  # the console command's entry: a quiet start

    sys.exit(main(["port", *sys.argv[1:]]))
