"""Annotation lists in the official format: one `path label` per line, space-separated.

Relative paths are taken from `root` (default: the list's folder). The label is the last
field: a class index, or a class name (one word; or put a tab before a label with spaces:
`path<TAB>air drumming`). VideoMAE V2 pretraining lists (`path 0 -1`) give the path and their
first number. Blank lines and lines starting with # are skipped.

`check_annotations` checks a whole list before training starts: every video exists and opens,
every label is in range, and the list is not empty; the first problem is one error naming the
file and the line.
"""

import concurrent.futures
import dataclasses
import os

from videomae_keras import storage
from videomae_keras.atomic import atomic_output


class AnnotationError(ValueError):
    """A problem in an annotation list; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One line of an annotation list: its number, the video's path and the label text."""

    line: int
    video: str
    label: str

    @property
    def numeric(self):
        return self.label.lstrip("-").isdigit()


def read_annotation_lines(path, root=None):
    """[Annotation] of every entry in an annotation file, labels as written."""
    path = os.fspath(path)
    if not storage.isfile(path):
        raise FileNotFoundError(f"{path}: no such annotation file.")
    root = storage.dirname(path) if root is None else os.fspath(root)
    entries = []
    content = storage.read_text(path)  # a list may sit in a bucket (an fsspec URL)
    for number, line in enumerate(content.splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if "\t" in text:
            video, _, label = text.rpartition("\t")
        else:
            fields = text.split()
            if len(fields) >= 3 and all(f.lstrip("-").isdigit() for f in fields[1:]):
                video, label = fields[0], fields[1]  # V2 pretraining lists: path 0 -1
            else:
                video, label = " ".join(fields[:-1]), fields[-1]
        video, label = video.strip(), label.strip()
        if not video or not label:
            raise AnnotationError(f"{path}:{number}: expected 'path label'; got {text!r}.")
        video = storage.join(root, video)  # URLs and absolute paths stand
        entries.append(Annotation(number, video, label))
    if not entries:
        raise AnnotationError(f"{path}: the annotation file lists no videos.")
    return entries


def label_names(path, root=None):
    """The sorted class names of a list whose labels are names, or None if they are numbers."""
    entries = read_annotation_lines(path, root)
    if all(e.numeric for e in entries):
        return None
    return sorted({e.label for e in entries if not e.numeric})


def read_annotations(path, root=None, class_names=None):
    """[(video path, int label)] from an annotation file; a clear error names a bad line.

    Labels are class indices, or with `class_names` (a list) also names from that list.
    """
    index = {name: i for i, name in enumerate(class_names or ())}
    samples = []
    for entry in read_annotation_lines(path, root):
        if entry.numeric:
            label = int(entry.label)
        elif entry.label in index:
            label = index[entry.label]
        else:
            known = (f"it is not one of the {len(index)} class names" if index else
                     "a label must be a class index, or a class name with --labels "
                     "(class_names=)")
            raise AnnotationError(
                f"{path}:{entry.line}: expected 'path label' with a known label; got "
                f"{entry.label!r} ({known})."
            )
        samples.append((entry.video, label))
    return samples


def check_annotations(path, num_classes=None, class_names=None, open_videos=True, workers=4,
                      progress=None, root=None):
    """Reads an annotation list and checks it whole before a run starts; returns its samples.

    Every label must lie in 0..num_classes-1 (when given), every video must exist and, with
    `open_videos`, open with a decoder (its container read, no frame decoded). The first
    problem raises an AnnotationError naming the list, the line and the video; `progress`
    (a `Stages`) shows a bar over the videos.
    """
    samples = read_annotations(path, root, class_names)
    lines = [e.line for e in read_annotation_lines(path, root)]
    if num_classes is not None:
        for line, (_, label) in zip(lines, samples):
            if not 0 <= label < num_classes:
                raise AnnotationError(
                    f"{path}:{line}: label {label} lies outside 0..{num_classes - 1} "
                    f"({num_classes} classes)."
                )
    from videomae_keras.video.io import VideoError, probe_video

    def problem(item):
        line, (video, _) = item
        try:
            probe_video(video, open_video=open_videos)
        except VideoError as e:
            return line, str(e)
        return None

    bar = progress.bar(len(samples), f"checking {storage.basename(path)}", "video") if (
        progress is not None) else None
    pool = concurrent.futures.ThreadPoolExecutor(max(1, int(workers)))
    try:
        for result in pool.map(problem, zip(lines, samples)):  # in list order
            if bar is not None:
                bar.update(1)
            if result is not None:
                raise AnnotationError(f"{path}:{result[0]}: {result[1]}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
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
