"""Writing outputs atomically: nothing partial is ever left where the outputs go.

- `atomic_output(path)`: one file or folder, written under a hidden temporary name beside it
  and renamed into place when done.
- `OutputSet(folder, names)`: several outputs of one run (a port's `.keras`, `.weights.h5`,
  SavedModel and ONNX files) written into a hidden staging folder and moved into place
  together, only when all are complete; until then the old outputs (with `overwrite`) stay.

Temporary names carry the writer's process id. A writer killed outright (SIGKILL, a power
cut) leaves them behind; the next write to the same place removes those of dead processes,
and finishes a set whose commit had begun (every file in it was complete by then).
Nothing is replaced unless the caller allows it.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading


class OutputExistsError(FileExistsError):
    """The output is there already and overwriting was not allowed."""


def check_writable(path, overwrite):
    """Raises OutputExistsError when `path` exists and `overwrite` is False."""
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            f"{path} exists already; pass --overwrite (overwrite=True) to replace it."
        )


def file_sha256(path, chunk=1 << 20):
    """The sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _alive(pid):
    """Whether process `pid` runs (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(OSError):
            os.unlink(path)


def remove_stale_temporaries(path):
    """Deletes the temporaries that writers of `path` killed outright left beside it."""
    parent = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{os.path.basename(path)}.") + r"(\d+)-[^/]*\.tmp")
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            match = pattern.match(name)
            if match and not _alive(int(match.group(1))):
                _remove(os.path.join(parent, name))


@contextlib.contextmanager
def atomic_output(path, overwrite=False, directory=False, suffix=""):
    """Yields a temporary path next to `path`; on success it becomes `path`.

    `directory=True` for outputs that are folders (SavedModel). `suffix` is kept at the end
    of the temporary name for writers that insist on an extension (".keras", ".weights.h5").
    """
    check_writable(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(path)
    prefix = f".{os.path.basename(path)}.{os.getpid()}-"
    if directory:
        temp = tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent)
        shutil.rmtree(temp)  # writers create the folder themselves
    else:
        handle, temp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + suffix, dir=parent)
        os.close(handle)
        os.unlink(temp)
    try:
        yield temp
        if not os.path.lexists(temp):
            raise RuntimeError(f"Nothing was written for {path}.")
        _replace(temp, path, overwrite)
    except BaseException:
        _remove(temp)
        raise


def _replace(temp, path, overwrite):
    if not os.path.lexists(path):
        os.rename(temp, path)
        return
    check_writable(path, overwrite)
    if os.path.isdir(path) and not os.path.islink(path):
        old = path + ".old-" + os.path.basename(temp)
        os.rename(path, old)
        os.rename(temp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, path)


# --- several outputs that appear together ----------------------------------------------------

_JOURNAL = "commit.json"
_SET = re.compile(r"^\.(.+)\.(\d+)-[^/]*\.outputs\.tmp$")


@contextlib.contextmanager
def _signals_deferred():
    """Holds SIGINT and SIGTERM back while outputs are moved into place (a few renames):
    Ctrl-C or a `kill` then lands after the set is whole."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class OutputSet:
    """Outputs of one run, named `names` inside `folder`, that appear together or not at all.

    Write each into `path(name)` (in a hidden staging folder beside the outputs), then call
    `commit()`: it records the set as complete and moves every output into place, the old
    ones (with `overwrite`) only then. Leaving the `with` block without committing (an error,
    Ctrl-C, SIGTERM) removes the staging folder; nothing in `folder` changes. A SIGKILL leaves
    the staging folder, which the next OutputSet in that folder removes, or, if its commit had
    begun, completes.
    """

    def __init__(self, folder, names, overwrite=False, label=None):
        self.folder = os.path.abspath(folder)
        self.names = list(names)
        self.overwrite = overwrite
        self.label = label or (self.names[0] if self.names else "outputs")
        self.staging = None
        self.recovered = []

    def __enter__(self):
        for name in self.names:
            check_writable(os.path.join(self.folder, name), self.overwrite)
        os.makedirs(self.folder, exist_ok=True)
        self.recovered = recover(self.folder)
        self.staging = tempfile.mkdtemp(prefix=f".{self.label}.{os.getpid()}-",
                                        suffix=".outputs.tmp", dir=self.folder)
        return self

    def path(self, name):
        """Where to write output `name` until the commit."""
        return os.path.join(self.staging, name)

    def scratch(self):
        """A folder for intermediate files, removed with the staging folder."""
        path = os.path.join(self.staging, ".scratch")
        os.makedirs(path, exist_ok=True)
        return path

    def commit(self):
        """Moves the written outputs into place, together; returns {name: final path}."""
        shutil.rmtree(os.path.join(self.staging, ".scratch"), ignore_errors=True)
        written = [n for n in self.names if os.path.lexists(self.path(n))]
        journal = os.path.join(self.staging, _JOURNAL)
        with open(journal, "w", encoding="utf-8") as f:
            json.dump({"names": self.names, "written": written,
                       "overwrite": bool(self.overwrite)}, f)
            f.flush()
            os.fsync(f.fileno())
        with _signals_deferred():
            _move_in(self.staging, self.folder)
        self.staging = None
        return {n: os.path.join(self.folder, n) for n in written}

    def __exit__(self, kind, value, traceback):
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        return False


def _move_in(staging, folder):
    """Carries out a staging folder's journal: each written output into place (the one it
    replaces set aside first), outputs of the set not written this time removed when
    overwriting (an old ONNX `.data` file), then the staging folder itself removed."""
    with open(os.path.join(staging, _JOURNAL), encoding="utf-8") as f:
        journal = json.load(f)
    old = os.path.join(staging, ".replaced")
    os.makedirs(old, exist_ok=True)
    for name in journal["names"]:
        target, new = os.path.join(folder, name), os.path.join(staging, name)
        if os.path.lexists(new):
            if os.path.lexists(target):
                if not journal["overwrite"]:
                    continue  # appeared meanwhile, and not ours to replace
                os.replace(target, os.path.join(old, name))
            os.rename(new, target)
        elif name not in journal["written"] and journal["overwrite"] and os.path.lexists(target):
            os.replace(target, os.path.join(old, name))  # a leftover of an earlier set
    shutil.rmtree(staging, ignore_errors=True)


def recover(folder):
    """Cleans up after writers of output sets in `folder` that were killed outright: a set
    whose commit had begun is completed, any other is removed. Returns the names of the
    outputs completed this way."""
    done = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            match = _SET.match(name)
            if not match or _alive(int(match.group(2))):
                continue
            staging = os.path.join(folder, name)
            if os.path.exists(os.path.join(staging, _JOURNAL)):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    with open(os.path.join(staging, _JOURNAL), encoding="utf-8") as f:
                        done.extend(n for n in json.load(f)["written"]
                                    if os.path.lexists(os.path.join(staging, n)))
                    _move_in(staging, folder)
            shutil.rmtree(staging, ignore_errors=True)
    return done
