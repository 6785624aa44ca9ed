"""Training data: annotation lists, frame-consistent augmentation, the clip dataset and the
synthetic moving-shapes videos."""

import numpy as np
import pytest

from videomae_keras import TubeMaskingGenerator
from videomae_keras.data import (
    MOTION_CLASSES,
    VideoClipDataset,
    make_synthetic_dataset,
    random_resized_crop_box,
    read_annotations,
    render_clip,
    train_clip_transform,
)
from videomae_keras.video import VideoError

pytestmark = pytest.mark.backend_independent


def test_annotations(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("# comment\nvideos/a.mp4 3\n\n/abs/b file.mp4 0\nc.mp4 0 -1\n")
    samples = read_annotations(listing)
    assert samples[0] == (str(tmp_path / "videos" / "a.mp4"), 3)
    assert samples[1] == ("/abs/b file.mp4", 0)
    assert samples[2] == (str(tmp_path / "c.mp4"), 0)  # V2 pretraining list `path 0 -1`
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 1\nb.mp4 cat\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'path label'"):
        read_annotations(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="lists no videos"):
        read_annotations(empty)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_annotations(tmp_path / "missing.txt")


def test_random_resized_crop_box_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(120, 160, rng)
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 160
        assert 0.08 * 120 * 160 * 0.8 <= h * w <= 120 * 160
    assert random_resized_crop_box(10, 400, rng, scale=(0.99, 1.0)) == (0, 193, 10, 13)


def test_augmentation_is_the_same_for_every_frame():
    frame = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 6, axis=0)
    for seed in range(10):
        out = train_clip_transform(clip, 24, np.random.default_rng(seed))
        assert out.shape == (6, 24, 24, 3) and out.dtype == np.float32
        for t in range(1, 6):
            np.testing.assert_array_equal(out[t], out[0])
    flips = {bool(np.array_equal(train_clip_transform(clip, 24, np.random.default_rng(s),
                                                      scale=(1, 1), ratio=(1.5, 1.5)),
                                 train_clip_transform(clip, 24, np.random.default_rng(s),
                                                      scale=(1, 1), ratio=(1.5, 1.5),
                                                      flip=False)))
             for s in range(12)}
    assert flips == {True, False}  # some draws flip, some do not


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), train_per_class=3,
                                  val_per_class=1, frames=24, seed=0)


def test_synthetic_data_set(synthetic):
    train = read_annotations(synthetic["train"])
    assert len(train) == 3 * len(MOTION_CLASSES)
    assert sorted({label for _, label in train}) == list(range(len(MOTION_CLASSES)))
    with open(synthetic["labels"]) as f:
        assert tuple(f.read().split("\n")[:4]) == MOTION_CLASSES


@pytest.mark.parametrize("label", range(4))
def test_synthetic_shape_mask_covers_the_shape_and_changes_nothing(label):
    """`return_mask` gives the same clip and, per frame, the pixels that differ from the
    background (the shape's, up to its anti-aliased rim)."""
    from videomae_keras.data.synthetic import _background

    clip = render_clip(label, np.random.default_rng(5), frames=12)
    same, mask = render_clip(label, np.random.default_rng(5), frames=12, return_mask=True)
    np.testing.assert_array_equal(clip, same)
    assert mask.shape == clip.shape[:3] and mask.dtype == bool
    background = _background(np.random.default_rng(5), *clip.shape[1:3]).astype(int)
    changed = np.abs(clip.astype(int) - background).sum(-1) > 30
    overlap = (changed & mask).sum() / np.maximum((changed | mask).sum(), 1)
    assert overlap > 0.9, overlap  # 0.94 and up: the anti-aliased rim is half in, half out


@pytest.mark.parametrize("label", range(4))
@pytest.mark.parametrize("seed", range(3))
def test_synthetic_motion_direction(label, seed):
    """The shape's visible part moves the way the class says, by about its path's length."""
    from videomae_keras.data.synthetic import _background

    clip = render_clip(label, np.random.default_rng(seed), frames=20).astype(float)
    background = _background(np.random.default_rng(seed), *clip.shape[1:3]).astype(float)
    centres = []
    for frame in (clip[0], clip[-1]):
        shape = np.abs(frame - background).sum(-1) > 30  # the shape's pixels
        assert shape.mean() > 0.05  # a large part of the shape is in the frame
        ys, xs = np.nonzero(shape)
        centres.append((ys.mean(), xs.mean()))
    dy, dx = np.subtract(centres[1], centres[0])
    expected = [(0, 1), (0, -1), (1, 0), (-1, 0)][label]
    along, across = (dy, dx) if expected[0] else (dx, dy)
    assert along * (expected[0] or expected[1]) > 5 and abs(across) < 1


def test_pretraining_batches(synthetic):
    samples = read_annotations(synthetic["train"])
    masks = TubeMaskingGenerator((4, 2, 2), 0.5)
    data = VideoClipDataset(samples, "pretrain", 8, 32, 4, sampling_rate=2, mask_generator=masks,
                            seed=3)
    assert len(data) == 3
    (video, mask), = data[0]
    assert video.shape == (4, 8, 32, 32, 3) and mask.shape == (4, 16) and mask.dtype == np.uint8
    assert set(mask.sum(1)) == {8}
    assert len({m.tobytes() for m in mask}) > 1  # a fresh mask per sample
    (again, mask_again), = data[0]
    np.testing.assert_array_equal(again, video)  # reproducible for a seed
    np.testing.assert_array_equal(mask_again, mask)
    data.on_epoch_end()
    (other, _), = data[0]
    assert not np.array_equal(other, video)  # a new epoch reshuffles and redraws


def test_training_and_eval_batches(synthetic):
    train = read_annotations(synthetic["train"])
    data = VideoClipDataset(train, "train", 8, 32, 5, sampling_rate=2)
    video, labels = data[1]
    assert video.shape == (5, 8, 32, 32, 3) and labels.dtype == np.int32
    val = VideoClipDataset(read_annotations(synthetic["val"]), "eval", 8, 32, 3)
    assert len(val) == 2  # the last, partial batch is kept for evaluation
    assert val[1][0].shape[0] == 1


def test_broken_videos(synthetic, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no video here" * 10)
    samples = read_annotations(synthetic["train"])[:3] + [(str(broken), 1)]
    data = VideoClipDataset(samples, "train", 8, 32, 4, shuffle=False)
    with pytest.raises(VideoError, match="broken.mp4"):
        data[0]
    tolerant = VideoClipDataset(samples, "train", 8, 32, 4, shuffle=False, skip_broken=True)
    assert tolerant[0][0].shape == (4, 8, 32, 32, 3)
    with pytest.raises(ValueError, match="mask_generator"):
        VideoClipDataset(samples, "pretrain", 8, 32, 2)


def test_training_batches_with_mixup(synthetic):
    from videomae_keras.data import VideoMixup

    train = read_annotations(synthetic["train"])
    data = VideoClipDataset(train, "train", 8, 32, 4, sampling_rate=2,
                            mixup=VideoMixup(4, 0.8, 1.0))
    video, targets = data[0]
    assert video.shape == (4, 8, 32, 32, 3) and targets.shape == (4, 4)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)
    plain = VideoClipDataset(train, "eval", 8, 32, 4, mixup=VideoMixup(4))
    assert plain[0][1].shape == (4,)  # evaluation is never mixed
