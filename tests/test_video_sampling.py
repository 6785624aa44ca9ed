"""Frame samplers against transcriptions of the official recipes (facts file section 6),
written here independently of the package."""

import numpy as np
import pytest

from videomae_keras.video.sampling import (
    DenseSampler,
    SegmentSampler,
    UniformSampler,
    get_sampler,
    spatial_offsets,
)

pytestmark = pytest.mark.backend_independent
LENGTHS = [1, 3, 4, 10, 15, 16, 17, 31, 63, 64, 65, 100, 250, 301]


class FixedDraws:
    """Stands in for a numpy Generator: `integers` returns preset values (so the official
    formulas, which draw with np.random, can be compared draw for draw)."""

    def __init__(self, values):
        self.values = values

    def integers(self, low, high=None, size=None):
        return self.values(low, high, size)


def official_dense_train(length, end, clip_len=16, rate=4):
    window = clip_len * rate
    if length <= window:
        index = np.linspace(0, length, num=length // rate)
        index = np.concatenate((index, np.ones(clip_len - length // rate) * length))
        return np.clip(index, 0, length - 1).astype(np.int64)
    start = end - window
    index = np.linspace(start, end, num=clip_len)
    return np.clip(index, start, end - 1).astype(np.int64)


@pytest.mark.parametrize("length", LENGTHS)
def test_dense_train_matches_official(length):
    sampler = DenseSampler(16, 4)
    ends = range(64, length) if length > 64 else [None]
    for end in list(ends)[:: max(1, len(ends) // 7)]:
        draws = FixedDraws(lambda low, high, size, end=end: (
            pytest.fail("draw for a short video") if end is None else end))
        ours = sampler.train(length, draws)
        np.testing.assert_array_equal(ours, official_dense_train(length, end))
        assert len(ours) == 16 and ours.min() >= 0 and ours.max() < length


def test_dense_train_draws_within_the_window_and_is_seeded():
    sampler = DenseSampler(16, 4)
    clips = [sampler.train(300, seed) for seed in range(40)]
    starts = {int(c[0]) for c in clips}
    assert len(starts) > 10  # random start
    for clip in clips:
        assert clip[-1] - clip[0] < 64 and np.all(np.diff(clip) >= 4)
    np.testing.assert_array_equal(sampler.train(300, 7), sampler.train(300, 7))


def official_dense_test(length, num_clips, clip_len=16, rate=4):
    all_index = [x for x in range(0, length, rate)]
    while len(all_index) < clip_len:
        all_index.append(all_index[-1])
    step = max(1.0 * (len(all_index) - clip_len) / (num_clips - 1), 0)
    return np.array([all_index[int(k * step) : int(k * step) + clip_len] for k in range(num_clips)])


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("num_clips", [2, 3, 5, 10])
def test_dense_test_matches_official(length, num_clips):
    ours = DenseSampler(16, 4).test(length, num_clips)
    np.testing.assert_array_equal(ours, official_dense_test(length, num_clips))


def test_dense_test_single_clip_is_centred():
    clip = DenseSampler(16, 4).test(300, 1)[0]
    strided = np.arange(0, 300, 4)
    spare = len(strided) - 16
    np.testing.assert_array_equal(clip, strided[spare // 2 : spare // 2 + 16])


def official_segment_train(length, draw, segments=16):
    average_duration = length // segments
    if average_duration > 0:
        return np.multiply(list(range(segments)), average_duration) + draw(average_duration, segments)
    return np.zeros((segments,), np.int64)


@pytest.mark.parametrize("length", LENGTHS)
def test_segment_train_matches_official(length):
    rng_ours, rng_official = np.random.default_rng(3), np.random.default_rng(3)
    ours = SegmentSampler(16).train(length, rng_ours)
    reference = official_segment_train(
        length, lambda high, size: rng_official.integers(high, size=size))
    np.testing.assert_array_equal(ours, reference)
    assert ours.min() >= 0 and ours.max() < length


def official_segment_test(length, segments=16, test_segments=2):
    tick = length / float(segments)
    all_index = list(np.array([int(tick / 2.0 + tick * x) for x in range(segments)]
                              + [int(tick * x) for x in range(segments)]))
    while len(all_index) < segments * test_segments:
        all_index.append(all_index[-1])
    all_index = np.sort(np.array(all_index))
    return np.stack([all_index[k::2] for k in range(test_segments)])


@pytest.mark.parametrize("length", LENGTHS + list(range(20, 60)))
def test_segment_test_matches_official_two_clips(length):
    ours = SegmentSampler(16).test(length, 2)
    np.testing.assert_array_equal(ours, official_segment_test(length))


def test_uniform_sampling_spans_the_video():
    clip = UniformSampler(16).test(100, 1)[0]
    assert clip[0] == 0 and clip[-1] == 99 and np.all(np.diff(clip) > 0)
    assert UniformSampler(16).test(5, 1)[0].max() == 4
    two = UniformSampler(8).test(80, 2)
    np.testing.assert_array_equal(two[0], np.arange(0, 80, 10))
    np.testing.assert_array_equal(two[1], np.arange(5, 80, 10))
    train = UniformSampler(8).train(80, 1)
    assert len(train) == 8 and np.all(np.diff(train) >= 9)


def test_three_crop_offsets_match_official():
    for long_side in (224, 298, 320, 398, 455):
        expected = [int(s * 1.0 * (long_side - 224) / 2) for s in range(3)]
        assert spatial_offsets(long_side, 224, 3) == expected
    assert spatial_offsets(398, 224, 1) == [87]


def test_bad_arguments():
    with pytest.raises(ValueError, match="no frames"):
        DenseSampler().test(0, 5)
    with pytest.raises(ValueError, match="Unknown sampling"):
        get_sampler("tsn")
    with pytest.raises(ValueError, match="at least 1"):
        DenseSampler().test(100, 0)
    with pytest.raises(ValueError, match="Cannot crop"):
        spatial_offsets(100, 224, 3)
