"""Multi-view inference: the views follow the official test protocol (checked against an
independent transcription), probabilities are the view-averaged softmax, labels and
features come out right."""

import cv2
import numpy as np
import pytest

import keras

from videomae_keras import VideoMAEBackbone, VideoMAEClassifier, VideoMAEPretrainer
from videomae_keras import extract_features, predict_video, presets
from videomae_keras.inference import load_views, parse_views
from videos import moving_frames, write_video

SMALL = dict(num_frames=4, image_size=32, patch_size=8, hidden_dim=32, depth=2, num_heads=2,
             mlp_dim=48)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def lossless_video(tmp_path_factory):
    """FFV1 is lossless: decoded frames equal the written ones, so views can be checked
    exactly against a computation from the written frames."""
    frames = moving_frames(45, 48, 80)
    path = write_video(tmp_path_factory.mktemp("inference") / "clip.mkv", frames, "FFV1")
    return path, frames


def official_views(frames, clips, crops, clip_len, rate, size):
    """The official dense test (section 6.2), transcribed: stride-`rate` frames padded to
    clip_len, short side resized with cv2 bilinear, clip k at int(k*(L-clip_len)/(N-1)),
    crop s at int(s*(long-size)/(M-1)), then /255 and mean/std."""
    all_index = list(range(0, len(frames), rate))
    while len(all_index) < clip_len:
        all_index.append(all_index[-1])
    buffer = frames[all_index]
    height, width = buffer.shape[1:3]
    if width < height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    buffer = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
                       for f in buffer])
    views = []
    temporal_step = max(1.0 * (buffer.shape[0] - clip_len) / (clips - 1), 0)
    spatial_step = 1.0 * (max(buffer.shape[1], buffer.shape[2]) - size) / (crops - 1)
    for k in range(clips):
        for s in range(crops):
            t0, s0 = int(k * temporal_step), int(s * spatial_step)
            if buffer.shape[1] >= buffer.shape[2]:
                view = buffer[t0 : t0 + clip_len, s0 : s0 + size, :, :]
            else:
                view = buffer[t0 : t0 + clip_len, :, s0 : s0 + size, :]
            views.append((view.astype(np.float32) / 255.0 - MEAN) / STD)
    return np.stack(views)


def test_views_follow_the_official_dense_test(lossless_video):
    path, frames = lossless_video
    views = load_views(path, num_frames=4, image_size=32, views=(5, 3), sampling="dense",
                       sampling_rate=4)
    assert views.data.shape == (15, 4, 32, 32, 3) and views.views == (5, 3)
    np.testing.assert_allclose(views.data, official_views(frames, 5, 3, 4, 4, 32), atol=1e-6)
    # from decoded frames instead of a file: the same views
    again = load_views(frames, num_frames=4, image_size=32, views="5x3")
    np.testing.assert_array_equal(again.data, views.data)


def test_short_video_repeats_its_last_frame(tmp_path):
    """The official test pads the strided list with its last entry (frame 4 of 6 here)."""
    path = write_video(tmp_path / "short.mkv", moving_frames(6, 32, 32), "FFV1")
    views = load_views(path, num_frames=16, image_size=32, views=(2, 1))
    np.testing.assert_array_equal(views.frame_indices[0], [0, 4] + [4] * 14)
    np.testing.assert_array_equal(views.data[0, 2:], np.repeat(views.data[0, 1:2], 14, 0))


def small_classifier(num_classes=400):
    return VideoMAEClassifier.from_arguments(num_classes=num_classes, **SMALL)


def test_predict_averages_softmax_over_views(lossless_video):
    path, _ = lossless_video
    model = small_classifier()
    result = predict_video(model, path, views=(3, 3), top_k=4, batch_size=4)
    views = load_views(path, 4, 32, (3, 3), "dense")
    logits = np.asarray(keras.ops.convert_to_numpy(model(views.data)), np.float64)
    per_view = np.exp(logits - logits.max(-1, keepdims=True))
    per_view /= per_view.sum(-1, keepdims=True)
    expected = per_view.mean(0)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(result.view_probabilities, per_view, atol=1e-5)
    assert [t["index"] for t in result.top] == list(np.argsort(-expected)[:4])
    names = presets.labels("kinetics400")
    assert [t["label"] for t in result.top] == [names[t["index"]] for t in result.top]
    assert result.label == result.top[0]["label"]
    # batching is invisible
    other = predict_video(model, path, views="3x3", top_k=4, batch_size=9)
    np.testing.assert_allclose(other.probabilities, result.probabilities, atol=1e-5)
    text = str(result)
    assert result.top[0]["label"] in text and "3x3 views" in text


