"""Batches of clips for `fit()`: a `keras.utils.PyDataset`, so the same loader feeds JAX,
TensorFlow and PyTorch, with worker threads or processes keeping the cores busy."""

import copy

import numpy as np

import keras

from videomae_keras.data.augment import train_clip_transform
from videomae_keras.video.io import VideoError, VideoReader
from videomae_keras.video.preprocess import crop_and_normalize, resize_short_side
from videomae_keras.video.sampling import get_sampler


class VideoClipDataset(keras.utils.PyDataset):
    """Clips from `(path, label)` samples, one batch per index.

    mode "pretrain": yields `((video, bool_masked_pos),)` (masks as uint8 0/1), a fresh tube
        mask per sample from
        `mask_generator` (e.g. `TubeMaskingGenerator`), multi-scale crop augmentation. With
        `decoder_mask_generator` (VideoMAE V2 dual masking, e.g.
        `RunningCellMaskingGenerator(model.grid, 0.5)`), `((video, mask, decoder_mask),)`.
    mode "train": yields `(video, label)` with a random clip, random resized crop and flip;
        with `mixup` (a `VideoMixup`), `(mixed video, soft targets)` instead.
    mode "eval": yields `(video, label)` with the centre clip and centre crop.

    Every random draw of a clip comes from a generator seeded by (seed, epoch, batch index,
    place in the batch), so a run is reproducible whatever the number of workers or
    processes. `share=(process, processes)`: each batch holds only this process's part of
    the global batch of `batch_size` (rows [p*b/P, (p+1)*b/P)), so the processes of a
    multi-host run each decode only their clips, with the draws a single process would make
    (mixup, which mixes within a batch, mixes within each process's part). Unreadable videos
    raise a VideoError naming the file (set `skip_broken=True` to draw another sample
    instead, as the official loader does).
    """

    def __init__(self, samples, mode="train", num_frames=16, image_size=224, batch_size=8,
                 sampling="dense", sampling_rate=4, mask_generator=None, flip=True,
                 scale=(0.08, 1.0), shuffle=None, seed=0, skip_broken=False,
                 drop_remainder=None, mixup=None, decoder_mask_generator=None, share=None,
                 **kwargs):
        super().__init__(**kwargs)
        if mode not in ("pretrain", "train", "eval"):
            raise ValueError(f"mode must be pretrain, train or eval; got {mode!r}.")
        if mode == "pretrain" and mask_generator is None:
            raise ValueError("mode='pretrain' needs a mask_generator (e.g. TubeMaskingGenerator).")
        self.samples = list(samples)
        self.mode = mode
        self.num_frames, self.image_size = int(num_frames), int(image_size)
        self.batch_size = int(batch_size)
        self.sampler = get_sampler(sampling, num_frames, sampling_rate)
        self.mask_generator = mask_generator
        self.decoder_mask_generator = decoder_mask_generator if mode == "pretrain" else None
        self.flip, self.scale = flip, tuple(scale)
        self.shuffle = mode != "eval" if shuffle is None else bool(shuffle)
        self.drop_remainder = mode != "eval" if drop_remainder is None else drop_remainder
        self.seed, self.skip_broken = int(seed), bool(skip_broken)
        self.mixup = mixup if mode == "train" else None
        self.epoch = 0
        self.share = (0, 1) if share is None else tuple(int(v) for v in share)
        process, processes = self.share
        if not 0 <= process < processes or self.batch_size % processes:
            raise ValueError(f"share {share} must be (process, processes) with 0 <= process < "
                             f"processes dividing the batch size {self.batch_size}.")
        if len(self.samples) < (self.batch_size if self.drop_remainder else 1):
            raise ValueError(f"{len(self.samples)} samples cannot fill a batch of "
                             f"{self.batch_size}.")
        self._order = self._permutation()

    def _permutation(self):
        if not self.shuffle:
            return np.arange(len(self.samples))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))

    def __len__(self):
        if self.drop_remainder:
            return len(self.samples) // self.batch_size
        return -(-len(self.samples) // self.batch_size)

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch):
        """Draws as in epoch `epoch` (a resumed run calls this to continue the same stream)."""
        self.epoch = int(epoch)
        self._order = self._permutation()

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        process, processes = self.share
        part = -(-len(rows) // processes)
        places = range(process * part, min(len(rows), (process + 1) * part))
        videos, labels, masks, decoder_masks = [], [], [], []
        for place in places:
            rng = np.random.default_rng([self.seed, self.epoch, index, place])
            video, label = self._load(int(rows[place]), rng)
            videos.append(video)
            labels.append(label)
            if self.mode == "pretrain":
                masks.append(self._mask(self.mask_generator, rng))
                if self.decoder_mask_generator is not None:
                    decoder_masks.append(self._mask(self.decoder_mask_generator, rng))
        videos = np.stack(videos)
        if self.mode == "pretrain":
            # uint8 0/1 rather than bool: tf.distribute cannot reduce bool batches
            masks = np.stack(masks).astype(np.uint8)
            if self.decoder_mask_generator is None:
                return ((videos, masks),)
            return ((videos, masks, np.stack(decoder_masks).astype(np.uint8)),)
        labels = np.asarray(labels, np.int32)
        if self.mixup is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index, len(rows) + process])
            videos, targets, _, _ = self.mixup(videos, labels, rng)
            return videos, targets
        return videos, labels

    def _mask(self, generator, rng):
        if hasattr(generator, "rng"):  # a private copy: batches load in parallel threads
            generator = copy.copy(generator)
            generator.rng = rng
        return np.asarray(generator(), bool).reshape(-1)

    def _load(self, row, rng):
        for _ in range(10):
            path, label = self.samples[row]
            try:
                return self._clip(path, rng), label
            except VideoError:
                if not self.skip_broken:
                    raise
                row = int(rng.integers(len(self.samples)))
        raise VideoError(f"ten unreadable videos in a row (last {path}); check the data set.")

    def _clip(self, path, rng):
        with VideoReader(path) as reader:
            if self.mode == "eval":
                frames = reader.read_clip(self.sampler.test(len(reader), 1)[0],
                                          replan=lambda n: self.sampler.test(n, 1)[0])
            else:
                frames = reader.read_clip(self.sampler.train(len(reader), rng),
                                          replan=lambda n: self.sampler.train(n, rng))
        if self.mode == "eval":
            resized = resize_short_side(frames, self.image_size)
            return crop_and_normalize(resized, self.image_size, 1)[0]
        scale = (0.66 ** 2, 1.0) if self.mode == "pretrain" else self.scale
        return train_clip_transform(frames, self.image_size, rng, scale=scale,
                                    flip=self.flip and self.mode == "train")
