"""Keras layers of VideoMAE, each serializable (registered under the package 'videomae_keras')."""

from videomae_keras.layers.attention import MultiHeadSelfAttention
from videomae_keras.layers.embedding import (
    SinusoidPositionEmbedding,
    TubeletEmbedding,
    sinusoid_table,
)
from videomae_keras.layers.encoder import VideoMAEDecoder, VideoMAEEncoder
from videomae_keras.layers.preprocessing import VideoPreprocessing, with_preprocessing
from videomae_keras.layers.tokens import InvalidSampleGuard, MaskedTokenIndex, TokenPooling
from videomae_keras.layers.transformer import (
    MLP,
    DropPath,
    LayerScale,
    TransformerBlock,
    TransformerStack,
)

__all__ = [
    "DropPath",
    "InvalidSampleGuard",
    "LayerScale",
    "MLP",
    "MaskedTokenIndex",
    "MultiHeadSelfAttention",
    "SinusoidPositionEmbedding",
    "TokenPooling",
    "TransformerBlock",
    "TransformerStack",
    "TubeletEmbedding",
    "VideoMAEDecoder",
    "VideoMAEEncoder",
    "VideoPreprocessing",
    "sinusoid_table",
    "with_preprocessing",
]
