"""Explanations: rollout as the product of the attention matrices, Grad-CAM's gradients
against finite differences, pictures a person can read, and a heatmap that means something:
on the synthetic moving-shape clips the demo classifier's Grad-CAM puts clearly more of its
mass on the shape than the shape's share of the frame, and random-weight models do not."""

import cv2
import numpy as np
import pytest
from PIL import Image

import keras
import videomae_keras as vk
from videomae_keras import explain, kernels
from videomae_keras.data.synthetic import render_clip
from videomae_keras.demo import demo_files
from videomae_keras.inference import load_views
from videomae_keras.video.preprocess import crop_boxes, resize_short_side

CLIPS = 64  # 16 of each direction: 16 clips in all left the mean off by 0.3 between draws
RANDOM_CLIPS = 16  # for each random-weight model


@pytest.fixture(scope="module")
def demo():
    return vk.from_pretrained(demo_files()["classifier"])


def _shape_region(mask, explanation):
    """The moving shape's pixels in the clip the model saw: the clip's frames of the mask,
    resized and centre-cropped as the frames were."""
    size = explanation.frames.shape[1]
    picked = np.repeat((mask[explanation.frame_indices] * 255).astype(np.uint8)[..., None], 3, -1)
    resized = resize_short_side(picked, size)
    ((top, left),) = crop_boxes(resized.shape[1], resized.shape[2], (size, size), 1)
    return resized[:, top:top + size, left:left + size, 0] >= 128


def _mass_on_shape(model, method, clips=CLIPS):
    ratios = []
    for i in range(clips):
        clip, mask = render_clip(i % 4, np.random.default_rng(100 + i), return_mask=True)
        explanation = vk.explain_video(model, clip, method=method, sampling_rate=2)
        ratios.append(explanation.mass_on(_shape_region(mask, explanation)))
    return float(np.mean(ratios))


def test_gradcam_looks_at_the_moving_shape_and_random_weights_do_not(demo):
    """The demo classifier's Grad-CAM puts clearly more of its mass on the moving shape
    than the shape's share of the frame; random-weight models of the same shape (three
    draws, which differ from one another and by backend) do not on average."""
    trained = _mass_on_shape(demo, "gradcam")
    untrained = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        random = vk.VideoMAEClassifier.from_arguments(
            **{**demo.arguments(), "class_names": None})
        untrained.append(_mass_on_shape(random, "gradcam", clips=RANDOM_CLIPS))
    print(f"mass on the shape / its share: trained {trained:.2f}, random "
          f"{', '.join(f'{r:.2f}' for r in untrained)}")
    assert trained >= 1.25, trained  # measured 1.37 on every backend
    assert np.mean(untrained) <= 1.15, untrained  # 0.93-1.06 (each draw 0.83-1.14)
    assert trained - np.mean(untrained) >= 0.2, (trained, untrained)


def _first_clip(model):
    clip = render_clip(0, np.random.default_rng(7))
    frames, height, width = model.video_shape[:3]
    return load_views(clip, frames, (height, width), (1, 1),
                      sampling_rate=2).data


@pytest.mark.parametrize("mean_pooling", [True, False])
def test_rollout_is_the_product_of_the_mixed_attention_matrices(demo, mean_pooling):
    model = demo if mean_pooling else vk.VideoMAEClassifier.from_arguments(
        **{**demo.arguments(), "use_mean_pooling": False})
    clip = _first_clip(model)
    attentions = vk.intermediates(model, clip).attentions
    n = model.num_tokens
    product = np.eye(n)
    for weights in attentions:  # A_l = 0.5 W_l + 0.5 I, rolled out as A_L ... A_1
        product = (0.5 * weights[0].astype(np.float64).mean(0) + 0.5 * np.eye(n)) @ product
    expected = product.mean(axis=0) if mean_pooling else product[0]
    _, output, mixes = explain._encode(model, keras.ops.convert_to_tensor(clip), attention=True)
    np.testing.assert_allclose(explain._rollout(model, mixes), expected, rtol=1e-4, atol=1e-7)
    # the same single pass gives the model's own logits (the explanation's probability)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(explain._logits_from_tokens(model, output)),
        keras.ops.convert_to_numpy(model(keras.ops.convert_to_tensor(clip))), rtol=1e-4,
        atol=1e-5)


