"""Training backups: atomic writes, the two newest kept, torn files (made by truncation)
skipped with one line saying what was done, a real SIGKILL in the middle of a write, and the
older layout of Keras' BackupAndRestore."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
from videomae_keras.training import backup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _train_with_backups(folder, epochs, initial_epoch=0, model=None):
    model = model or _model()
    x, y = _data()
    snapshots = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots[epoch + 1] = [keras.ops.convert_to_numpy(w) for w in model.weights]

    model.fit(x, y, epochs=epochs, initial_epoch=initial_epoch, batch_size=4, verbose=0,
              shuffle=False, callbacks=[backup.EpochBackup(folder), Snapshot()])
    return model, snapshots


def _tear(path):
    """A torn file: what a kill in the middle of writing it leaves."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def test_backups_are_whole_folders_and_the_two_newest_are_kept(tmp_path):
    folder = str(tmp_path / "backup")
    _train_with_backups(folder, 3)
    assert sorted(os.listdir(folder)) == ["epoch-0002", "epoch-0003"]  # no temporaries
    assert [e for e, _ in backup.backups(folder)] == [3, 2]
    for name in ("epoch-0002", "epoch-0003"):
        assert sorted(os.listdir(os.path.join(folder, name))) == [backup.RECORD, backup.STATE]


def test_a_torn_newest_backup_falls_back_to_the_previous_one(tmp_path):
    folder = str(tmp_path / "backup")
    _, snapshots = _train_with_backups(folder, 3)
    _tear(os.path.join(folder, "epoch-0003", backup.STATE))
    lines = []
    fresh = _model(seed=1)
    assert backup.restore(fresh, folder, 5, report=lines.append) == 2
    assert len(lines) == 2, lines
    assert "epoch-0003 cannot be read" in lines[0] and "sha256" in lines[0]
    assert "trying the previous one, backup/epoch-0002" in lines[0]
    assert lines[1] == "resuming from backup backup/epoch-0002: epoch 3 of 5"
    for restored, saved in zip(fresh.weights, snapshots[2]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), saved)
    assert [e for e, _ in backup.backups(folder)] == [2]  # the torn one is gone
    # and the run goes on from there, writing epoch 3 again
    _train_with_backups(folder, 4, initial_epoch=2, model=fresh)
    assert [e for e, _ in backup.backups(folder)] == [4, 3]


def test_without_a_readable_backup_training_restarts(tmp_path):
    folder = str(tmp_path / "backup")
    _train_with_backups(folder, 2)
    for name in ("epoch-0001", "epoch-0002"):
        _tear(os.path.join(folder, name, backup.STATE))
    lines = []
    fresh = _model(seed=1)
    before = [keras.ops.convert_to_numpy(w) for w in fresh.weights]
    assert backup.restore(fresh, folder, 2, report=lines.append) == 0
    assert len(lines) == 2 and "training starts again from epoch 1 of 2" in lines[1]
    for weight, value in zip(fresh.weights, before):  # nothing half-loaded
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)
    assert backup.backups(folder) == []


def test_the_older_keras_layout_is_still_read(tmp_path):
    """Runs interrupted under earlier releases left Keras' BackupAndRestore files."""
    folder = str(tmp_path / "backup")
    model = _model()
    x, y = _data()

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=4, batch_size=4, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(folder), Stop()])
    fresh = _model(seed=1)
    assert backup.restore(fresh, folder, 4) == 2
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    _tear(os.path.join(folder, "latest.weights.h5"))  # the torn file every rerun failed on
    lines = []
    assert backup.restore(_model(seed=1), folder, 4, report=lines.append) == 0
    assert len(lines) == 1 and "latest.weights.h5 is torn" in lines[0]


@pytest.mark.backend_independent
def test_a_kill_while_a_backup_is_written_leaves_the_previous_one(tmp_path):
    """A real SIGKILL in the middle of writing epoch 3's weights (half the file written)."""
    folder = str(tmp_path / "backup")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        import keras
        import test_training_backup as helpers
        saves = []
        original = keras.Model.save_weights

        def save_weights(self, path, *args, **kwargs):
            original(self, path, *args, **kwargs)
            saves.append(path)
            if len(saves) == 3:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        keras.Model.save_weights = save_weights
        helpers._train_with_backups({folder!r}, 5)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    hidden = [n for n in os.listdir(folder) if n.startswith(".")]
    assert sorted(set(os.listdir(folder)) - set(hidden)) == ["epoch-0001", "epoch-0002"]
    assert len(hidden) == 1 and hidden[0].startswith(".epoch-0003.")  # never renamed
    lines = []
    assert backup.restore(_model(seed=1), folder, 5, report=lines.append) == 2
    assert lines == []  # the complete backups were never touched
    assert sorted(os.listdir(folder)) == ["epoch-0001", "epoch-0002"]  # the torn one cleared
