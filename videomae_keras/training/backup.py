"""Training backups that survive a kill at any moment.

Each backup is a folder `backup/epoch-NNNN/` holding the model's weights with the optimizer
state (`state.weights.h5`, Keras `save_weights`) and `state.json` (the epoch it completes and
the weights file's sha256). It is written under a hidden temporary name, flushed to disk and
renamed into place, so a backup folder is complete or absent; the two newest are kept.
`restore` loads the newest one that reads back whole and says in one line what it skipped.

Keras' own `BackupAndRestore` rewrites `latest.weights.h5` in place: a kill while it writes
leaves a torn file that every rerun then fails on. Backups in that older layout (made by
earlier releases of this package) are still read, as the last resort.
"""

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings

import keras

from videomae_keras.atomic import file_sha256

STATE = "state.weights.h5"
RECORD = "state.json"
_NAME = re.compile(r"^epoch-(\d{4,})$")
_LEGACY = ("latest.weights.h5", "training_metadata.json")  # keras.callbacks.BackupAndRestore


class BackupError(RuntimeError):
    """A backup folder does not read back whole."""


def _fsync(path):
    """Flushes a file's or a folder's content to disk (folders: where supported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def backups(folder):
    """[(epoch, path)] of the complete backups in `folder`, newest first (the older layout
    of Keras' BackupAndRestore last)."""
    found = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = _NAME.match(name)
            if match and os.path.isdir(os.path.join(folder, name)):
                found.append((int(match.group(1)), os.path.join(folder, name)))
    found.sort(reverse=True)
    if all(os.path.exists(os.path.join(folder, name)) for name in _LEGACY):
        found.append((None, folder))
    return found


def save(model, folder, epoch, keep=2):
    """Writes the backup of `epoch` (epochs completed) atomically; keeps the newest `keep`."""
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, f"epoch-{epoch:04d}")
    temp = tempfile.mkdtemp(prefix=f".epoch-{epoch:04d}.", suffix=".tmp", dir=folder)
    try:
        weights = os.path.join(temp, STATE)
        with warnings.catch_warnings():  # functional models' bookkeeping containers
            warnings.filterwarnings("ignore", message="Skipping nested container")
            model.save_weights(weights)
        _fsync(weights)
        record = os.path.join(temp, RECORD)
        with open(record, "w", encoding="utf-8") as f:
            json.dump({"epoch": int(epoch), "weights_sha256": file_sha256(weights)}, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync(temp)
        if os.path.exists(final):  # the same epoch again (a resumed run): replace it
            old = final + ".old.tmp"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(temp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(temp, final)
        _fsync(folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    for _, path in backups(folder)[keep:]:
        if path != folder:
            shutil.rmtree(path, ignore_errors=True)
    return final


def remove_stale_temporaries(folder):
    """Deletes half-written backups (hidden `.epoch-*.tmp` folders) left by a killed run."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".epoch-") and name.endswith(".tmp"):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _check(path):
    """(epoch, weights file) of a backup folder after checking it reads back whole."""
    if os.path.exists(os.path.join(path, _LEGACY[0])):  # Keras' BackupAndRestore layout
        try:
            with open(os.path.join(path, _LEGACY[1]), encoding="utf-8") as f:
                epoch = int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BackupError(f"its {_LEGACY[1]} is unreadable ({e})") from None
        weights = os.path.join(path, _LEGACY[0])
        _read_every_dataset(weights)  # no digest to check: read it all before loading
        return epoch, weights
    try:
        with open(os.path.join(path, RECORD), encoding="utf-8") as f:
            record = json.load(f)
        epoch, expected = int(record["epoch"]), record["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackupError(f"its {RECORD} is unreadable ({e})") from None
    weights = os.path.join(path, STATE)
    if not os.path.isfile(weights):
        raise BackupError(f"{STATE} is missing")
    if file_sha256(weights) != expected:
        raise BackupError(f"{STATE} does not match its recorded sha256 (torn or changed)")
    return epoch, weights


def _read_every_dataset(path):
    """Raises BackupError unless every array of the HDF5 file at `path` reads back."""
    import h5py

    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(path, "r") as f:
            f.visititems(read)
    except Exception as e:
        raise BackupError(f"{os.path.basename(path)} is torn ({_first_line(e)})") from None


def restore(model, folder, total_epochs, report=None, write=True):
    """Loads the newest readable backup in `folder` into `model` (compiled: its optimizer
    state is restored too) and returns the number of epochs it completed, or 0 when there is
    none. Each unreadable backup is reported in one line saying what was done instead.
    `write=False` (the other processes of a multi-process run, which read the backups the
    writer made) leaves temporaries and unreadable backups for the writer to remove."""
    report = report or _stderr
    if write:
        remove_stale_temporaries(folder)
    candidates = backups(folder)
    if not candidates:
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to load
    skipped = []
    for index, (_, path) in enumerate(candidates):
        shown = _shown(path)
        try:
            epoch, weights = _check(path)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Skipping nested container")
                model.load_weights(weights)
        except Exception as e:  # a torn file, an unreadable record, a model that changed
            reason = e if isinstance(e, BackupError) else _first_line(e)
            following = candidates[index + 1:]
            action = (f"trying the previous one, {_shown(following[0][1])}" if following
                      else f"no readable backup is left: training starts again from epoch 1 "
                           f"of {total_epochs}")
            report(f"backup {shown} cannot be read ({reason}); {action}")
            skipped.append(path)
            continue
        if skipped:
            report(f"resuming from backup {shown}: epoch {epoch + 1} of {total_epochs}")
        if write:
            _discard(skipped, folder)
        return epoch
    if write:
        _discard(skipped, folder)
    return 0


def _discard(paths, folder):
    """Removes unreadable backups, so that pruning never keeps them over good ones."""
    for path in paths:
        if path != folder:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for name in _LEGACY:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def _shown(path):
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return os.path.join(parent, os.path.basename(os.path.abspath(path)))


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _stderr(message):
    print(f"videomae-keras: {message}", file=sys.stderr, flush=True)


class EpochBackup(keras.callbacks.Callback):
    """Saves `backup.save(model, folder, epoch)` after every epoch; nothing is deleted when
    training ends (the run removes its backups once the final model is safely written). In
    a multi-process run every process gathers the sharded state and process 0 writes it."""

    def __init__(self, folder, keep=2, writer=True):
        super().__init__()
        self.folder = folder
        self.keep = keep
        self.writer = writer  # in a multi-process run: process 0; the others help gather

    def on_epoch_end(self, epoch, logs=None):
        from videomae_keras.training.distribute import barrier, whole_values

        with whole_values(self.model):
            if self.writer:
                save(self.model, self.folder, epoch + 1, self.keep)
        barrier("videomae-keras: backup written")
