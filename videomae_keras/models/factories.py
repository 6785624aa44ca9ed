"""One-line constructors for the released architectures, VideoMAE_ViT{S,B,L,H}16{FT,PT} and
VideoMAE_ViTg14{FT,PT}, each a line over the presets (`videomae_keras.presets`)."""

from videomae_keras import presets
from videomae_keras.models.classifier import VideoMAEClassifier
from videomae_keras.models.pretrainer import VideoMAEPretrainer


def build(architecture, **kwargs):
    """A randomly initialised model of an architecture name ("B16FT", "VideoMAE_ViTg14PT",
    "tinyPT", see `presets.ARCHITECTURES`); keyword arguments override the preset's."""
    _, task = presets.architecture(architecture)
    cls = VideoMAEClassifier if task == "classifier" else VideoMAEPretrainer
    return cls.from_arguments(**presets.arguments(architecture, **kwargs))


def VideoMAE_ViTS16FT(num_classes=400, **kwargs):
    """ViT-S/16 classifier (384 wide, 12 blocks, 6 heads): 22.0M parameters at 400 classes."""
    return build("S16FT", num_classes=num_classes, **kwargs)


def VideoMAE_ViTB16FT(num_classes=400, **kwargs):
    """ViT-B/16 classifier (768 wide, 12 blocks, 12 heads): 86.5M parameters at 400 classes."""
    return build("B16FT", num_classes=num_classes, **kwargs)


def VideoMAE_ViTL16FT(num_classes=400, **kwargs):
    """ViT-L/16 classifier (1024 wide, 24 blocks, 16 heads): 304.3M parameters at 400 classes."""
    return build("L16FT", num_classes=num_classes, **kwargs)


def VideoMAE_ViTH16FT(num_classes=400, **kwargs):
    """ViT-H/16 classifier (1280 wide, 32 blocks, 16 heads): 632.1M parameters at 400 classes."""
    return build("H16FT", num_classes=num_classes, **kwargs)


def VideoMAE_ViTg14FT(num_classes=710, **kwargs):
    """VideoMAE V2 ViT-g/14 classifier (1408 wide, 40 blocks, MLP 6144): 1012.6M at 710 classes."""
    return build("g14FT", num_classes=num_classes, **kwargs)


def VideoMAE_ViTS16PT(**kwargs):
    """ViT-S/16 pretraining model, decoder 192 wide x 4 blocks: 24.0M parameters."""
    return build("S16PT", **kwargs)


def VideoMAE_ViTB16PT(**kwargs):
    """ViT-B/16 pretraining model, decoder 384 wide x 4 blocks: 94.2M parameters."""
    return build("B16PT", **kwargs)


def VideoMAE_ViTL16PT(**kwargs):
    """ViT-L/16 pretraining model, decoder 512 wide x 12 blocks (V1): 343.0M parameters."""
    return build("L16PT", **kwargs)


def VideoMAE_ViTH16PT(**kwargs):
    """ViT-H/16 pretraining model, V1 decoder 640 wide x 12 blocks. The released V1 ViT-H
    pretrained file holds the encoder only."""
    return build("H16PT", **kwargs)


def VideoMAE_ViTg14PT(**kwargs):
    """VideoMAE V2 ViT-g/14 pretraining model, decoder 512 wide x 4 blocks, head 1176."""
    return build("g14PT", **kwargs)
