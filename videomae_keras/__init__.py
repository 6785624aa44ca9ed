"""VideoMAE and VideoMAE V2 in Keras 3: the same models on JAX, TensorFlow and PyTorch.

`import videomae_keras` loads Keras and registers every VideoMAE layer and model with it, so
`keras.saving.load_model` reads `.keras` files made here. It changes nothing else in the
process (no environment variables, no redirected output). The `videomae-keras` command
starts through `videomae_keras_cli`, which defers this import until a command runs, so
`--help` answers without loading Keras.
"""

import importlib as _importlib
import sys as _sys

__version__ = "0.1.0"

# Public names and the module that defines each.
_EXPORTS = {
    "configs": None,
    "layers": None,
    "initializers": None,
    **dict.fromkeys(
        ["RandomMaskingGenerator", "RunningCellMaskingGenerator", "TubeMaskingGenerator",
         "random_tube_mask"], "videomae_keras.masking"),
    **dict.fromkeys(
        ["VideoMAE_ViTB16FT", "VideoMAE_ViTB16PT", "VideoMAE_ViTg14FT", "VideoMAE_ViTg14PT",
         "VideoMAE_ViTH16FT", "VideoMAE_ViTH16PT", "VideoMAE_ViTL16FT", "VideoMAE_ViTL16PT",
         "VideoMAE_ViTS16FT", "VideoMAE_ViTS16PT", "VideoMAEBackbone", "VideoMAEClassifier",
         "VideoMAEPretrainer"], "videomae_keras.models"),
    **dict.fromkeys(["from_pretrained", "load_pytorch_weights", "read_checkpoint"],
                    "videomae_keras.convert"),
    **dict.fromkeys(["extract_features", "optimize_for_inference", "predict_video"],
                    "videomae_keras.inference"),
    **dict.fromkeys(["Intermediates", "intermediates"], "videomae_keras.internals"),
    **dict.fromkeys(["Explanation", "explain_video"], "videomae_keras.explain"),
    **dict.fromkeys(["features_over_time", "predict_over_time"], "videomae_keras.over_time"),
    **dict.fromkeys(["ProbeResult", "linear_probe"], "videomae_keras.probe"),
    "reconstruct_video": "videomae_keras.reconstruction",
    "sample_video": "videomae_keras.demo",
    **dict.fromkeys(["VideoError", "VideoReader", "preprocess", "read_video"],
                    "videomae_keras.video"),
}


def __getattr__(name):
    module = _EXPORTS.get(name, "")
    if module == "":
        raise AttributeError(f"module 'videomae_keras' has no attribute {name!r}")
    if module is None:  # a submodule
        value = _importlib.import_module(f"videomae_keras.{name}")
    else:
        value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


def load_all():
    """Imports every public name now (and so registers all layers with Keras)."""
    for name in _EXPORTS:
        __getattr__(name)


if not getattr(_sys.modules.get("videomae_keras_cli"), "DEFER_PACKAGE_IMPORTS", False):
    load_all()
