"""The reusable model test (keras-hub's `run_backbone_test` / `run_task_test`): one call checks
what every VideoMAE model must do, whatever its task or size."""

import os

import numpy as np

import keras


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _randomise(model, seed=0):
    """Every weight drawn at random, so a round trip that loses or swaps one shows."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])


def run_model_test(model, inputs, expected_shape, folder, jit=True):
    """Builds and calls `model` on `inputs` and checks that
    - the output has `expected_shape`, is finite, and matches the symbolic output shape;
    - `from_config(get_config())` gives the same config and, with the weights, the same output;
    - a `.keras` file (loaded in safe mode), a `.weights.h5` file and a preset folder give the
      same model and output;
    - (jax and tensorflow, `jit`) an XLA-compiled predict gives the eager output (1e-5,
      relative to the outputs' largest magnitude).
    """
    _randomise(model)
    expected = _np(model(inputs))
    assert expected.shape == expected_shape, (expected.shape, expected_shape)
    assert np.isfinite(expected).all()
    assert tuple(model.output.shape[1:]) == expected_shape[1:]

    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(_np(clone(inputs)), expected)

    path = os.path.join(folder, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)  # safe mode: no code in the file runs
    assert type(restored) is type(model) and restored.get_config() == model.get_config()
    np.testing.assert_array_equal(_np(restored(inputs)), expected)

    weights = os.path.join(folder, "model.weights.h5")
    model.save_weights(weights)
    fresh = type(model).from_config(model.get_config())
    fresh.load_weights(weights)
    np.testing.assert_array_equal(_np(fresh(inputs)), expected)

    preset = model.save_to_preset(os.path.join(folder, "preset"))
    loaded = type(model).from_preset(preset)
    np.testing.assert_array_equal(_np(loaded(inputs)), expected)

    if jit and keras.backend.backend() in ("jax", "tensorflow"):
        model.compile(jit_compile=True)
        # float32 rounding relative to the outputs' size (random weights give outputs ~20)
        tolerance = 1e-5 * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(model.predict(inputs, verbose=0), expected, atol=tolerance)
