"""Presets: every VideoMAE architecture and every released checkpoint, the one table that the
factories, loading, the download cache, the commands and MODEL_ZOO.md read.

An architecture name is a size and a task: "B16FT" is the ViT-B/16 classifier (fine-tuned),
"g14PT" the ViT-g/14 pretraining model, "tinyFT" the laptop-sized demo classifier. Sizes
follow the official registries (MCG-NJU/VideoMAE, OpenGVLab/VideoMAEv2; the facts file
says where each number comes from). The released checkpoints are data in
`weights/registry.json`: where each downloads from, its digests, accuracies and label map,
and its size ("ViT-B/16") and task, which name its architecture here.
"""

import dataclasses
import difflib
import functools
import json
import os
import re
from importlib import resources


@dataclasses.dataclass(frozen=True)
class Size:
    """One model size: its backbone, its pretraining decoder and its classifier head."""

    title: str  # as papers and the registry write it, "ViT-B/16"
    backbone: dict  # VideoMAEBackbone arguments (the rest keep the signature's defaults)
    decoder: dict  # VideoMAEPretrainer decoder arguments, as the released scripts use them
    num_classes: int = 400  # the classifier's head by default


def _backbone(patch_size, hidden_dim, depth, num_heads, mlp_dim, **more):
    return dict(patch_size=patch_size, hidden_dim=hidden_dim, depth=depth,
                num_heads=num_heads, mlp_dim=mlp_dim, **more)


def _decoder(hidden_dim, depth, num_heads, mlp_dim):
    return dict(decoder_hidden_dim=hidden_dim, decoder_depth=depth,
                decoder_num_heads=num_heads, decoder_mlp_dim=mlp_dim)


# Official ViT-S has 6 heads (transformers' converted small checkpoints use 16; loading reads
# those from config.json). ViT-g uses patch 14 and mlp_ratio 48/11, and its V2 classifier
# 710 classes (Kinetics-710). Decoders: 4 blocks, 12 for V1 L and H, 4 for V2 ViT-g.
SIZES = {
    "S16": Size("ViT-S/16", _backbone(16, 384, 12, 6, 1536), _decoder(192, 4, 3, 768)),
    "B16": Size("ViT-B/16", _backbone(16, 768, 12, 12, 3072), _decoder(384, 4, 6, 1536)),
    "L16": Size("ViT-L/16", _backbone(16, 1024, 24, 16, 4096), _decoder(512, 12, 8, 2048)),
    "H16": Size("ViT-H/16", _backbone(16, 1280, 32, 16, 5120), _decoder(640, 12, 8, 2560)),
    "g14": Size("ViT-g/14", _backbone(14, 1408, 40, 16, 6144), _decoder(512, 4, 8, 2234),
                num_classes=710),
    # Trains on a laptop CPU in minutes: the shipped demo models, 16 frames at 32x32.
    "tiny": Size("tiny", _backbone(8, 96, 4, 4, 192, tubelet_size=2, layer_norm_epsilon=1e-6),
                 _decoder(64, 2, 4, 128)),
}
TASKS = {"FT": "classifier", "PT": "pretrainer"}
ARCHITECTURES = tuple(size + task for size in SIZES for task in TASKS)
RELEASED = tuple(name for name in ARCHITECTURES if not name.startswith("tiny"))

# Head counts by width: official checkpoints do not store them.
ENCODER_HEADS_BY_WIDTH = {s.backbone["hidden_dim"]: s.backbone["num_heads"]
                          for key, s in SIZES.items() if key != "tiny"}
DECODER_HEADS_BY_WIDTH = {s.decoder["decoder_hidden_dim"]: s.decoder["decoder_num_heads"]
                          for key, s in SIZES.items() if key != "tiny"}


