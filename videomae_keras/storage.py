"""Files by local path or by fsspec URL (`gs://`, `s3://`, `http(s)://`, `memory://`, ...), so
annotation lists and videos can stay in a bucket: they are read as streams with fsspec's
block cache, never copied whole to disk. Local paths keep the plain `os` calls.

The protocol's own package provides the filesystem (gcsfs for gs://, s3fs for s3://,
aiohttp for http://); a missing one is named in the error.
"""

import os
import posixpath


def is_url(path):
    """Whether `path` names a file through fsspec (a scheme other than file://)."""
    scheme, sep, _ = os.fspath(path).partition("://")
    return bool(sep) and scheme != "file" and scheme.replace("+", "").replace("-", "").isalnum()


def _filesystem(url):
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise ImportError(f"{url}: {str(e).strip().splitlines()[0]}") from None
    return fs, path


def info(path):
    """{"type": "file"|"directory", "size": bytes} of a path or URL; FileNotFoundError if
    there is nothing there."""
    if not is_url(path):
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        return {"type": "directory" if os.path.isdir(path) else "file",
                "size": os.path.getsize(path)}
    fs, inner = _filesystem(path)
    found = fs.info(inner)
    return {"type": found.get("type", "file"), "size": int(found.get("size") or 0)}


def exists(path):
    try:
        info(path)
    except FileNotFoundError:
        return False
    return True


def isfile(path):
    try:
        return info(path)["type"] == "file"
    except FileNotFoundError:
        return False


def open_binary(path):
    """A readable, seekable binary file object for a path or URL (close it)."""
    if not is_url(path):
        return open(path, "rb")  # noqa: SIM115 (the caller closes it)
    fs, inner = _filesystem(path)
    return fs.open(inner, "rb")


def read_text(path):
    with open_binary(path) as f:
        return f.read().decode("utf-8")


def dirname(path):
    """The folder of a path or URL (a URL keeps its scheme)."""
    if is_url(path):
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{posixpath.dirname(rest)}"
    return os.path.dirname(os.path.abspath(path))


def join(root, name):
    """`name` under `root`; URLs and absolute paths in `name` stand as they are."""
    if is_url(name) or os.path.isabs(name):
        return name
    if is_url(root):
        return root.rstrip("/") + "/" + name
    return os.path.join(root, name)


def basename(path):
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(path)
