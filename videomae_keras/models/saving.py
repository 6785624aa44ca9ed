"""Whole models in and out of Keras' own files: a `.keras` file loaded in safe mode and a
model rebuilt with other constructor arguments, both without drawing the random weights
that loading replaces at once."""

import contextlib
import io
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
    mode and its weights read tensor by tensor by Keras' own reader, in place (or from a
    temporary copy where the member is compressed); anything else (a compiled model with its
    optimizer state, assets) goes through `load_model`.
    """
    import videomae_keras  # noqa: F401  (registers the layers for deserialisation)

    config = _plain_config(path)
    if config is None:
        return build_for_loading(keras.saving.load_model, path, safe_mode=True)
    model = build_for_loading(keras.saving.deserialize_keras_object, config, safe_mode=True)
    with warnings.catch_warnings(), _trimming(model):
        # Keras notes that functional models' bookkeeping containers hold no weights
        warnings.filterwarnings("ignore", message="Skipping nested container")
        if not _load_stored_member(model, path):
            with _weights_file(path) as weights:
                model.load_weights(weights)
    FreedMemory().trim()
    return model


def _load_stored_member(model, path):
    """Fills `model` from the weights member of a `.keras` file read in place, when Keras
    stored it uncompressed (as it does): Keras' own reader (`H5IOStore`, `_load_state`)
    over a window of the archive, so nothing is extracted (for ViT-L that copy took 1 s of
    the 3.7 s load and needed the weights' size free on disk). False, having touched
    nothing, where the member is compressed or this Keras lacks the reader; then the
    caller extracts it."""
    try:
        from keras.src.saving import saving_lib

        store_type, load_state = saving_lib.H5IOStore, saving_lib._load_state
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("model.weights.h5")
        if info.compress_type != zipfile.ZIP_STORED:
            return False
        store = store_type("model.weights.h5", archive=_StoredArchive(path, info), mode="r")
    except (ImportError, AttributeError, TypeError, KeyError, OSError, zipfile.BadZipFile):
        return False
    failed, errors = set(), {}
    try:
        load_state(model, weights_store=store, assets_store=None, inner_path="",
                   visited_saveables=set(), failed_saveables=failed, error_msgs=errors)
    finally:
        store.close()
    if failed:
        saving_lib._raise_loading_failure(errors)
    return True


class _StoredArchive:
    """What Keras' `H5IOStore` asks of a zip archive when it reads: `open(name)`, here a
    window onto an uncompressed member. (zipfile's own member file seeks backwards by
    reading from the member's start again, which made h5py ten times slower.)"""

    def __init__(self, path, info):
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)  # the local file header; its name and extra field follow
        if header[:4] != b"PK\x03\x04":
            raise OSError(f"{path}: no local file header for {info.filename}")
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
        self.path, self.size = path, info.file_size
        self.offset = info.header_offset + 30 + name_length + extra_length

    def open(self, name, mode="r"):
        return _Window(self.path, self.offset, self.size)

    def close(self):
        pass


class _Window(io.RawIOBase):
    """Bytes `offset` to `offset + size` of a file as a read-only, seekable file."""

    def __init__(self, path, offset, size):
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset, self._size, self._position = offset, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, position, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + position)
        return self._position

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        wanted = max(0, min(len(view), self._size - self._position))
        done = 0
        while done < wanted:
            got = os.preadv(self._fd, [view[done:wanted]], self._offset + self._position + done)
            if got == 0:
                break
            done += got
        self._position += done
        return done

    def close(self):
        if not self.closed:
            os.close(self._fd)
        super().close()


@contextlib.contextmanager
def _trimming(model):
    """Keras' `load_weights` fills the model layer by layer; each assignment frees the
    placeholder it replaces, and glibc keeps such blocks in its heap. Handing them back as
    the load goes, as our own loaders do (FreedMemory), took the peak of a `.keras` load on
    jax from 2.0x the weights to 1.45x (ViT-B) and from 2.1x to 1.2x (ViT-L). Each layer's
    `load_own_variables` is wrapped for the time of the load (an instance attribute, removed
    afterwards)."""
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
    """A compressed weights member of a `.keras` file as a file h5py reads fast: extracted into a
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
