"""Reading videos: frame count, fps and RGB uint8 frames, through decord, PyAV or OpenCV.

OpenCV is always there; decord (what the official loaders use) and PyAV are used when
installed. Only the frames asked for are converted to RGB, and long gaps between them are
skipped by seeking where the backend can seek exactly. Every failure is a `VideoError` that
names the file.
"""

import os

import numpy as np

from videomae_keras import storage

BACKENDS = ("decord", "pyav", "opencv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# Gaps longer than this are skipped by seeking instead of decoding through them (OpenCV).
SEEK_GAP = 128


class VideoError(ValueError):
    """A video could not be read; the message names the file and what went wrong."""


class _StreamEnded(Exception):
    """The stream held fewer frames than its header said (internal)."""

    def __init__(self, decoded):
        super().__init__(decoded)
        self.decoded = decoded


def available_backends():
    """The decoding backends importable here, in the order "auto" tries them."""
    found = []
    for name, module in (("decord", "decord"), ("pyav", "av"), ("opencv", "cv2")):
        try:
            __import__(module)
        except ImportError:
            continue
        found.append(name)
    return found


def quiet_decoders():
    """Turns off the decoders' own logging, so that a video that cannot be read is reported
    once, by the `VideoError` naming it (not also by FFmpeg's "moov atom not found" from
    decord and OpenCV, and OpenCV's capture warnings).

    It changes process-wide settings of decord, PyAV and OpenCV (FFmpeg's log level takes
    effect only before OpenCV's first capture), so the library never calls it on its own: the
    command line does, at start.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):
        pass
    try:
        import decord

        decord.logging.set_level(decord.logging.QUIET)
    except (ImportError, AttributeError):
        pass
    try:
        import av.logging

        av.logging.set_level(None)
    except (ImportError, AttributeError):
        pass


def to_rgb(frames):
    """Any frames (T, H, W), (T, H, W, 1|3|4), uint8/uint16/float -> (T, H, W, 3) uint8 RGB.

    Grayscale is repeated over the three channels and an alpha channel is dropped. Float
    input is taken as [0, 1]; uint16 is scaled down to 8 bits.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Frames must be (T, H, W) or (T, H, W, C) with C in 1, 3, 4; got shape "
            f"{frames.shape}."
        )
    if frames.dtype == np.uint16:
        frames = (frames >> 8).astype(np.uint8)
    elif np.issubdtype(frames.dtype, np.floating):
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    elif frames.shape[-1] == 4:
        frames = frames[..., :3]
    return np.ascontiguousarray(frames)


