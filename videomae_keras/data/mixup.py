"""Mixup and CutMix for video batches (official fine-tuning: mixup 0.8, cutmix 1.0, switch
probability 0.5, label smoothing 0.1), in numpy for the data loader.

As in timm's `Mixup` (batch mode): one lambda per batch drawn from Beta(alpha, alpha); the
batch is mixed with its reverse. CutMix pastes one box, the same in every frame of a clip,
and lambda is corrected to the pasted area. Targets are the smoothed one-hot labels mixed
with the same lambda.
"""

import numpy as np


def smoothed_one_hot(labels, num_classes, smoothing=0.1):
    """(B,) ints -> (B, num_classes) with 1 - smoothing + smoothing / C on the label and
    smoothing / C elsewhere."""
    off = smoothing / num_classes
    out = np.full((len(labels), num_classes), off, np.float32)
    out[np.arange(len(labels)), np.asarray(labels, np.int64)] = 1.0 - smoothing + off
    return out


def mixed_targets(labels, num_classes, lam, smoothing=0.1):
    """lam * smoothed(labels) + (1 - lam) * smoothed(labels reversed)."""
    first = smoothed_one_hot(labels, num_classes, smoothing)
    return (lam * first + (1.0 - lam) * first[::-1]).astype(np.float32)


def cutmix_box(height, width, lam, rng):
    """(top, bottom, left, right) of a box of area about (1 - lam) * H * W, centre uniform,
    clipped to the frame (timm `rand_bbox`)."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    left, right = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    return int(top), int(bottom), int(left), int(right)


class VideoMixup:
    """Mixes a batch of clips (B, T, H, W, C) and their integer labels.

    Args:
        num_classes: size of the targets.
        mixup_alpha, cutmix_alpha: Beta parameters (0 turns one off).
        prob: probability of mixing a batch at all.
        switch_prob: with both on, the probability of CutMix instead of mixup.
        label_smoothing: smoothing inside the targets (the loss should not smooth again).
    """

    def __init__(self, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0,
                 switch_prob=0.5, label_smoothing=0.1):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("Give mixup_alpha or cutmix_alpha above 0.")
        self.num_classes = int(num_classes)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.label_smoothing = float(label_smoothing)

    def __call__(self, videos, labels, rng):
        """Returns (mixed videos float32, soft targets (B, num_classes), lam, kind)."""
        videos = np.asarray(videos, np.float32)
        lam, kind = 1.0, "none"
        if rng.random() < self.prob:
            use_cutmix = self.cutmix_alpha > 0 and (
                self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
            if use_cutmix:
                lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha))
                height, width = videos.shape[2:4]
                top, bottom, left, right = cutmix_box(height, width, lam, rng)
                videos = videos.copy()
                videos[:, :, top:bottom, left:right] = videos[::-1, :, top:bottom, left:right]
                lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
                kind = "cutmix"
            else:
                lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
                videos = lam * videos + (1.0 - lam) * videos[::-1]
                kind = "mixup"
        targets = mixed_targets(labels, self.num_classes, lam, self.label_smoothing)
        return videos.astype(np.float32), targets, lam, kind
