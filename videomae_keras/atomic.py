"""Writing outputs atomically: a temporary sibling first, renamed into place only when done.

A failed or interrupted write leaves no partial file behind, and nothing is replaced unless
the caller allows it.
"""

import contextlib
import os
import shutil
import tempfile


class OutputExistsError(FileExistsError):
    """The output is there already and overwriting was not allowed."""


def check_writable(path, overwrite):
    """Raises OutputExistsError when `path` exists and `overwrite` is False."""
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            f"{path} exists already; pass --overwrite (overwrite=True) to replace it."
        )


@contextlib.contextmanager
def atomic_output(path, overwrite=False, directory=False, suffix=""):
    """Yields a temporary path next to `path`; on success it becomes `path`.

    `directory=True` for outputs that are folders (SavedModel). `suffix` is kept at the end
    of the temporary name for writers that insist on an extension (".keras", ".weights.h5").
    """
    check_writable(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if directory:
        temp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        shutil.rmtree(temp)  # writers create the folder themselves
    else:
        handle, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + suffix, dir=parent)
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


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
