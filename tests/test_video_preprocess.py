"""Pre-processing: geometry, exact normalisation, agreement with transformers' processor, and
the Keras layer against the numpy path (on every backend, under jit where there is one)."""

import cv2
import numpy as np
import pytest

import keras

from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD
from videomae_keras.layers import VideoPreprocessing, with_preprocessing
from videomae_keras.video import crop_boxes, normalize, preprocess, resized_shape
from conftest import BACKEND

MEAN = np.asarray(IMAGENET_MEAN, np.float32)
STD = np.asarray(IMAGENET_STD, np.float32)
# Agreement with transformers' PIL processor (ImageNet mean/std) on 720p frames, in
# normalised units (one grey level is about 0.017). OpenCV bilinear (the official pipeline)
# does not antialias, PIL does: the averages agree, sharp edges differ.
HF_TOLERANCE = {
    "bilinear": {"mean": 0.02, "p99": 0.08},
    "area": {"mean": 0.01, "p99": 0.05, "max": 0.5},
}


def natural_frames(count, height, width, seed=0):
    """Smooth texture plus moving solid shapes: what real frames look like to a resizer."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.float32), (0, 0),
                            max(height / 120, 1.0))
    base = ((base - base.min()) / (base.max() - base.min()) * 255).astype(np.uint8)
    frames = []
    for t in range(count):
        frame = base.copy()
        cv2.circle(frame, (width // 6 + 9 * t, height // 2), height // 9, (250, 40, 10), -1)
        cv2.rectangle(frame, (width // 2, height // 7 + 4 * t), (width // 2 + width // 7,
                      height // 2 + 4 * t), (20, 200, 90), -1)
        frames.append(frame)
    return np.stack(frames)


def hf_pixels(frames):
    from transformers.models.videomae.image_processing_pil_videomae import (
        VideoMAEImageProcessorPil,
    )

    processor = VideoMAEImageProcessorPil(image_mean=list(IMAGENET_MEAN),
                                          image_std=list(IMAGENET_STD))
    out = processor(list(frames), return_tensors="np")["pixel_values"][0]
    return out.transpose(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)


def test_resized_shape_matches_the_official_formula():
    assert resized_shape(720, 1280, 224) == (224, int(224 * 1280 / 720))
    assert resized_shape(480, 640, 224) == (224, 298)
    assert resized_shape(640, 480, 224) == (298, 224)
    assert resized_shape(224, 224, 224) == (224, 224)
    assert resized_shape(240, 320, (160, 320)) == (240, 320)  # non-square: cover the box


def test_normalize_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    expected = (frames.astype(np.float32) / np.float32(255.0) - MEAN) / STD
    np.testing.assert_array_equal(normalize(frames), expected)
    with pytest.raises(TypeError, match="uint8"):
        normalize(frames.astype(np.float32))


def test_three_crops_along_the_long_side():
    frames = np.random.default_rng(1).integers(0, 256, (2, 224, 398, 3), dtype=np.uint8)
    crops = preprocess(frames, 224, num_crops=3)
    assert crops.shape == (3, 2, 224, 224, 3)
    for s, left in enumerate([0, 87, 174]):
        np.testing.assert_array_equal(crops[s], normalize(frames[:, :, left : left + 224]))
    tall = frames.transpose(0, 2, 1, 3)
    assert [b[0] for b in crop_boxes(398, 224, 224, 3)] == [0, 87, 174]
    np.testing.assert_array_equal(preprocess(tall, 224, 3)[2], normalize(tall[:, 174:398]))


@pytest.mark.backend_independent
def test_matches_hf_processor_exactly_without_resize():
    """Frames whose short side is 224 already: crop and normalisation only, which must be
    identical to transformers' processor."""
    frames = natural_frames(4, 224, 300)
    ours = preprocess(frames, 224)[0]
    np.testing.assert_allclose(ours, hf_pixels(frames), atol=1e-6, rtol=0)


@pytest.mark.backend_independent
@pytest.mark.parametrize("interpolation", ["bilinear", "area"])
def test_agrees_with_hf_processor_on_720p(interpolation):
    frames = natural_frames(4, 720, 1280)
    ours = preprocess(frames, 224, interpolation=interpolation)[0]
    reference = hf_pixels(frames)
    assert ours.shape == reference.shape == (4, 224, 224, 3)
    diff = np.abs(ours - reference)
    limits = HF_TOLERANCE[interpolation]
    assert diff.mean() < limits["mean"]
    assert np.percentile(diff, 99) < limits["p99"]
    if "max" in limits:
        assert diff.max() < limits["max"]


@pytest.mark.backend_independent
def test_grayscale_and_rgba_frames_are_accepted():
    frames = natural_frames(2, 240, 320)
    gray = frames.mean(-1).astype(np.uint8)
    out = preprocess(gray, 224)
    assert out.shape == (1, 2, 224, 224, 3)
    np.testing.assert_array_equal(preprocess(np.concatenate(
        [frames, np.zeros_like(frames[..., :1])], -1), 224), preprocess(frames, 224))


def test_layer_matches_numpy_path():
    frames = natural_frames(4, 120, 200)
    layer = VideoPreprocessing(64)
    ours = keras.ops.convert_to_numpy(layer(frames[None]))[0]
    reference = preprocess(frames, 64)[0]
    assert ours.shape == reference.shape
    # bilinear weights in float vs OpenCV's fixed point: at most one grey level apart
    assert np.abs(ours - reference).max() <= 1.01 / 255 / STD.min()
    config = layer.get_config()
    clone = VideoPreprocessing.from_config(config)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(frames[None]))[0], ours)


def test_layer_without_resize_is_exact():
    frames = natural_frames(2, 64, 80)
    ours = keras.ops.convert_to_numpy(VideoPreprocessing(64, resize=False)(frames[None]))[0]
    np.testing.assert_allclose(ours, preprocess(frames, 64)[0], atol=1e-6, rtol=0)


def test_uint8_model_gives_the_float_model_output():
    from videomae_keras import VideoMAEClassifier

    model = VideoMAEClassifier.from_arguments(num_classes=5, num_frames=4, image_size=32, patch_size=8,
                               hidden_dim=32, depth=1, num_heads=2, mlp_dim=40)
    frames = natural_frames(4, 32, 48)
    wrapped = with_preprocessing(model, (4, 32, 48), name="uint8_model")
    assert wrapped.inputs[0].dtype == "uint8"
    expected = keras.ops.convert_to_numpy(model(preprocess(frames, 32)))
    ours = keras.ops.convert_to_numpy(wrapped(frames[None]))
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    if BACKEND in ("jax", "tensorflow"):
        wrapped.compile(jit_compile=True)
        np.testing.assert_allclose(wrapped.predict(frames[None], verbose=0), expected, atol=1e-5)