class VideoReader:
    """An open video: `len(reader)`, `fps`, `height`, `width`, and `read(indices)`.

    `backend` is "auto" (decord, then PyAV, then OpenCV: the first that opens the file),
    or one of those names; `prefer` puts one backend first for "auto" (streams prefer PyAV,
    which decodes front to back in one pass). `path` may be an fsspec URL (gs://, s3://, http://,
    memory://...): PyAV then reads it as a stream, fetching only the bytes it decodes. Frame indices count decoded frames in presentation order, as
    decord and the official loaders do. Use as a context manager, or call `close()`.
    """

    def __init__(self, path, backend="auto", prefer=None):
        self.path = os.fspath(path)
        _check_file(self.path)
        names = available_backends() if backend == "auto" else [backend]
        if backend == "auto" and prefer in names:  # tried first, the others still behind it
            names = [prefer] + [n for n in names if n != prefer]
        if storage.is_url(self.path):
            names = _url_backends(self.path, backend)
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"Unknown video backend {backend!r}; choose auto or one of {BACKENDS}.")
        if backend != "auto" and backend not in available_backends():
            raise ImportError(
                f"The {backend} video backend is not installed "
                f"(pip install {'av' if backend == 'pyav' else backend})."
            )
        self._auto = backend == "auto"
        errors = []
        if self._auto and "decord" in names and "pyav" in names:
            # decord logs its own error line from C++ for a file FFmpeg cannot open: a quiet
            # PyAV look at the container first (both demux with FFmpeg) spares that
            problem = _pyav_open_error(self.path)
            if problem is not None:
                names = [n for n in names if n != "decord"]
                errors.append(problem)
        self._remaining = list(names)
        if not self._open_next(errors):
            detail = errors[0] if errors else "no backend"
            raise VideoError(f"{self.path}: cannot read this video ({detail}).")

    def _open_next(self, errors=None):
        """Opens the file with the next backend that can (and finds frames); True on success.
        Reasons for failures are appended to `errors`."""
        while self._remaining:
            name = self._remaining.pop(0)
            try:
                impl = _IMPLEMENTATIONS[name](self.path)
            except VideoError as e:
                if errors is not None:
                    errors.append(str(e))
                continue
            if impl.num_frames <= 0:
                impl.close()
                if errors is not None:
                    errors.append("the video has no frames")
                continue
            if getattr(self, "_impl", None) is not None:
                self._impl.close()
            self._impl, self.backend = impl, name
            return True
        return False

    def __len__(self):
        return self._impl.num_frames

    @property
    def num_frames(self):
        return self._impl.num_frames

    @property
    def fps(self):
        return self._impl.fps

    @property
    def height(self):
        return self._impl.height

    @property
    def width(self):
        return self._impl.width

    @property
    def duration(self):
        """Seconds, from the frame count and fps (None without an fps)."""
        return self.num_frames / self.fps if self.fps else None

    def read(self, indices):
        """Frames at `indices` (any order, repeats allowed) -> (len, H, W, 3) uint8 RGB.

        If the stream ends before a requested frame (a header that over-counts), the true
        frame count is recorded in `len(self)` and an IndexError says so; `read_clip` and the
        samplers re-plan on that.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        if indices.min() < 0 or indices.max() >= self.num_frames:
            raise IndexError(
                f"{self.path}: frame indices must lie in [0, {self.num_frames}); got "
                f"{indices.min()}..{indices.max()}."
            )
        unique, inverse = np.unique(indices, return_inverse=True)
        while True:
            try:
                frames = self._impl.read(unique)
                break
            except _StreamEnded as e:
                self._impl.num_frames = e.decoded
                if e.decoded <= 0:
                    raise VideoError(f"{self.path}: no frame could be decoded.") from None
                raise IndexError(
                    f"{self.path}: the stream ends after {e.decoded} frames (its header said "
                    f"more)."
                ) from None
            except VideoError:
                raise
            except Exception as e:  # a decoder error: try the next backend, else name the file
                if not (self._auto and self._open_next()):
                    raise VideoError(f"{self.path}: decoding failed ({_clean(e)}).") from e
                if indices.max() >= self.num_frames:
                    raise IndexError(
                        f"{self.path}: {self.backend} counts {self.num_frames} frames."
                    ) from None
        return to_rgb(frames)[inverse]

    def iter_frames(self, indices, chunk=16):
        """Yields (index, frame) for ascending `indices`, decoding front to back and holding
        at most `chunk` frames: memory does not grow with the video's length. A stream that
        ends before a requested index (a header that over-counts) just stops there."""
        indices = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if indices.size and indices[0] < 0:
            raise IndexError(f"{self.path}: frame indices must not be negative.")
        stream = getattr(self._impl, "iter_frames", None)
        if stream is not None:
            try:
                for index, frame in stream(indices[indices < self.num_frames]):
                    yield index, to_rgb(frame[None])[0]
            except _StreamEnded as e:
                self._impl.num_frames = e.decoded
            return
        for start in range(0, indices.size, chunk):
            part = indices[start:start + chunk]
            part = part[part < self.num_frames]
            if part.size == 0:
                return
            try:
                frames = self.read(part)
            except IndexError:  # the true length was found: what is left of it
                part = part[part < self.num_frames]
                if part.size == 0:
                    return
                frames = self.read(part)
            yield from zip(part.tolist(), frames)

    def read_all(self):
        """Every frame that decodes, (len, H, W, 3) uint8 RGB."""
        return self.read_clip(np.arange(self.num_frames), replan=np.arange)

    def read_clip(self, indices, replan=None):
        """Like `read`, but a header that over-counts is survived: with `replan` (a function
        of the true frame count returning new indices) the indices are planned again,
        without it indices past the end repeat the last frame."""
        for _ in range(3):
            try:
                return self.read(indices)
            except IndexError:
                if self._impl.num_frames <= 0:
                    raise
                if replan is not None:
                    indices = replan(self.num_frames)
                else:
                    indices = np.minimum(np.asarray(indices), self.num_frames - 1)
        return self.read(indices)

    def close(self):
        self._impl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return (
            f"VideoReader({self.path!r}, backend={self.backend!r}, frames={self.num_frames}, "
            f"fps={self.fps:.2f}, size={self.width}x{self.height})"
        )


def probe_video(path, open_video=True):
    """Checks that `path` is a video file that opens, without decoding a frame (PyAV reads
    the container when installed, else the decoders open it); raises a VideoError naming the
    file. `open_video=False` checks only that it exists, is readable and is not empty."""
    path = os.fspath(path)
    _check_file(path)
    if not open_video:
        return
    if "pyav" in available_backends():
        problem = _pyav_open_error(path)
        if problem is not None:
            raise VideoError(f"{path}: cannot read this video ({problem}).")
        return
    VideoReader(path).close()


def _url_backends(url, backend):
    """The decoders that read from a file object: PyAV only."""
    if backend not in ("auto", "pyav"):
        raise ValueError(f"{url}: the {backend} backend reads local files only; use "
                         "backend='pyav' (or 'auto') for URLs.")
    if "pyav" not in available_backends():
        raise ImportError(f"{url}: reading videos from URLs needs PyAV (pip install av).")
    return ["pyav"]


def _av_open(path):
    """av.open on a local path, or on a streaming file object for a URL (closed with the
    container)."""
    import av

    if not storage.is_url(path):
        return av.open(path)
    source = storage.open_binary(path)
    try:
        container = av.open(source)
    except BaseException:
        source.close()
        raise
    close = container.close

    def close_both():
        close()
        source.close()

    return _Closing(container, close_both)


class _Closing:
    """A PyAV container whose close (and `with` exit) also closes its file object."""

    def __init__(self, container, close):
        self._container, self.close = container, close

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _pyav_open_error(path):
    """Why FFmpeg (through PyAV) cannot open the container at `path`, or None if it can."""
    try:
        with _av_open(path) as container:
            if not container.streams.video:
                return "the file has no video stream"
    except Exception as e:
        return _clean(e)
    return None


def video_info(path, backend="auto"):
    """{"frames", "fps", "height", "width", "duration", "backend"} of a video file."""
    with VideoReader(path, backend) as reader:
        return {
            "frames": reader.num_frames,
            "fps": reader.fps,
            "height": reader.height,
            "width": reader.width,
            "duration": reader.duration,
            "backend": reader.backend,
        }


def read_video(path, indices=None, backend="auto"):
    """Frames of a video file as (T, H, W, 3) uint8 RGB: all of them, or those at `indices`."""
    with VideoReader(path, backend) as reader:
        if indices is None:
            return reader.read_all()
        return reader.read_clip(indices)


def _clean(error):
    """A decoder's message without log prefixes, short enough for one line."""
    import re

    text = re.sub(r"\[[0-9:]+\] [^ ]+:[0-9]+: ", "", str(error)).strip() or type(error).__name__
    text = re.sub(r"^\[Errno -?\d+\] ", "", text.splitlines()[0])  # PyAV's FFmpeg errors
    text = re.sub(r": '[^']*'$", "", text)  # ... and the path they repeat
    return text if len(text) <= 160 else text[:157] + "..."