def architecture(name):
    """(size key, task) of an architecture name: "B16FT", "VideoMAE_ViTB16FT", "vit-b16-pt",
    "tinyPT", ...; a ValueError listing the names for anything else."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower()).removeprefix("videomae").removeprefix("vit")
    for size in SIZES:
        for suffix in TASKS:
            if key == (size + suffix).lower():
                return size, TASKS[suffix]
    raise ValueError(f"Unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}.")


def arguments(name, **overrides):
    """The flat model arguments of an architecture (backbone, and decoder or head), with
    `overrides` on top: what `VideoMAEClassifier/VideoMAEPretrainer.from_arguments` takes."""
    size, task = architecture(name)
    preset = SIZES[size]
    out = dict(preset.backbone)
    if task == "classifier":
        out["num_classes"] = preset.num_classes
    else:
        out.update(preset.decoder)
    if size != "tiny":
        out["name"] = f"videomae_vit{size[0].lower()}_{'ft' if task == 'classifier' else 'pt'}"
    out.update(overrides)
    return out


def factory_name(name):
    """The public one-line constructor of a released architecture: "VideoMAE_ViTB16FT"."""
    size, task = architecture(name)
    suffix = "FT" if task == "classifier" else "PT"
    if size == "tiny":
        raise ValueError("The tiny architecture has no factory; use build('tinyFT').")
    return f"VideoMAE_ViT{size}{suffix}"


def encoder_heads_for_width(hidden_dim):
    """Head count of the official encoder of this width (official checkpoints do not store it)."""
    return _heads(ENCODER_HEADS_BY_WIDTH, hidden_dim, "encoder", "num_heads")


def decoder_heads_for_width(hidden_dim):
    """Head count of the official pretraining decoder of this width."""
    return _heads(DECODER_HEADS_BY_WIDTH, hidden_dim, "decoder", "decoder_num_heads")


def _heads(table, hidden_dim, part, argument):
    if hidden_dim in table:
        return table[hidden_dim]
    if hidden_dim % 64 == 0:
        return hidden_dim // 64
    raise ValueError(f"Cannot tell the number of attention heads of a {hidden_dim}-wide "
                     f"{part}; pass {argument}=.")


# --- released checkpoints ------------------------------------------------------------------

def data_path(relative):
    """Path of a file shipped in `weights/` (installed as the package videomae_keras.weights)."""
    try:
        root = resources.files("videomae_keras.weights")
    except ModuleNotFoundError:  # running from a source tree that was never installed
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
    return os.fspath(os.path.join(str(root), relative))


@functools.lru_cache(maxsize=1)
def _registry():
    with open(data_path("registry.json"), encoding="utf-8") as f:
        return json.load(f)


def names():
    """Names of every released checkpoint."""
    return sorted(_registry()["checkpoints"])


def is_registered(name):
    return isinstance(name, str) and name in _registry()["checkpoints"]


def checkpoint(name):
    """What the registry says of a released checkpoint, with its `name` and its
    `architecture_name` ("B16FT"; the size alone, "H16", for an encoder-only file; None for
    a size not in SIZES); a KeyError naming close matches for an unknown name."""
    checkpoints = _registry()["checkpoints"]
    if name not in checkpoints:
        close = difflib.get_close_matches(name, checkpoints, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"{name!r} is not a registered checkpoint.{hint} `videomae-keras port --list` "
            "lists them; MODEL_ZOO.md describes them."
        )
    info = dict(checkpoints[name], name=name)
    size = next((key for key, s in SIZES.items() if s.title == info.get("architecture")), None)
    suffix = {v: k for k, v in TASKS.items()}.get(info.get("task"), "")
    info["architecture_name"] = size and size + suffix
    return info


@functools.lru_cache(maxsize=None)
def labels(label_map):
    """Class names of a shipped label map ('kinetics400', 'ssv2', 'ucf101'), index order."""
    files = _registry()["labels"]
    if label_map not in files:
        raise KeyError(f"No label map {label_map!r}; shipped: {', '.join(sorted(files))}.")
    with open(data_path(files[label_map]), encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f)


@functools.lru_cache(maxsize=None)
def label_index_map(name):
    """An index map between label spaces, e.g. 'kinetics710_to_kinetics400': element i is the
    row of the 710-way head that scores Kinetics-400 class i."""
    files = _registry()["label_index_maps"]
    if name not in files:
        raise KeyError(f"No label index map {name!r}; shipped: {', '.join(sorted(files))}.")
    with open(data_path(files[name]), encoding="utf-8") as f:
        return tuple(json.load(f))


def labels_for(num_classes):
    """The label map a head of this size most likely uses (400 Kinetics-400, 174 SSv2,
    101 UCF101), or None."""
    return {400: "kinetics400", 174: "ssv2", 101: "ucf101"}.get(int(num_classes))
