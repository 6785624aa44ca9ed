"""Whole models in and out of Keras' own files: a `.keras` file loaded in safe mode and a
model rebuilt with other constructor arguments, both without drawing the random weights
that loading replaces at once."""

import keras

from videomae_keras.initializers import build_for_loading


def load_keras_model(path):
    """A `.keras` file in Keras' safe mode (no code runs), without drawing random weights that
    the file then replaces."""
    import videomae_keras  # noqa: F401  (registers the layers for deserialisation)

    return build_for_loading(keras.saving.load_model, path, safe_mode=True)


def rebuild(model, **overrides):
    """A copy of a VideoMAE model with some constructor arguments changed (clip size, mask
    ratio, drop path, class names, ...) and the same weights."""
    arguments = {**model.arguments(), **overrides}
    copy = build_for_loading(type(model).from_arguments, **arguments)
    copy.set_weights(model.get_weights())
    return copy