def _check_file(path):
    if storage.is_url(path):
        try:
            found = storage.info(path)
        except FileNotFoundError:
            raise VideoError(f"{path}: no such file.") from None
        except (OSError, ValueError) as e:
            raise VideoError(f"{path}: cannot be reached ({_clean(e)}).") from None
        if found["type"] == "directory":
            raise VideoError(f"{path}: is a folder, not a video file.")
        if found["size"] == 0:
            raise VideoError(f"{path}: the file is empty.")
    elif not os.path.exists(path):
        raise VideoError(f"{path}: no such file.")
    elif os.path.isdir(path):
        raise VideoError(f"{path}: is a folder, not a video file.")
    elif not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied.")
    elif os.path.getsize(path) == 0:
        raise VideoError(f"{path}: the file is empty.")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        raise VideoError(f"{path}: is an image, not a video; give a video file.")


class _Decord:
    def __init__(self, path):
        import decord

        try:
            self.reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
            first = self.reader[0].shape if len(self.reader) else None
        except Exception as e:
            raise VideoError(_clean(e))
        self.num_frames = len(self.reader)
        self.fps = float(self.reader.get_avg_fps() or 0.0)
        self.height, self.width = (first[0], first[1]) if first else (0, 0)

    def read(self, indices):
        return self.reader.get_batch(indices.tolist()).asnumpy()

    def close(self):
        self.reader = None


