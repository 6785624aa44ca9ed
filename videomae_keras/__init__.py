"""VideoMAE and VideoMAE V2 in Keras 3: the same models on JAX, TensorFlow and PyTorch."""

import contextlib as _contextlib
import os as _os
import sys as _sys

# TensorFlow's C++ start-up chatter (CPU features, missing CUDA) would precede every
# command's output; users who set TF_CPP_MIN_LOG_LEVEL themselves keep their value.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@_contextlib.contextmanager
def _quiet_native_stderr():
    """Silences file descriptor 2 while TensorFlow loads: its GPU build logs "Could not
    find cuda drivers" from C++ on CPU-only machines whatever TF_CPP_MIN_LOG_LEVEL says.
    Python exceptions are unaffected; VIDEOMAE_KERAS_VERBOSE_IMPORT=1 keeps the output."""
    quiet = (
        _os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
        and "tensorflow" not in _sys.modules
        and not _os.environ.get("VIDEOMAE_KERAS_VERBOSE_IMPORT")
    )
    if not quiet:
        yield
        return
    try:
        _sys.stderr.flush()
        saved = _os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (some notebooks, services)
        yield
        return
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(devnull, 2)
        yield
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)
        _os.close(devnull)


with _quiet_native_stderr():
    import keras as _keras  # noqa: F401  (loads the backend once, quietly)

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
from videomae_keras.inference import extract_features, optimize_for_inference, predict_video
from videomae_keras.reconstruction import reconstruct_video
from videomae_keras.video import VideoError, VideoReader, preprocess, read_video

__version__ = "0.1.0"
