"""Training: the pretraining loss, optimisers and schedules of the official recipes."""

from videomae_keras.losses import (
    dual_masking_loss,
    masked_index,
    pretraining_loss,
    pretraining_patches,
    pretraining_targets,
)
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
    "dual_masking_loss",
    "finetuning_optimizer",
    "layer_decay_scales",
    "masked_index",
    "pretraining_loss",
    "pretraining_optimizer",
    "pretraining_patches",
    "pretraining_targets",
]