def test_gradients_agree_with_finite_differences(demo):
    """The gradient Grad-CAM uses, through the backend's autodiff, against a central
    difference of the class score along a random direction."""
    clip = keras.ops.convert_to_tensor(_first_clip(demo))
    encoder, last = demo.encoder, demo.encoder.blocks[-1]
    x = encoder.embed(clip)
    for block in encoder.blocks[:-1]:
        x = block(x)
    tokens = keras.ops.convert_to_numpy(last.norm1(x)).astype(np.float32)

    def score(t):
        return explain._logits_from_tokens(demo, last.call_with_attention_input(x, t))[0, 2]

    value, gradient = kernels.value_and_gradient(score, keras.ops.convert_to_tensor(tokens))
    direction = np.random.default_rng(0).standard_normal(tokens.shape).astype(np.float32)
    step = 1e-2
    with kernels.no_gradients():
        up = float(keras.ops.convert_to_numpy(score(tokens + step * direction)))
        down = float(keras.ops.convert_to_numpy(score(tokens - step * direction)))
    numeric = (up - down) / (2 * step)
    analytic = float(np.sum(keras.ops.convert_to_numpy(gradient) * direction))
    assert abs(numeric - analytic) <= 2e-2 * max(1.0, abs(analytic)), (numeric, analytic)


@pytest.mark.parametrize("method", ["gradcam", "rollout"])
def test_the_probability_is_the_models_own(demo, method):
    """Each method's single encoder pass gives the classifier's own softmax for the class
    explained, predicted or asked for."""
    clip = render_clip(0, np.random.default_rng(7))  # the frames of _first_clip
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(demo(_first_clip(demo))))[0]
    for target in (None, 2):
        result = vk.explain_video(demo, clip, target=target, method=method, sampling_rate=2)
        expected = int(np.argmax(probabilities)) if target is None else target
        assert result.target == expected
        np.testing.assert_allclose(result.probability, probabilities[expected], rtol=1e-4,
                                   atol=1e-6)


def test_pictures_files_and_targets(demo, tmp_path):
    result = vk.explain_video(demo, vk.sample_video(), sampling_rate=2)
    assert result.label == "moving right" and result.method == "gradcam"
    assert result.heatmap.shape == demo.grid and result.heatmap.min() == 0.0
    assert result.heatmap.max() == 1.0
    frames = len(result.frames)
    png = Image.open(result.save_png(tmp_path / "e.png"))
    assert png.size[1] > 2 * 128  # two enlarged rows under a caption
    gif = Image.open(result.save_gif(tmp_path / "e.gif"))
    assert gif.n_frames == frames
    video = cv2.VideoCapture(result.save_mp4(tmp_path / "e.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    video.release()
    overlay = result.overlay()
    assert overlay.shape == result.frames.shape and overlay.dtype == np.uint8
    with pytest.raises(FileExistsError):
        result.save_png(tmp_path / "e.png")
    other = vk.explain_video(demo, vk.sample_video(), target="moving up", method="rollout",
                             sampling_rate=2)
    assert other.target == 3 and other.label == "moving up" and other.probability < 0.5
    assert vk.explain_video(demo, vk.sample_video(), target=3, sampling_rate=2).target == 3


def test_bad_requests_get_one_clear_line(demo):
    with pytest.raises(ValueError, match="not a class name of this model"):
        vk.explain_video(demo, vk.sample_video(), target="jumping")
    with pytest.raises(ValueError, match="class index from 0 to 3"):
        vk.explain_video(demo, vk.sample_video(), target=9)
    with pytest.raises(ValueError, match="method must be one of"):
        vk.explain_video(demo, vk.sample_video(), method="lime")
    with pytest.raises(ValueError, match="needs a classifier"):
        vk.explain_video(vk.from_pretrained(demo_files()["pretrainer"]), vk.sample_video())
