"""Annotation lists in the official format: one `path label` per line, space-separated.

Relative paths are taken from `root` (default: the list's folder). The label is the last
field; VideoMAE V2 pretraining lists (`path 0 -1`) give the path and their first number. Blank lines
and lines starting with # are skipped.
"""

import os

from videomae_keras.atomic import atomic_output


def read_annotations(path, root=None):
    """[(video path, int label)] from an annotation file; a clear error names a bad line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such annotation file.")
    root = os.path.dirname(os.path.abspath(path)) if root is None else os.fspath(root)
    samples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) >= 3 and all(f.lstrip("-").isdigit() for f in fields[1:]):
                video, label = fields[0], fields[1]  # V2 pretraining lists: path 0 -1
            else:
                video, label = " ".join(fields[:-1]), fields[-1]
            if not video or not label.lstrip("-").isdigit():
                raise ValueError(
                    f"{path}:{number}: expected 'path label' (label an integer); got {text!r}."
                )
            samples.append((video if os.path.isabs(video) else os.path.join(root, video),
                            int(label)))
    if not samples:
        raise ValueError(f"{path}: the annotation file lists no videos.")
    return samples


def write_annotations(path, samples, root=None, overwrite=False):
    """Writes [(video path, label)] atomically, paths relative to `root` when given."""
    path = os.fspath(path)
    with atomic_output(path, overwrite=overwrite) as temp:
        with open(temp, "w", encoding="utf-8") as f:
            for video, label in samples:
                name = os.path.relpath(video, root) if root else video
                f.write(f"{name} {int(label)}\n")
    return path
