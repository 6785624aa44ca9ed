#!/usr/bin/env python
"""Writes MODEL_ZOO.md from weights/registry.json (`--check`: fail if the file is stale).

Parameters and FLOPs are computed from each architecture by videomae_keras.flops (FLOPs as
multiply-adds per view, the papers' convention); accuracies are the authors' reports.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from videomae_keras import configs, flops, presets  # noqa: E402
from videomae_keras.models import VideoMAEBackbone  # noqa: E402
from videomae_keras.models.base import default_arguments  # noqa: E402

SECTIONS = [
    ("Kinetics-400", "Kinetics-400"),
    ("Something-Something V2", "Something-Something V2"),
    ("UCF101", "UCF101"),
    ("Kinetics-710 (VideoMAE V2)", "Kinetics-710"),
]


def architecture_config(info):
    """The model arguments of a registry entry, for counting (no model is built)."""
    size = info["architecture"].split("-")[1].split("/")[0]
    preset = next(s for s in presets.SIZES.values() if s.title == info["architecture"])
    config = dict(default_arguments(VideoMAEBackbone), **preset.backbone)
    if info["family"].startswith("VideoMAE (transformers") and size == "S":
        config["num_heads"] = 16  # transformers' small conversions
    if info["task"] == "classifier":
        config.update(num_classes=info["num_classes"], use_mean_pooling=True)
    elif info["task"] == "pretrainer":
        config.update(preset.decoder, use_final_norm=True)
        grid = configs.grid_size(16, 224, config["patch_size"], 2)
        config["num_masked"] = configs.num_masked_tokens(
            grid, info.get("model_args", {}).get("mask_ratio", 0.9)
        )
    else:
        config["use_final_norm"] = True
    return size, config


def _command(name):
    return f"`videomae-keras port {name} --out ported --verify`"


def _row(name, info):
    size, config = architecture_config(info)
    counts = flops.count(config)
    epochs = info.get("pretraining", {}).get("epochs")
    pretraining = f"{info['pretraining']['dataset']}, {epochs}e" if epochs else info["pretraining"]["dataset"]
    cells = [
        f"`{name}`",
        info["architecture"],
        pretraining,
        _number(info.get("top1")),
        _number(info.get("top5")),
        info.get("views") or "–",
        f"{counts['params'] / 1e6:.1f}M",
        f"{counts['flops'] / 1e9:.0f}",
        _command(name),
    ]
    return "| " + " | ".join(cells) + " |"


def _number(value):
    return "–" if value is None else f"{value:.1f}"


def _digest_note(checkpoints):
    """What the registry says about file digests, and what is done where it says nothing."""
    files = [f for info in checkpoints.values() for f in info["files"]]
    published = sum(1 for f in files if f.get("sha256"))
    told = (f"{published} of the {len(files)} files have a published sha256, checked on every "
            "download; for the others" if published else
            f"None of the {len(files)} files has a published sha256 (no release gives one), so")
    return (f"**Digests.** {told} the first download records the file's sha256 in the cache "
            "(beside the file for Google Drive downloads, in the entry's `digests.json` for "
            "Hugging Face files) and every later use checks the cached file against it; a file "
            "that no longer matches is removed and downloaded again. `videomae-keras port "
            "--list` shows for each entry whether its digest is published, recorded, or still "
            "to be recorded on first download.")


def render(registry):
    checkpoints = registry["checkpoints"]
    out = [
        "# Model zoo",
        "",
        "Every released VideoMAE and VideoMAE V2 checkpoint that videomae-keras knows by name.",
        "`videomae_keras.from_pretrained(NAME)` downloads one into the cache on first use",
        "(`VIDEOMAE_KERAS_CACHE`, default `~/.cache/videomae_keras`), checks it, converts it once",
        "and loads the converted `.keras` file from then on, offline too. The port command in",
        "each row writes the Keras files and, with `--verify`, compares them with the PyTorch",
        "reference; add `--format keras,h5,savedmodel,onnx` for every format.",
        "",
        "Top-1/top-5 are the authors' reported accuracies (%) with their views (frames x clips x",
        "crops). Parameters and GFLOPs (multiply-adds for one view, the papers' convention) are",
        "computed from the architecture by `videomae_keras.flops`; multiply by the number of",
        "views for a full test. This file is generated from `weights/registry.json` by",
        "`python tools/make_model_zoo.py`.",
        "",
        _digest_note(checkpoints),
        "",
    ]
    header = ("| name | backbone | pretraining | top-1 | top-5 | views | params | GFLOPs/view "
              "| port |\n|---|---|---|---|---|---|---|---|---|")
    for title, dataset in SECTIONS:
        rows = [(n, i) for n, i in checkpoints.items()
                if i["task"] == "classifier" and i["dataset"] == dataset]
        if not rows:
            continue
        out += [f"## {title}: fine-tuned classifiers", "", header]
        out += [_row(n, i) for n, i in rows]
        out.append("")
    rows = [(n, i) for n, i in checkpoints.items() if i["task"] != "classifier"]
    out += ["## Self-supervised pretrained models", "",
            "Pretraining checkpoints (encoder, decoder and mask token) for masked video "
            "modelling and as fine-tuning starts. GFLOPs are for the masked forward pass "
            "(encoder on the visible tokens at 90% tube masking, decoder on all of them).", "",
            header]
    out += [_row(n, i) for n, i in rows]
    out += ["", "## Sources", ""]
    for name, info in checkpoints.items():
        urls = [u for f in info["files"] for u in (f["url"] if isinstance(f["url"], list) else [f["url"]])]
        main = next((u for u in urls if "config.json" not in u), urls[0])
        source = info.get("hf_repo") and f"https://huggingface.co/{info['hf_repo']}" or main
        note = f" {info['notes']}" if info.get("notes") else ""
        same = f" Same weights as `{info['same_weights_as']}`." if info.get("same_weights_as") else ""
        out.append(f"- `{name}`: {source}.{same}{note}")
    out += ["", TRAPS]
    return "\n".join(out) + "\n"


TRAPS = """## How exact the ports are

