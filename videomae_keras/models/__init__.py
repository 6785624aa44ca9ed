"""VideoMAE models: classifier, pretrainer, backbone, and the factory functions."""

from videomae_keras.models.backbone import VideoMAEBackbone
from videomae_keras.models.classifier import VideoMAEClassifier
from videomae_keras.models.factories import (
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
)
from videomae_keras.models.pretrainer import VideoMAEPretrainer