def test_ssv2_heads_use_segment_sampling(lossless_video):
    path, _ = lossless_video
    result = predict_video(small_classifier(174), path, top_k=2)
    assert result.sampling == "segment" and result.views == (2, 3)
    assert result.top[0]["label"] == presets.labels("ssv2")[result.top[0]["index"]]


def test_labels_unknown_size_file_and_mismatch(lossless_video, tmp_path):
    path, _ = lossless_video
    model = small_classifier(3)
    result = predict_video(model, path, views=(1, 1), top_k=3)
    assert all(t["label"] is None for t in result.top)
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("cat\ndog\nbird\n")
    named = predict_video(model, path, views=(1, 1), labels=str(labels_file))
    assert {t["label"] for t in named.top} == {"cat", "dog", "bird"}
    with pytest.raises(ValueError, match="3 classes"):
        predict_video(model, path, views=(1, 1), labels=["a", "b"])


def test_predict_rejects_models_without_a_head(lossless_video):
    path, _ = lossless_video
    backbone = VideoMAEBackbone(**SMALL)
    with pytest.raises(ValueError, match="classifier"):
        predict_video(backbone, path)


def test_features_of_a_classifier_feed_its_head(lossless_video):
    path, _ = lossless_video
    model = small_classifier(10)
    features = extract_features(model, path, views=(2, 1))
    grid_tokens = 2 * 4 * 4
    assert features.pooled.shape == (2, 32) and features.tokens.shape == (2, grid_tokens, 32)
    head = model.get_layer("head")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in head.weights)
    views = load_views(path, 4, 32, (2, 1), "dense")
    logits = keras.ops.convert_to_numpy(model(views.data))
    np.testing.assert_allclose(features.pooled @ kernel + bias, logits, atol=1e-4)
    assert features.embedding.shape == (32,)
    assert extract_features(model, path, tokens=False).tokens is None


def test_features_of_backbone_and_pretrainer(lossless_video):
    path, _ = lossless_video
    backbone = VideoMAEBackbone(**SMALL)
    views = load_views(path, 4, 32, (1, 1), "dense")
    features = extract_features(backbone, path)
    expected = keras.ops.convert_to_numpy(backbone(views.data))
    np.testing.assert_allclose(features.tokens, expected, atol=1e-5)
    np.testing.assert_allclose(features.pooled, expected.mean(1), atol=1e-5)
    pretrainer = VideoMAEPretrainer.from_arguments(decoder_hidden_dim=16, decoder_depth=1,
                                    decoder_num_heads=2, decoder_mlp_dim=24, **SMALL)
    assert extract_features(pretrainer, path).tokens.shape == (1, 32, 32)


def test_parse_views():
    assert parse_views("5x3") == (5, 3) and parse_views((2, 3)) == (2, 3)
    for bad in ("5", "0x3", "axb"):
        with pytest.raises(ValueError):
            parse_views(bad)


@pytest.mark.parametrize("jit_compile", ["auto", True, False])
def test_optimize_for_inference_keeps_predictions(lossless_video, jit_compile):
    """Compiled calls give the eager outputs; int8 weights stay close (tiny random model)."""
    from videomae_keras.inference import optimize_for_inference

    path, _ = lossless_video
    keras.utils.set_random_seed(3)
    model = VideoMAEClassifier.from_arguments(num_classes=7, **SMALL)
    # batch 1, as predict_video's one view: one compilation serves both calls
    video = np.random.default_rng(0).standard_normal((1, 4, 32, 32, 3)).astype("float32")
    eager = keras.ops.convert_to_numpy(model(video, training=False))
    assert optimize_for_inference(model, jit_compile=jit_compile) is model
    np.testing.assert_allclose(model.predict_on_batch(video), eager, atol=1e-5)
    probabilities = predict_video(model, path, views=(1, 1), labels=False).probabilities
    if jit_compile is True and keras.backend.backend() == "torch":
        return  # torch.compile once is enough here: a second compile costs minutes on CPU
    optimize_for_inference(model, jit_compile=jit_compile, int8=True)
    assert any("int8" in str(v.dtype) for v in model.weights)
    quantized = np.asarray(model.predict_on_batch(video))
    assert not np.array_equal(quantized, eager)
    assert np.abs(quantized - eager).max() < 0.05 * np.abs(eager).max() + 1e-3
    again = predict_video(model, path, views=(1, 1), labels=False).probabilities
    assert np.abs(again - probabilities).max() < 0.02