`python tools/check_ports.py` writes full-size ViT-S and ViT-B checkpoints with every parameter
random, in both formats (official `.pth` under the wrapper the official scripts use, and
transformers folders), ports each to all four formats with `--verify`, and prints what it
measured. Max |diff| on one 16x224 clip (logits for classifiers, the 1408 masked-token
predictions for pretrainers; float32, CPU):

| fixture | Keras vs PyTorch | .keras | .weights.h5 | SavedModel | SavedModel, XLA | SavedModel, uint8 | ONNX |
|---|---|---|---|---|---|---|---|
| ViT-S classifier, transformers folder | 1.5e-6 | 0 | 0 | 1.7e-6 | 1.9e-6 | 2.6e-6 | 2.4e-6 |
| ViT-S classifier, official `.pth` (`module`) | 1.9e-6 | 0 | 0 | 2.0e-6 | 1.5e-6 | 1.9e-6 | 2.2e-6 |
| ViT-S pretrainer, transformers folder | 4.8e-6 | 0 | 0 | 4.5e-6 | 3.6e-6 | 4.5e-6 | 3.1e-6 |
| ViT-S pretrainer, official `.pth` (`model`) | 4.5e-6 | 0 | 0 | 5.0e-6 | 3.8e-6 | 4.5e-6 | 3.3e-6 |
| ViT-B classifier, transformers folder | 2.3e-6 | 0 | 0 | 2.5e-6 | 2.1e-6 | 2.1e-6 | 2.0e-6 |
| ViT-B classifier, official `.pth` (`module`) | 3.6e-6 | 0 | 0 | 3.8e-6 | 3.3e-6 | 2.4e-6 | 1.8e-6 |
| ViT-B pretrainer, transformers folder | 6.7e-6 | 0 | 0 | 7.4e-6 | 4.3e-6 | 5.2e-6 | 3.6e-6 |
| ViT-B pretrainer, official `.pth` (`model`) | 6.0e-6 | 0 | 0 | 5.5e-6 | 4.1e-6 | 6.2e-6 | 4.3e-6 |

