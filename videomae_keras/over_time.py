"""A model over the whole length of a video: one clip per sliding window of sampled frames,
with its start and end in seconds; embeddings (`features_over_time`) or classes
(`predict_over_time`, with a timeline picture).

The video is decoded as a stream, front to back: each frame is resized, cropped and
normalised as it arrives, and kept only while a window still needs it, so memory does not
grow with the video's length.
"""

import contextlib
import dataclasses
import os

import numpy as np

from videomae_keras.inference import (
    _softmax,
    _stages,
    feature_model,
    model_clip_shape,
    resolve_labels,
    run_batched,
)
from videomae_keras.video.io import VideoReader, to_rgb
from videomae_keras.video.preprocess import crop_and_normalize, resize_short_side


@dataclasses.dataclass
class WindowPlan:
    """Which frames each window takes.

    sampled: the source frame indices the video is sampled at (every `sampling_rate`-th).
    starts: each window's first position in `sampled`; a window is `window` sampled frames,
        the next starts `stride` later. frame_indices: (windows, clip frames) source frames
        the model sees per window (`window` sampled frames spread over the model's clip
        length when they differ).
    """

    sampled: np.ndarray
    starts: np.ndarray
    window: int
    stride: int
    frame_indices: np.ndarray
    fps: float
    num_frames: int
    sampling_rate: int

    def seconds(self):
        """(start, end) seconds per window: from its first sampled frame to the end of its
        last one's sampling interval (at most the video's end)."""
        if not self.fps:
            return None, None
        first = self.sampled[self.starts]
        last = self.sampled[np.minimum(self.starts + self.window - 1, len(self.sampled) - 1)]
        end = np.minimum(last + self.sampling_rate, self.num_frames)
        return first / self.fps, end / self.fps


