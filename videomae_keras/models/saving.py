"""Whole models in and out of Keras' own files: a `.keras` file loaded in safe mode and a
model rebuilt with other constructor arguments, both without drawing the random weights
that loading replaces at once."""

import contextlib
import json
import os
import tempfile
import warnings
import zipfile

import keras

from videomae_keras.initializers import build_for_loading
from videomae_keras.memory import FreedMemory


# what a .keras file of an uncompiled model without assets holds
PLAIN_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}


def load_keras_model(path):
    """A `.keras` file in Keras' safe mode (no code runs), without drawing random weights that
    the file then replaces.

    `keras.saving.load_model` reads the whole weights member into memory before assigning
    it (twice the weights at the peak). A file of an uncompiled model without assets (what
    `port`, the cache and inference models write) is instead built from its config in safe
    mode and its weights member extracted to a temporary file that Keras' own `load_weights`
    reads tensor by tensor; anything else (a compiled model with its optimizer state, assets) goes
    through `load_model`.
    """
    import videomae_keras  # noqa: F401  (registers the layers for deserialisation)

    config = _plain_config(path)
    if config is None:
        return build_for_loading(keras.saving.load_model, path, safe_mode=True)
    model = build_for_loading(keras.saving.deserialize_keras_object, config, safe_mode=True)
    with _weights_file(path) as weights, warnings.catch_warnings():
        # Keras notes that functional models' bookkeeping containers hold no weights
        warnings.filterwarnings("ignore", message="Skipping nested container")
        model.load_weights(weights)
    FreedMemory().trim()
    return model


@contextlib.contextmanager
def _weights_file(path):
    """The weights member of a `.keras` file as a file h5py reads fast: extracted into a
    temporary folder beside the file (or the system's), removed afterwards. Read from inside
    the archive instead it takes ten times as long; where nothing can be written, it is."""
    for folder in (os.path.dirname(os.path.abspath(path)), None):
        try:
            scratch = tempfile.TemporaryDirectory(dir=folder, prefix=".videomae-keras-load-")
        except OSError:
            continue
        with scratch, zipfile.ZipFile(path) as archive:
            try:
                archive.extract("model.weights.h5", scratch.name)
            except OSError:  # e.g. the disk is full
                continue
            yield os.path.join(scratch.name, "model.weights.h5")
            return
    yield path


def _plain_config(path):
    """The model config of a `.keras` file holding just an uncompiled model, else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            if set(archive.namelist()) != PLAIN_MEMBERS:
                return None
            if archive.getinfo("config.json").file_size > 2**24:
                return None  # not a config: let Keras' own checks refuse it
            config = json.loads(archive.read("config.json"))
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # Keras' loader gives its own error
    if not isinstance(config, dict) or config.get("compile_config"):
        return None
    return config


def rebuild(model, **overrides):
    """A copy of a VideoMAE model with some constructor arguments changed (clip size, mask
    ratio, drop path, class names, ...) and the same weights."""
    arguments = {**model.arguments(), **overrides}
    copy = build_for_loading(type(model).from_arguments, **arguments)
    copy.set_weights(model.get_weights())
    return copy
