"""Small helpers shared by the models and the loaders."""

import contextlib
import functools

import numpy as np

import keras


def concrete_numpy(x):
    """A numpy copy of `x` when it holds values now (eager); None while it is being traced.

    Lets the models validate inputs with clear errors in eager calls without breaking
    `jax.jit`, `tf.function` or `torch.compile`, where values are not known.
    """
    if isinstance(x, (np.ndarray, np.generic, bool, int, float, list, tuple)):
        return np.asarray(x)
    if keras.utils.is_keras_tensor(x):
        return None
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    try:
        return keras.ops.convert_to_numpy(x)
    except Exception:  # symbolic values of any other kind
        return None


def dropout_if_active(layer, x, training):
    """`layer(x)` for a Dropout or DropPath layer that acts (training, rate > 0), else x: an
    idle Keras layer call still costs about 0.2 ms in eager torch, 4 of a block's 13 calls."""
    return layer(x, training=True) if training and layer.rate > 0 else x


def static_shape(x):
    """The shape of `x` as a tuple (None where unknown) for any backend's tensors and arrays."""
    shape = getattr(x, "shape", None)
    if shape is None:
        return np.shape(x)
    return tuple(None if d is None else int(d) for d in shape)


def resolve_flash_attention(flash_attention):
    """The `flash_attention` value to hand `keras.ops.dot_product_attention`.

    None means automatic. On torch, Keras' automatic mode probes flash support on every call
    (which torch.compile cannot trace), while passing False still lets torch's own
    scaled_dot_product_attention pick its fastest kernel, flash included; so automatic becomes
    False there. Elsewhere None is passed on and Keras decides (cuDNN flash on JAX GPUs).
    """
    if flash_attention is None and keras.backend.backend() == "torch":
        return False
    return flash_attention


_AS_ON_ACCELERATORS = []  # a stack, so accelerator_attention() nests


def fused_attention_is_fast():
    """Whether `keras.ops.dot_product_attention` has a fused kernel where this model runs.

    torch has one everywhere (scaled_dot_product_attention, flash on CPU too), and jax and
    tensorflow on GPU/TPU (cuDNN / Splash). On CPU, jax and tensorflow build the whole
    (heads, N, N) score matrix through a slow narrow-contraction dot; the attention layers
    then take a query-chunked path instead (per ViT-B layer at 16x224: 1.8x faster on
    jax, 1.35x on tensorflow, measured). Always true inside `accelerator_attention()`.
    """
    return bool(_AS_ON_ACCELERATORS) or _fused_kernel_here()


@contextlib.contextmanager
def accelerator_attention():
    """Attention layers traced inside take the fused op, as on GPU and TPU, on any device.

    For programs compiled here to stand for an accelerator's (the memory plan compiles a TPU's
    training step on CPU): the CPU path's query chunks depend on the batch, so they would
    change the program with the batch and put one block of ops per chunk into it.
    """
    with _pushed(_AS_ON_ACCELERATORS):
        yield


_FOR_ONNX = []  # a stack, so onnx_attention() nests


@contextlib.contextmanager
def onnx_attention():
    """Attention layers traced inside write plain softmax attention: per block one MatMul,
    Softmax, MatMul over heads-major tensors, the pattern ONNX runtimes fuse into their own
    attention kernels (`checkpoints.onnx_fusion` fuses it into onnxruntime's
    MultiHeadAttention for int8 files). For ONNX export only: the CPU's query chunks
    would put one block of ops per chunk into the file, in a form no runtime recognises."""
    with _pushed(_FOR_ONNX):
        yield


@contextlib.contextmanager
def _pushed(stack):
    """A mark on `stack` while inside: the attention modes above, which nest."""
    stack.append(True)
    try:
        yield
    finally:
        stack.pop()


def tracing_for_onnx():
    """Whether attention layers are being traced for an ONNX file (`onnx_attention()`)."""
    return bool(_FOR_ONNX)


@functools.lru_cache(maxsize=None)
def _fused_kernel_here():
    """`fused_attention_is_fast` for this process's backend and devices (fixed, so cached:
    attention layers ask on every eager call)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    return True
