"""The registry of released checkpoints (`weights/registry.json`) and the shipped label maps."""

import difflib
import functools
import json
import os
from importlib import resources


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
    """Names of every registered checkpoint."""
    return sorted(_registry()["checkpoints"])


def is_registered(name):
    return isinstance(name, str) and name in _registry()["checkpoints"]


def entry(name):
    """The registry entry of `name`; a KeyError naming close matches for an unknown name."""
    checkpoints = _registry()["checkpoints"]
    if name not in checkpoints:
        close = difflib.get_close_matches(name, checkpoints, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"{name!r} is not a registered checkpoint.{hint} `videomae-keras port --list` "
            "lists them; MODEL_ZOO.md describes them."
        )
    return dict(checkpoints[name], name=name)


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