class _PyAV:
    def __init__(self, path):
        try:
            self.container = _av_open(path)
        except Exception as e:
            raise VideoError(_clean(e))
        if not self.container.streams.video:
            self.container.close()
            raise VideoError("the file has no video stream")
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        self.path = path
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.height, self.width = stream.codec_context.height, stream.codec_context.width
        self.num_frames = int(stream.frames or 0)
        if self.num_frames <= 0:
            self.num_frames = self._count_packets()

    def _count_packets(self):
        """Frames by demuxing (no decoding) when the header has no count (webm, mkv)."""
        count = 0
        try:
            with _av_open(self.path) as container:
                for packet in container.demux(container.streams.video[0]):
                    if packet.size:
                        count += 1
        except Exception as e:
            raise VideoError(str(e))
        return count

    def read(self, indices):
        frames = dict(self.iter_frames(indices))
        return np.stack([frames[int(i)] for i in indices])

    def iter_frames(self, indices):
        """One pass from the start, yielding the wanted frames as they are decoded."""
        import av

        wanted = set(int(i) for i in indices)
        last = int(indices[-1]) if len(indices) else -1
        self.container.seek(0)
        index = -1
        try:
            for index, frame in enumerate(self.container.decode(self.container.streams.video[0])):
                if index in wanted:
                    yield index, frame.to_ndarray(format="rgb24")
                if index >= last:
                    return
        except av.error.InvalidDataError:
            if index < 0:
                raise
        if index < last:
            raise _StreamEnded(index + 1)

    def close(self):
        self.container.close()


class _OpenCV:
    def __init__(self, path):
        import cv2

        self.cv2 = cv2
        self.path = path
        self.capture = self._open()
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.position = 0
        if count <= 0:
            count = self._count_by_grabbing()
        self.num_frames = count

    def _open(self):
        capture = self.cv2.VideoCapture(self.path, self.cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise VideoError("OpenCV cannot open it: not a video, or a codec FFmpeg lacks")
        return capture

    def _count_by_grabbing(self):
        count = 0
        while self.capture.grab():
            count += 1
        self._rewind()
        return count

    def _rewind(self):
        self.capture.release()
        self.capture = self._open()
        self.position = 0

    def _seek(self, target):
        """Seeks to `target`; False when the backend could not land exactly on it."""
        self.capture.set(self.cv2.CAP_PROP_POS_FRAMES, target)
        if int(self.capture.get(self.cv2.CAP_PROP_POS_FRAMES)) == target:
            self.position = target
            return True
        self._rewind()
        return False

    def read(self, indices):
        out = []
        for target in indices:
            target = int(target)
            if target < self.position:
                self._rewind()
            if target - self.position > SEEK_GAP:
                self._seek(target)
            while self.position < target:
                if not self.capture.grab():
                    raise _StreamEnded(self.position)
                self.position += 1
            ok, frame = self.capture.read()
            if not ok or frame is None:
                raise _StreamEnded(self.position)
            self.position += 1
            out.append(self._rgb(frame))
        return np.stack(out)

    def _rgb(self, frame):
        if frame.ndim == 2:
            return self.cv2.cvtColor(frame, self.cv2.COLOR_GRAY2RGB)
        if frame.shape[-1] == 4:
            return self.cv2.cvtColor(frame, self.cv2.COLOR_BGRA2RGB)
        return self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2RGB)

    def close(self):
        self.capture.release()


_IMPLEMENTATIONS = {"decord": _Decord, "pyav": _PyAV, "opencv": _OpenCV}
