"""Checkpoints into Keras VideoMAE models: one module per source format (`official`,
`transformers`: key map, config mapping, shape inference), the canonical-to-Keras map
(`keymap`), file reading (`checkpoint`), `from_pretrained` with one loader per kind of source
(`loading`), and the transformers reference for --verify (`reference`)."""

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
    source_kind,
)
