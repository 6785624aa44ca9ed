"""Training: runs (`run`), their settings, optimisers and schedules of the official recipes,
backups and run folders, and the distribution over devices and hosts.

The names below import on first use, so the command line reads `training.settings` (to
build its options) without loading Keras."""

import importlib as _importlib

_EXPORTS = {
    **dict.fromkeys(["dual_masking_loss", "masked_index", "pretraining_loss",
                     "pretraining_patches", "pretraining_targets"], "videomae_keras.losses"),
    **dict.fromkeys(["VideoMAEAdamW", "WarmupCosineDecay", "finetuning_optimizer",
                     "layer_decay_scales", "pretraining_optimizer"],
                    "videomae_keras.training.optimizers"),
    **dict.fromkeys(["FinetuneSettings", "PretrainSettings"],
                    "videomae_keras.training.settings"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'videomae_keras.training' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
