"""VideoMAE and VideoMAE V2 in Keras 3: the same models on JAX, TensorFlow and PyTorch."""

import os as _os

# TensorFlow's C++ start-up chatter (CPU features, missing CUDA) would precede every
# command's output; users who set TF_CPP_MIN_LOG_LEVEL themselves keep their value.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from videomae_keras import configs, layers
from videomae_keras.masking import (
    RandomMaskingGenerator,
    RunningCellMaskingGenerator,
    TubeMaskingGenerator,
    random_tube_mask,
)
from videomae_keras.models import (
    VideoMAE_ViTB16FT,
    VideoMAE_ViTB16PT,
    VideoMAE_ViTg14FT,
    VideoMAE_ViTg14PT,
    VideoMAE_ViTH16FT,
    VideoMAE_ViTH16PT,
    VideoMAE_ViTL16FT,
    VideoMAE_ViTL16PT,
    VideoMAE_ViTS16FT,
    VideoMAE_ViTS16PT,
    VideoMAEBackbone,
    VideoMAEClassifier,
    VideoMAEPretrainer,
)
from videomae_keras.convert import from_pretrained, load_pytorch_weights, read_checkpoint
from videomae_keras.inference import extract_features, predict_video
from videomae_keras.reconstruction import reconstruct_video
from videomae_keras.video import VideoError, VideoReader, preprocess, read_video

__version__ = "0.1.0"
