"""Video mixup / cutmix against the timm formulas, written out here."""

import numpy as np
import pytest

from videomae_keras.data import VideoMixup, mixed_targets, smoothed_one_hot

pytestmark = pytest.mark.backend_independent


def clips(batch=4, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 10, 3)).astype(np.float32)


def test_targets_follow_timm():
    labels = np.array([0, 2, 1, 2])
    smooth = smoothed_one_hot(labels, 3, 0.1)
    off = 0.1 / 3
    assert np.allclose(smooth.sum(1), 1) and np.isclose(smooth[0, 0], 1 - 0.1 + off)
    assert np.isclose(smooth[0, 1], off)
    lam = 0.3
    mixed = mixed_targets(labels, 3, lam, 0.1)
    np.testing.assert_allclose(mixed, lam * smooth + (1 - lam) * smooth[::-1], atol=1e-7)


def test_mixup_blends_with_the_reversed_batch():
    videos, labels = clips(), np.array([0, 1, 2, 3])
    mixer = VideoMixup(4, mixup_alpha=0.8, cutmix_alpha=0.0)
    out, targets, lam, kind = mixer(videos, labels, np.random.default_rng(5))
    assert kind == "mixup" and 0 < lam < 1
    np.testing.assert_allclose(out, lam * videos + (1 - lam) * videos[::-1], atol=1e-6)
    np.testing.assert_allclose(targets, mixed_targets(labels, 4, lam, 0.1), atol=1e-7)


def test_cutmix_pastes_one_box_in_every_frame():
    videos, labels = clips(), np.array([0, 1, 2, 3])
    mixer = VideoMixup(4, mixup_alpha=0.0, cutmix_alpha=1.0)
    for seed in range(20):
        out, targets, lam, kind = mixer(videos, labels, np.random.default_rng(seed))
        assert kind == "cutmix"
        changed = np.any(out != videos, axis=(0, 1, 4))  # (H, W) positions replaced
        ys, xs = np.nonzero(changed)
        if ys.size:
            box = changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            assert box.all()  # a rectangle
            assert np.isclose(lam, 1 - box.size / (8 * 10))  # lambda matches the pasted area
            for t in range(3):  # the same box in every frame, taken from the reversed batch
                np.testing.assert_array_equal(
                    out[:, t, ys.min():ys.max() + 1, xs.min():xs.max() + 1],
                    videos[::-1, t, ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        np.testing.assert_allclose(targets, mixed_targets(labels, 4, lam, 0.1), atol=1e-6)


def test_switch_and_probability():
    mixer = VideoMixup(3, 0.8, 1.0, switch_prob=0.5)
    kinds = {mixer(clips(), np.array([0, 1, 2, 0]), np.random.default_rng(s))[3]
             for s in range(30)}
    assert kinds == {"mixup", "cutmix"}
    never = VideoMixup(3, 0.8, 1.0, prob=0.0)
    videos = clips()
    out, targets, lam, kind = never(videos, np.array([0, 1, 2, 0]), np.random.default_rng(0))
    assert kind == "none" and lam == 1.0
    np.testing.assert_array_equal(out, videos)
    with pytest.raises(ValueError):
        VideoMixup(3, 0.0, 0.0)
