"""Data parallelism on the local devices, per backend.

- JAX: `keras.distribution.DataParallel` (each batch split over the devices, gradients
  averaged; also the way to use a TPU-VM's chips).
- TensorFlow: `tf.distribute.MirroredStrategy` (Keras' TF DTensor distribution is a
  prototype); build and compile the model inside the scope.
- PyTorch: no data-parallel support in Keras releases up to 3.15; use one device.
"""

import contextlib

import keras


def local_devices():
    """The devices a data-parallel run would use (names)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return ["cpu"]


@contextlib.contextmanager
def data_parallel(devices=None):
    """Build, compile and fit models inside this context to train data-parallel.

    `devices`: device names for JAX (default: all), logical device names for TensorFlow.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        distribution = keras.distribution.DataParallel(devices=devices)
        with distribution.scope():
            yield distribution
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=devices)
        with strategy.scope():
            yield strategy
    else:
        raise NotImplementedError(
            "Keras has no data-parallel training for the torch backend in its releases "
            "(up to 3.15); train on one device, or use the jax or tensorflow backend."
        )