def plan_windows(num_frames, fps, clip_frames, sampling_rate=4, window=None, stride=None,
                 window_seconds=None, stride_seconds=None):
    """The `WindowPlan` for a video of `num_frames` frames at `fps`.

    `window`, `stride`: in sampled frames (default: the model's clip length, and half of
    it); or `window_seconds`, `stride_seconds` in seconds of the video. A video shorter than
    one window gets one window, its last frame repeated (as the official loaders do).
    """
    for name, value in (("sampling_rate", sampling_rate), ("window", window),
                        ("stride", stride)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1; got {value!r}.")
    if window is not None and window_seconds is not None:
        raise ValueError("Give the window in sampled frames or in seconds, not both.")
    if stride is not None and stride_seconds is not None:
        raise ValueError("Give the stride in sampled frames or in seconds, not both.")
    if (window_seconds is not None or stride_seconds is not None) and not fps:
        raise ValueError("This video has no frame rate, so windows cannot be given in "
                         "seconds; give --window and --stride in sampled frames.")
    for name, value in (("window_seconds", window_seconds), ("stride_seconds", stride_seconds)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be above 0; got {value!r}.")
    per_second = (fps or 0.0) / sampling_rate  # sampled frames per second
    if window_seconds is not None:
        window = max(1, int(round(window_seconds * per_second)))
    if stride_seconds is not None:
        stride = max(1, int(round(stride_seconds * per_second)))
    window = int(window or clip_frames)
    stride = int(stride or max(1, window // 2))
    sampled = np.arange(0, num_frames, sampling_rate, dtype=np.int64)
    if len(sampled) >= window:
        starts = np.arange(0, len(sampled) - window + 1, stride, dtype=np.int64)
    else:
        starts = np.zeros(1, np.int64)
    positions = np.round(np.linspace(0, window - 1, clip_frames)).astype(np.int64)
    taken = np.minimum(starts[:, None] + positions[None, :], len(sampled) - 1)
    return WindowPlan(sampled, starts, window, stride, sampled[taken], float(fps or 0.0),
                      int(num_frames), int(sampling_rate))


def iter_window_batches(video, plan, image_size, batch_size=4, interpolation="bilinear",
                        backend="auto"):
    """Yields (window numbers, clips (b, T, H, W, 3) float32) in window order, `batch_size`
    windows at a time, decoding `video` (a file, an open VideoReader, or frames
    (T, H, W, C)) front to back."""
    needed = np.unique(plan.frame_indices)
    # the window that needs each frame last: a frame is dropped once that window is out
    last_use = {int(i): w for w, row in enumerate(plan.frame_indices) for i in row}
    ready, batch, numbers, next_window = {}, [], [], 0
    for index, frame in _frames(video, needed, backend):
        resized = resize_short_side(frame[None], image_size, interpolation)
        ready[index] = crop_and_normalize(resized, image_size, 1)[0, 0]
        while next_window < len(plan.frame_indices) and all(
                int(i) in ready for i in plan.frame_indices[next_window]):
            batch.append(np.stack([ready[int(i)] for i in plan.frame_indices[next_window]]))
            numbers.append(next_window)
            for i in list(ready):
                if last_use[i] <= next_window:
                    del ready[i]
            next_window += 1
            if len(batch) == batch_size:
                yield numbers, np.stack(batch)
                batch, numbers = [], []
    if batch:
        yield numbers, np.stack(batch)


# Streams are read with PyAV first where the decoder is "auto": it decodes front to back in
# one pass and holds nothing else (a 96 s video: under 1 MiB more than a 12 s one), where
# decord's batched reads kept 45-67 MiB of its own, varying from run to run.
STREAM_DECODER = "pyav"


def _frames(video, indices, backend):
    """(index, frame) for each of `indices`, in order, from a file, an open VideoReader or
    decoded frames."""
    if isinstance(video, VideoReader):
        yield from video.iter_frames(indices)
    elif isinstance(video, (str, os.PathLike)):
        with VideoReader(video, backend, prefer=STREAM_DECODER) as reader:
            yield from reader.iter_frames(indices)
    else:
        frames = to_rgb(video)
        for index in indices:
            yield int(index), frames[min(int(index), len(frames) - 1)]


@contextlib.contextmanager
def _opened(video, backend):
    """`video` opened once, for its length and then its frames: (a VideoReader or the
    decoded frames, frames, fps, source). A file is closed on leaving; a VideoReader the
    caller opened stays open."""
    if isinstance(video, VideoReader):
        yield video, len(video), video.fps, video.path
    elif isinstance(video, (str, os.PathLike)):
        with VideoReader(video, backend, prefer=STREAM_DECODER) as reader:
            yield reader, len(reader), reader.fps, os.fspath(video)
    else:
        yield video, len(video), 0.0, "<frames>"


def _run_windows(model, extractor, video, window, stride, window_seconds, stride_seconds,
                 sampling_rate, batch_size, interpolation, backend, progress, what):
    """(plan, source, outputs in window order) of `extractor` over every window of
    `video`."""
    frames, height, width = model_clip_shape(model)
    outputs, done = [], 0
    with _opened(video, backend) as (opened, length, fps, source):
        plan = plan_windows(length, fps, frames, sampling_rate, window, stride, window_seconds,
                            stride_seconds)
        bar = _stages(progress).bar(len(plan.starts), what, unit="window")
        # closed before the reader is, even on an error: no decoding generator outlives it
        batches = contextlib.closing(iter_window_batches(opened, plan, (height, width),
                                                         batch_size, interpolation, backend))
        try:
            with batches as windows:
                for numbers, clips in windows:
                    # run_batched pads a short last batch, so a jitted model compiles once
                    result = run_batched(extractor or model, clips, batch_size,
                                         keep_batch_size=True)
                    result = result if extractor is None else result["pooled"]
                    outputs.append(np.asarray(result, np.float32))
                    done += len(numbers)
                    bar.update(len(numbers))
        finally:
            bar.close()
    if done < len(plan.starts):  # the stream ended early (a header that over-counted)
        plan = dataclasses.replace(plan, starts=plan.starts[:done],
                                   frame_indices=plan.frame_indices[:done])
    return plan, source, np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


@dataclasses.dataclass
class FeaturesOverTime:
    """One embedding per window: embeddings (windows, D), start_seconds and end_seconds
    (windows,), frame_indices (windows, clip frames)."""

    embeddings: np.ndarray
    start_seconds: np.ndarray
    end_seconds: np.ndarray
    frame_indices: np.ndarray
    source: str
    fps: float
    window: int
    stride: int
    sampling_rate: int

    def to_dict(self, embeddings=True):
        windows = []
        for w in range(len(self.embeddings)):
            item = {"window": w, "start_seconds": _time(self.start_seconds, w),
                    "end_seconds": _time(self.end_seconds, w),
                    "first_frame": int(self.frame_indices[w, 0]),
                    "last_frame": int(self.frame_indices[w, -1])}
            if embeddings:
                item["embedding"] = [float(v) for v in self.embeddings[w]]
            windows.append(item)
        return {"video": self.source, "fps": self.fps, "window": self.window,
                "stride": self.stride, "sampling_rate": self.sampling_rate, "windows": windows}


def features_over_time(model, video, window=None, stride=None, window_seconds=None,
                       stride_seconds=None, sampling_rate=4, batch_size=4,
                       interpolation="bilinear", backend="auto", progress=False):
    """One pooled embedding per sliding window over the whole of `video` (a file, or frames
    (T, H, W, C)), centre crop; see `plan_windows` for the window and stride."""
    plan, source, embeddings = _run_windows(
        model, feature_model(model), video, window, stride, window_seconds, stride_seconds,
        sampling_rate, batch_size, interpolation, backend, progress, "windows")
    starts, ends = plan.seconds()
    return FeaturesOverTime(embeddings, _or_nan(starts, plan), _or_nan(ends, plan),
                            plan.frame_indices, source, plan.fps, plan.window, plan.stride,
                            plan.sampling_rate)


@dataclasses.dataclass
class PredictionOverTime:
    """Class probabilities per window: probabilities (windows, classes), the top classes of
    each window, start_seconds and end_seconds (windows,)."""

    probabilities: np.ndarray
    start_seconds: np.ndarray
    end_seconds: np.ndarray
    frame_indices: np.ndarray
    names: list
    top_k: int
    source: str
    fps: float

    def top(self, window):
        order = np.argsort(-self.probabilities[window], kind="stable")[: self.top_k]
        return [{"rank": r + 1, "index": int(i), "label": self.names[i] if self.names else None,
                 "probability": float(self.probabilities[window, i])}
                for r, i in enumerate(order)]

    def to_dict(self):
        return {"video": self.source, "fps": self.fps, "windows": [
            {"window": w, "start_seconds": _time(self.start_seconds, w),
             "end_seconds": _time(self.end_seconds, w), "top": self.top(w)}
            for w in range(len(self.probabilities))]}

    def __str__(self):
        lines = [f"{self.source}: {len(self.probabilities)} windows"]
        for w in range(len(self.probabilities)):
            best = self.top(w)[0]
            name = best["label"] if best["label"] is not None else f"class {best['index']}"
            when = (f"{self.start_seconds[w]:7.2f}-{self.end_seconds[w]:7.2f} s"
                    if np.isfinite(self.start_seconds[w]) else f"window {w}")
            lines.append(f"  {when}  {name} ({best['probability']:.1%})")
        return "\n".join(lines)

    def timeline(self, classes=5):
        """uint8 picture: one row per class (the `classes` with the highest peak
        probability), one column per window, darker where the class is more probable,
        class names to the left and seconds below."""
        from videomae_keras.pictures import timeline_picture

        peaks = self.probabilities.max(axis=0)
        chosen = np.argsort(-peaks, kind="stable")[:classes]
        names = [self.names[i] if self.names else f"class {i}" for i in chosen]
        return timeline_picture(self.probabilities[:, chosen].T, names,
                                self.start_seconds, self.end_seconds)

    def save_timeline(self, path, overwrite=False, classes=5):
        from videomae_keras.pictures import save_png

        return save_png(self.timeline(classes), path, overwrite)


def predict_over_time(model, video, window=None, stride=None, window_seconds=None,
                      stride_seconds=None, top_k=5, labels=None, sampling_rate=4,
                      batch_size=4, interpolation="bilinear", backend="auto", progress=False):
    """Classifies every sliding window of `video` (centre crop, the softmax per window);
    `labels` as for `predict_video`."""
    from videomae_keras.inference import _check_classifier

    num_classes = _check_classifier(model)
    own = getattr(model, "class_names", None)
    names = list(own) if labels is None and own else resolve_labels(labels, num_classes)
    plan, source, logits = _run_windows(
        model, None, video, window, stride, window_seconds, stride_seconds, sampling_rate,
        batch_size, interpolation, backend, progress, "classifying windows")
    starts, ends = plan.seconds()
    return PredictionOverTime(_softmax(logits), _or_nan(starts, plan), _or_nan(ends, plan),
                              plan.frame_indices, names, int(top_k), source, plan.fps)


def _or_nan(seconds, plan):
    return seconds if seconds is not None else np.full(len(plan.starts), np.nan)


def _time(values, index):
    value = float(values[index])
    return round(value, 4) if np.isfinite(value) else None
