"""Training data: annotation lists, frame-consistent augmentation, batched clip datasets,
and a synthetic moving-shapes data set."""

from videomae_keras.data.annotations import (
    AnnotationError,
    check_annotations,
    label_names,
    read_annotation_lines,
    read_annotations,
    write_annotations,
)
from videomae_keras.data.augment import random_resized_crop_box, train_clip_transform
from videomae_keras.data.dataset import VideoClipDataset
from videomae_keras.data.mixup import VideoMixup, mixed_targets, smoothed_one_hot
from videomae_keras.data.synthetic import MOTION_CLASSES, make_synthetic_dataset, render_clip

__all__ = [
    "AnnotationError",
    "MOTION_CLASSES",
    "VideoClipDataset",
    "VideoMixup",
    "check_annotations",
    "label_names",
    "make_synthetic_dataset",
    "mixed_targets",
    "random_resized_crop_box",
    "read_annotation_lines",
    "read_annotations",
    "render_clip",
    "smoothed_one_hot",
    "train_clip_transform",
    "write_annotations",
]
