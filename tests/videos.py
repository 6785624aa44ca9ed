"""Videos written by the tests: synthetic frames through OpenCV or PyAV in several codecs."""

import os

import cv2
import numpy as np

# (codec, extension, writer): OpenCV's FFmpeg writer, plus H.264 and VP8 through PyAV.
# VP8 is written in a fresh process: once decord is imported (it bundles its own FFmpeg),
# libvpx encoders fail to open in PyAV and OpenCV alike.
CODECS = [
    ("mp4v", ".mp4", "opencv"),
    ("MJPG", ".avi", "opencv"),
    ("XVID", ".avi", "opencv"),
    ("FFV1", ".mkv", "opencv"),
    ("libx264", ".mp4", "pyav"),
    ("libvpx", ".webm", "pyav-subprocess"),
]


def moving_frames(count, height=48, width=64, seed=0):
    """(count, H, W, 3) uint8 RGB: a smooth background, a square moving right and a frame-
    dependent brightness band, so every frame differs and survives lossy codecs."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(
        rng.integers(0, 256, (height, width, 3)).astype(np.float32), (0, 0), 3
    ).astype(np.uint8)
    frames = []
    for i in range(count):
        frame = background.copy()
        x = (4 + 3 * i) % max(width - 12, 1)
        frame[height // 3 : height // 3 + 12, x : x + 12] = (230, 40, 30)
        frame[: height // 6] = (i * 37) % 200 + 30
        frames.append(frame)
    return np.stack(frames)


def write_video(path, frames, codec="mp4v", fps=25.0, writer="opencv", pix_fmt=None):
    """Writes RGB uint8 frames (T, H, W, 3) (or gray (T, H, W) / RGBA with PyAV)."""
    path = os.fspath(path)
    frames = np.asarray(frames)
    if writer == "pyav-subprocess":
        return _write_in_subprocess(path, frames, codec, fps, pix_fmt)
    if writer == "opencv":
        height, width = frames.shape[1:3]
        out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, (width, height))
        assert out.isOpened(), f"OpenCV cannot write {codec}"
        for frame in frames:
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        out.release()
        return path
    import av
    from fractions import Fraction

    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:3]
        input_format = "gray" if frames.ndim == 3 else {3: "rgb24", 4: "rgba"}[frames.shape[-1]]
        stream.pix_fmt = pix_fmt or "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=input_format)
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncate(path, out_path, fraction=0.5):
    """A copy of `path` cut to `fraction` of its bytes."""
    with open(path, "rb") as f:
        data = f.read()
    with open(out_path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])
    return out_path


def _write_in_subprocess(path, frames, codec, fps, pix_fmt):
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        array = os.path.join(folder, "frames.npy")
        np.save(array, frames)
        code = (
            "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import videos; "
            "videos.write_video(sys.argv[2], np.load(sys.argv[3]), sys.argv[4], "
            "float(sys.argv[5]), 'pyav', sys.argv[6] or None)"
        )
        subprocess.run(
            [sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), path,
             array, codec, str(fps), pix_fmt or ""],
            check=True, capture_output=True,
        )
    return path
