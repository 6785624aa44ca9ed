"""Fast kernels that `keras.ops` does not reach, one function per job, each answering None
where it has nothing faster so the caller keeps Keras' own path. The only module with
backend branches: layers call these, never a backend directly.

`int8_linear`: on torch on the CPU, Keras' int8 matmul falls back to a plain integer
matmul with no fast kernel (about 7x slower than float32 for ViT-B); PyTorch's dynamic
quantized linear (fbgemm / oneDNN) takes the same int8 weights and scales instead.

`prepare_compiled_training`: on torch with `jit_compile=True`, Keras' train step starts
with `zero_grad()`, whose `grad is None` test torch.compile guards; gradients that exist
before the first step keep the second step from compiling everything again.
"""

import contextlib
import functools
import weakref

import keras

_PACKED = weakref.WeakKeyDictionary()  # Dense layer -> (weights' versions, packed weights)


def int8_linear(layer, inputs):
    """`inputs @ kernel + bias` of an int8-quantized Dense `layer` through the backend's
    fast int8 kernel, or None where there is none (then Keras' own int8 call runs)."""
    if not _torch_has_fast_int8():
        return None
    import torch

    if (not isinstance(inputs, torch.Tensor) or inputs.device.type != "cpu"
            or inputs.dtype != torch.float32
            or (torch.is_grad_enabled() and inputs.requires_grad)):
        return None
    packed = _packed_weights(layer, torch)
    return torch.ops.quantized.linear_dynamic(inputs, packed, True)


@functools.cache
def _torch_has_fast_int8():
    """Whether this is the torch backend with fbgemm's int8 kernels (x86 builds): asked once,
    since every int8 layer of every call asks."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return "fbgemm" in torch.backends.quantized.supported_engines


def _packed_weights(layer, torch):
    """The layer's int8 kernel (in, out) and its per-output scales as PyTorch's packed
    per-channel weights, packed once and again only after the variables change (loading
    weights into a quantized model assigns them in place, which bumps their versions)."""
    tensors = [layer._kernel.value, layer.kernel_scale.value]
    if layer.bias is not None:
        tensors.append(layer.bias.value)
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = _PACKED.get(layer)
    if cached is not None and cached[0] == key:
        return cached[1]
    kernel, scale = tensors[0].detach(), tensors[1].detach()
    # Keras: float = int8 / scale per output column; PyTorch: float = int8 * scale per row
    weight = torch._make_per_channel_quantized_tensor(
        kernel.t().contiguous(), (1.0 / scale).double(),
        torch.zeros_like(scale, dtype=torch.long), 0)
    bias = tensors[2].detach().float() if layer.bias is not None else None
    packed = torch.ops.quantized.linear_prepack(weight, bias)
    _PACKED[layer] = (key, packed)
    return packed


def prepare_compiled_training(model):
    """Gives each trainable weight of a torch.compile'd model a zero gradient before its
    first train step (a no-op elsewhere, and where the weight has one already).

    Keras' torch train step begins with `model.zero_grad()`; torch.compile guards on each
    weight's `grad is None`, which holds at the first step and fails at the second (the
    backward pass of the first left gradients), so the whole step compiled twice: 94 s then
    32 s more for a 2-block model on this 2-core CPU. The zeros cost the memory the
    gradients take from the first step on anyway, and `zero_grad` clears them as before.
    """
    if keras.backend.backend() != "torch" or not getattr(model, "jit_compile", False):
        return
    import torch

    with torch.no_grad():
        for variable in model.trainable_variables:
            value = variable.value
            if value.requires_grad and value.grad is None:
                value.grad = torch.zeros_like(value)


@contextlib.contextmanager
def no_gradients():
    """Eager calls that no backward pass follows: eager torch records every op for one (for
    the attention weights of `intermediates`, a second copy of each); the other backends
    record nothing outside a gradient computation."""
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    with torch.no_grad():
        yield


def value_and_gradient(fn, x):
    """(fn(x), d fn(x) / d x) for a scalar-valued `fn` of one tensor, through the backend's
    own autodiff (jax.value_and_grad, tf.GradientTape, torch.autograd); `fn` may call Keras
    layers."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn)(x)
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)
    import torch

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = fn(x)
        (gradient,) = torch.autograd.grad(value, x)
    return value.detach(), gradient


def slow_int8_note():
    """One line saying that int8 will not run faster than float32 on this backend and
    device, and which path does; None where int8 has a fast kernel (torch on the CPU; jax
    and tensorflow on a CPU with int8 dot-product instructions) or where it was never
    measured (accelerators, processors other than x86).

    Measured for ViT-B at batch 1, int8 against float32 in each backend: on an x86 CPU
    without VNNI (AMD Zen 3) jax and tensorflow took 1.01x and 1.00x the float32 time,
    torch 0.76x; on one with AVX-512 VNNI (Zen 4) jax 0.85x, tensorflow 0.89x, torch 0.48x.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        if _torch_has_fast_int8():
            return None
        return ("int8 on torch without fbgemm has no fast CPU kernel and runs slower than "
                "float32; use a PyTorch build with fbgemm (x86).")
    if not _on_cpu(backend) or cpu_has_int8_dot() is not False:
        return None
    return (f"int8 on {backend} on this CPU (no AVX-512 VNNI or AVX-VNNI) runs no faster "
            "than float32 (XLA's int8 matmul: about 1.0x the float32 time for ViT-B); for "
            "int8 speed use the torch backend (KERAS_BACKEND=torch: about 1.3-1.5x faster "
            "than float32 on such a CPU) or serve `videomae-keras port --format onnx-int8` "
            "with onnxruntime (the fastest: about 1.6x faster than float32 transformers there).")


@functools.cache
def cpu_has_int8_dot():
    """Whether this x86 CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or
    AMX), which XLA's int8 matmul needs to beat float32; None where that cannot be told
    (not x86, or no /proc/cpuinfo)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), None)
    except OSError:
        return None
    if flags is None:
        return None
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def _on_cpu(backend):
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")
    return True
