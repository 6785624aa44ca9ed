"""Video in: decoding, the official frame sampling and pre-processing."""

from videomae_keras.video.io import (
    BACKENDS,
    VideoError,
    VideoReader,
    available_backends,
    read_video,
    to_rgb,
    video_info,
)
from videomae_keras.video.preprocess import (
    crop_and_normalize,
    crop_boxes,
    normalize,
    preprocess,
    resize_short_side,
    resized_shape,
    unnormalize,
)
from videomae_keras.video.sampling import (
    DenseSampler,
    SegmentSampler,
    UniformSampler,
    get_sampler,
)

__all__ = [
    "BACKENDS",
    "DenseSampler",
    "SegmentSampler",
    "UniformSampler",
    "VideoError",
    "VideoReader",
    "available_backends",
    "crop_and_normalize",
    "crop_boxes",
    "get_sampler",
    "normalize",
    "preprocess",
    "read_video",
    "resize_short_side",
    "resized_shape",
    "to_rgb",
    "unnormalize",
    "video_info",
]
