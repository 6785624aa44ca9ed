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
    with _weights_file(path) as weights, warnings.catch_warnings(), _trimming(model):
        # Keras notes that functional models' bookkeeping containers hold no weights
        warnings.filterwarnings("ignore", message="Skipping nested container")
        model.load_weights(weights)
    FreedMemory().trim()
    return model


@contextlib.contextmanager
def _trimming(model):
    """Keras' `load_weights` fills the model layer by layer; each assignment frees the
    placeholder it replaces, and glibc keeps such blocks in its heap. Handing them back as
    the load goes, as our own loaders do (FreedMemory), took the peak of a `.keras` load on
    jax from 2.0x the weights to 1.45x (ViT-B) and from 2.1x to 1.2x (ViT-L). Each layer's `load_own_variables` is wrapped
    for the time of the load (an instance attribute, removed afterwards)."""
    freed = FreedMemory()
    wrapped = []
    for layer in model._flatten_layers(include_self=True):
        own = getattr(layer, "_trainable_variables", []) + getattr(
            layer, "_non_trainable_variables", [])
        nbytes = sum(_nbytes(variable) for variable in own)
        if not nbytes or "load_own_variables" in vars(layer):
            continue

        def load(store, original=layer.load_own_variables, nbytes=nbytes):
            original(store)
            freed.count(nbytes)

        layer.load_own_variables = load
        wrapped.append(layer)
    try:
        yield
    finally:
        for layer in wrapped:
            del layer.load_own_variables


def _nbytes(variable):
    import numpy as np

    return int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize


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
