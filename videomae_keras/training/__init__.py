"""Training: the pretraining loss, optimisers and schedules of the official recipes."""

from videomae_keras.training.losses import masked_index, pretraining_loss, pretraining_targets
from videomae_keras.training.optimizers import (
    VideoMAEAdamW,
    WarmupCosineDecay,
    finetuning_optimizer,
    layer_decay_scales,
    pretraining_optimizer,
)

__all__ = [
    "VideoMAEAdamW",
    "WarmupCosineDecay",
    "finetuning_optimizer",
    "layer_decay_scales",
    "masked_index",
    "pretraining_loss",
    "pretraining_optimizer",
    "pretraining_targets",
]