The reference is transformers' own `from_pretrained` for the folders, and transformers'
VideoMAE holding the mapped weights with LayerNorm epsilon 1e-6 for the official files. The
files are compared with the Keras model: SavedModel in a fresh TensorFlow process (also under
XLA, and through `serving_uint8` with uint8 frames), ONNX with onnxruntime. The ONNX column
was rerun after the export began writing attention plainly (MatMul, Softmax, MatMul, the form
runtimes fuse) with `python tools/check_ports.py --formats onnx`; the other columns are from
the earlier run of all four formats.

## Label maps

`weights/labels/` holds `kinetics400.txt` (400), `ssv2.txt` (174) and `ucf101.txt` (101), one
class per line in head order, and `k710_to_k400.json`, the 400 rows of a 710-way Kinetics-710
head that score the Kinetics-400 classes. `labels/SOURCES.md` says where each comes from and
how it was checked; the 710-to-400 map was derived from public sources and cross-checked,
since VideoMAE V2's own file was not available. The 710 class names themselves are not
shipped. `videomae_keras.presets.labels("kinetics400")` reads them.

## Known traps

- **The V1 ViT-H pretrained file holds the encoder only** (no decoder, no mask token, weights
  under `module`). `videomae-h-k400-pt-1600e` loads as a `VideoMAEBackbone` with its final
  norm; there is nothing to reconstruct pixels with.
- **transformers' small checkpoints use 16 heads.** `MCG-NJU/videomae-small-*` were converted
  with 16 heads of 24 dimensions, the official ViT-S has 6 of 64. Weights do not store the
  head count, so the two give different outputs from the same tensors; `from_pretrained`
  follows each checkpoint's own convention (config.json for transformers, 6 for official files).
- **710-class heads.** VideoMAE V2's `videomaev2-*-k710-*` models score Kinetics-710. Take the
  Kinetics-400 logits with `labels/k710_to_k400.json` (`logits[:, index_map]`).
- **LayerNorm epsilon differs** between the official code (1e-6 everywhere) and transformers
  (1e-12 in the blocks, 1e-5 in fc_norm and the decoder's last norm). The same weights then
  give logits about 1e-5 apart; `from_pretrained` uses the checkpoint's own convention, and
  `--verify` builds its reference the same way.
- **Pretrained transformers checkpoints have `use_mean_pooling: false`.** Fine-tuning from
  `MCG-NJU/videomae-base` in transformers gives a first-token head; build
  `VideoMAE_ViTB16FT(use_mean_pooling=True)` and load the encoder with `strict=False` for the
  official recipe.
- **Official files come under `model` or `module`.** Pretraining saves use `model` (with
  optimizer state and the run's arguments), DeepSpeed fine-tunes `module`; some have
  `module.`, `_orig_mod.`, `encoder.` or `backbone.` prefixes. All are handled.
- **Google Drive** answers large downloads with a confirmation page (followed automatically)
  and sometimes with a quota page; the error then gives the file's Drive address and where to
  put it in the cache by hand.
- **Some transformers 5.x releases load VideoMAE's q/v biases as zeros** (they report them
  as unexpected keys). `--verify` refuses a transformers reference that did not load cleanly.
- **Not released or lost:** the V1 ViT-B 81.0 (repeated augmentation) fine-tune, the V2 ViT-g
  K710-to-K400 fine-tune, and V2 ViT-L/H weights.
- **ONNX files cannot exceed 2 GB**, so ViT-H and ViT-g are written in ONNX's external-data
  form: `NAME.onnx` holds the graph and `NAME.onnx.data` beside it the weights; keep the two
  together (onnxruntime finds the data from the `.onnx` path).
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if MODEL_ZOO.md is stale")
    args = parser.parse_args()
    with open(os.path.join(ROOT, "weights", "registry.json"), encoding="utf-8") as f:
        text = render(json.load(f))
    path = os.path.join(ROOT, "MODEL_ZOO.md")
    if args.check:
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                print("MODEL_ZOO.md is stale: run python tools/make_model_zoo.py", file=sys.stderr)
                return 1
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
