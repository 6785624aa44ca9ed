"""Which frames make a clip: the official VideoMAE sampling recipes.

- `DenseSampler` (Kinetics, UCF101, HMDB51): 16 frames at stride 4. Training draws one clip
  from a random 64-frame window; testing takes every 4th frame and cuts clip k of N evenly
  along it ("16x5x3" = 5 clips).
- `SegmentSampler` (Something-Something v2): the video cut into 16 segments. Training takes
  one random frame per segment; testing takes 2 interleaved clips ("16x2x3").
- `UniformSampler`: `num_frames` frames spread evenly over the whole video.

`train(num_video_frames, rng)` returns one clip's frame indices, `test(num_video_frames,
num_clips)` a (num_clips, clip_len) array. Randomness comes only from `rng` (a numpy
Generator or a seed), so a seed fixes the result. Videos shorter than a clip repeat their
last frame, as the official loaders do.
"""

import numpy as np


def _generator(rng):
    if hasattr(rng, "integers"):  # a numpy Generator (or anything drawing like one)
        return rng
    return np.random.default_rng(rng)


def _check_length(num_video_frames):
    if int(num_video_frames) <= 0:
        raise ValueError(f"The video has no frames (length {num_video_frames}).")
    return int(num_video_frames)


def _pad(indices, length):
    """Repeats the last index until there are `length` of them."""
    indices = list(indices)
    while len(indices) < length:
        indices.append(indices[-1])
    return indices


class _Sampler:
    """What every sampler shares: the clip length and the default (clips, crops) views."""

    name = ""
    views = (1, 1)

    def __init__(self, clip_len=16):
        if clip_len < 1:
            raise ValueError("clip_len must be at least 1.")
        self.clip_len = int(clip_len)

    def default_views(self):
        return self.views


class DenseSampler(_Sampler):
    """Consecutive frames at a fixed stride (official Kinetics / UCF / HMDB recipe)."""

    name = "dense"
    views = (5, 3)

    def __init__(self, clip_len=16, sampling_rate=4):
        super().__init__(clip_len)
        if sampling_rate < 1:
            raise ValueError("sampling_rate must be at least 1.")
        self.sampling_rate = int(sampling_rate)

    def train(self, num_video_frames, rng=None):
        """One clip: 16 indices spread over a random window of clip_len * stride frames."""
        length = _check_length(num_video_frames)
        window = self.clip_len * self.sampling_rate
        if length <= window:
            index = np.linspace(0, length, num=length // self.sampling_rate)
            index = np.concatenate(
                [index, np.full(self.clip_len - length // self.sampling_rate, length)]
            )
            return np.clip(index, 0, length - 1).astype(np.int64)
        end = int(_generator(rng).integers(window, length))
        start = end - window
        index = np.linspace(start, end, num=self.clip_len)
        return np.clip(index, start, end - 1).astype(np.int64)

    def test(self, num_video_frames, num_clips=5):
        """(num_clips, clip_len) indices: every `sampling_rate`-th frame (padded with the last
        to clip_len), clip k starting at int(k * (L - clip_len) / (num_clips - 1)) along it.
        One clip is the centre one."""
        length = _check_length(num_video_frames)
        strided = np.asarray(
            _pad(range(0, length, self.sampling_rate), self.clip_len), dtype=np.int64
        )
        spare = len(strided) - self.clip_len
        starts = _even_offsets(spare, num_clips)
        return np.stack([strided[s : s + self.clip_len] for s in starts])


class SegmentSampler(_Sampler):
    """One frame per segment, TSN style (official Something-Something v2 recipe)."""

    name = "segment"
    views = (2, 3)

    def __init__(self, num_segments=16):
        super().__init__(num_segments)

    def train(self, num_video_frames, rng=None):
        """A random frame from each of the equal segments."""
        length = _check_length(num_video_frames)
        rng = _generator(rng)
        segments = self.clip_len
        duration = length // segments
        if duration == 0:  # shorter than one frame per segment: the official loader's zeros
            return np.zeros(segments, np.int64)
        return (np.arange(segments) * duration + rng.integers(duration, size=segments)).astype(
            np.int64)

    def test(self, num_video_frames, num_clips=2):
        """Clip k takes int(tick * x + k * tick / num_clips) for x < num_segments, with
        tick = L / num_segments: the official 2-clip interleaving for num_clips=2."""
        length = _check_length(num_video_frames)
        _check_clips(num_clips)
        tick = length / float(self.clip_len)
        clips = [
            [int(tick * x + k * tick / num_clips) for x in range(self.clip_len)]
            for k in range(num_clips)
        ]
        return np.minimum(np.asarray(clips, dtype=np.int64), length - 1)


class UniformSampler(_Sampler):
    """`clip_len` frames spread evenly from the first frame to the last."""

    name = "uniform"

    def train(self, num_video_frames, rng=None):
        """The evenly spread frames, shifted by a random offset within one step."""
        length = _check_length(num_video_frames)
        step = length / self.clip_len
        offset = _generator(rng).uniform(0, step)
        index = np.floor(np.arange(self.clip_len) * step + offset)
        return np.clip(index, 0, length - 1).astype(np.int64)

    def test(self, num_video_frames, num_clips=1):
        """Clip k: evenly spread frames, offset by k / num_clips of a step (0 for one clip:
        the first and last frames are both taken)."""
        length = _check_length(num_video_frames)
        _check_clips(num_clips)
        if num_clips == 1:
            index = np.round(np.linspace(0, length - 1, self.clip_len))
            return index.astype(np.int64)[None]
        step = length / self.clip_len
        clips = [np.floor(np.arange(self.clip_len) * step + k * step / num_clips)
                 for k in range(num_clips)]
        return np.clip(np.asarray(clips), 0, length - 1).astype(np.int64)


def _check_clips(count):
    if count < 1:
        raise ValueError("The number of clips must be at least 1.")


def _even_offsets(spare, count):
    """`count` start offsets spread evenly over [0, spare]; the middle one for count 1."""
    _check_clips(count)
    if count == 1:
        return [int(max(spare, 0) / 2)]
    step = max(spare / (count - 1), 0.0)
    return [int(k * step) for k in range(count)]


SAMPLERS = {"dense": DenseSampler, "segment": SegmentSampler, "uniform": UniformSampler}


def get_sampler(name, clip_len=16, sampling_rate=4):
    """A sampler by name: "dense" (stride `sampling_rate`), "segment" or "uniform"."""
    if not isinstance(name, str):
        return name
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampling {name!r}; choose one of {', '.join(SAMPLERS)}.")
    if name == "dense":
        return DenseSampler(clip_len, sampling_rate)
    return SAMPLERS[name](clip_len)


def spatial_offsets(length, size, num_crops):
    """Crop offsets along a side of `length` pixels: int(s * (length - size) / (num_crops - 1))
    for crop s (the official 3-crop test), the centre int((length - size) / 2) for one crop."""
    if length < size:
        raise ValueError(f"Cannot crop {size} pixels from a side of {length}.")
    return _even_offsets(length - size, num_crops)
