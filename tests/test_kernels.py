"""`videomae_keras.kernels`: the fast int8 linear that torch's int8 Dense layers take (the
same result as Keras' own int8 call, within int8's error), and the one-line note where int8
has no kernel faster than float32."""

import warnings

import numpy as np
import pytest

import keras
from videomae_keras import kernels
from videomae_keras.layers.common import Dense

TORCH = keras.backend.backend() == "torch"


def _quantized_dense(seed, activation=None, use_bias=True):
    rng = np.random.default_rng(seed)
    layer = Dense(48, activation=activation, use_bias=use_bias, dtype="float32", name="fc")
    layer.build((None, 64))
    weights = [rng.standard_normal((64, 48)).astype("float32") * 0.1]
    if use_bias:
        weights.append(rng.standard_normal(48).astype("float32"))
    layer.set_weights(weights)
    float_layer = keras.layers.Dense(48, activation=activation, use_bias=use_bias)
    float_layer.build((None, 64))
    float_layer.set_weights(weights)
    layer.quantize("int8")
    return layer, float_layer


@pytest.mark.parametrize("activation,use_bias", [(None, True), ("gelu", True), (None, False)])
def test_int8_dense_is_close_to_float(activation, use_bias):
    """Our Dense quantizes (Keras refuses subclasses) and its int8 call, whichever kernel
    runs it, stays within int8's error of the float layer."""
    layer, float_layer = _quantized_dense(1, activation, use_bias)
    assert layer.quantization_mode == "int8"
    x = np.random.default_rng(2).standard_normal((2, 10, 64)).astype("float32")
    expected = keras.ops.convert_to_numpy(float_layer(x))
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == expected.shape
    assert not np.array_equal(got, expected)
    assert np.abs(got - expected).mean() < 0.02 * expected.std()


@pytest.mark.skipif(not TORCH, reason="the fast int8 kernel is torch's")
def test_torch_takes_the_fast_kernel_and_repacks_after_new_weights():
    import torch

    layer, float_layer = _quantized_dense(3)
    x = torch.as_tensor(np.random.default_rng(4).standard_normal((5, 64)).astype("float32"))
    with torch.no_grad():
        fast = kernels.int8_linear(layer, x)
    assert fast is not None
    keras_own = keras.ops.convert_to_numpy(keras.layers.Dense._int8_call(layer, x))
    assert np.abs(fast.numpy() - keras_own).mean() < 0.02 * keras_own.std()
    # new int8 weights (as load_weights assigns them) are packed again, not served stale
    other, _ = _quantized_dense(5)
    for variable, value in zip(layer.weights, other.weights):
        variable.assign(value)
    with torch.no_grad():
        repacked = kernels.int8_linear(layer, x).numpy()
        expected = keras.ops.convert_to_numpy(keras.layers.Dense._int8_call(other, x))
    assert np.abs(repacked - expected).mean() < 0.02 * expected.std()
    # with gradients asked for, Keras' own (differentiable) int8 call runs
    assert kernels.int8_linear(layer, x.clone().requires_grad_(True)) is None


@pytest.mark.parametrize("int8_dot", [False, True])
def test_int8_says_where_it_is_not_faster(int8_dot, monkeypatch):
    """jax and tensorflow gain from int8 only on CPUs with int8 dot-product instructions
    (measured 1.0x without VNNI, 1.12-1.18x with); torch's kernel gains on both."""
    from videomae_keras.inference import optimize_for_inference
    from videomae_keras.models import VideoMAEClassifier

    monkeypatch.setattr(kernels, "cpu_has_int8_dot", lambda: int8_dot)
    model = VideoMAEClassifier.from_arguments(num_classes=3, num_frames=2, image_size=16,
                                              patch_size=8, hidden_dim=16, depth=1,
                                              num_heads=2, mlp_dim=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimize_for_inference(model, jit_compile=False, int8=True)
    notes = [str(w.message) for w in caught if "int8 on" in str(w.message)]
    if TORCH or int8_dot:
        assert notes == []
    else:
        assert len(notes) == 1 and "KERAS_BACKEND=torch" in notes[0]
        assert "--format onnx-int8" in notes[0]
        assert "no AVX-512 VNNI" in notes[0] and "\n" not in notes[0]
