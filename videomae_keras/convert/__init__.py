"""PyTorch checkpoints (official and transformers) into Keras VideoMAE models."""

from videomae_keras.convert.checkpoint import CheckpointError, read_checkpoint
from videomae_keras.convert.keymap import keras_weight_map, to_canonical
from videomae_keras.convert.loading import (
    LoadReport,
    ModelPlan,
    build_model,
    from_pretrained,
    infer_architecture,
    load_keras_file,
    load_pytorch_weights,
    plan_model,
)
