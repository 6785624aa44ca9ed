"""Training on several devices: data parallelism, and sharded weights on JAX.

`data_parallel()`, per backend:
- JAX: `keras.distribution.DataParallel` (each batch split over the devices, gradients
  averaged; also the way to use a TPU-VM's chips).
- TensorFlow: `tf.distribute.MirroredStrategy` (Keras' TF DTensor distribution is a
  prototype); build and compile the model inside the scope.
- PyTorch: no data-parallel support in Keras releases up to 3.15; use one device.

`fully_sharded(mesh)` (JAX): `keras.distribution.ModelParallel` over a `batch` x `model`
device mesh whose layouts split every weight matrix over the devices, so weights, gradients
and optimizer moments (which take their weight's layout) are divided instead of copied; XLA
inserts the gathers and reductions. See `FullyShardedDataParallel`.
"""

import contextlib

import keras

from videomae_keras import options
from videomae_keras.options import DISTRIBUTIONS, parse_mesh  # noqa: F401 (re-exported)


def shard_axes(shape, sizes):
    """A layout for a weight of `shape` on mesh axes `sizes` ({name: size}): each axis of
    size > 1 on its own dimension, the largest dimensions first, only where the size divides
    the dimension; None (replicated) elsewhere. Vectors (biases, norms) stay replicated."""
    axes = [None] * len(shape)
    if len(shape) < 2:
        return tuple(axes)
    free = sorted(range(len(shape)), key=lambda i: -int(shape[i]))
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        if size <= 1:
            continue
        for dim in free:
            if int(shape[dim]) % size == 0 and int(shape[dim]) >= size:
                axes[dim] = name
                free.remove(dim)
                break
    return tuple(axes)


class FullyShardedDataParallel(keras.distribution.ModelParallel):
    """`keras.distribution.ModelParallel` over a (batch, model) device mesh that shards every
    weight matrix (qkv, attention projection, MLP, patch embedding, encoder_to_decoder,
    decoder, heads: each weight of two or more dimensions) over both mesh axes.

    Batches are split along the `batch` axis (B-way data parallelism). Each weight matrix is
    split along the `batch` axis too (fully sharded data parallelism: a replica group holds
    1/B of it and XLA gathers it where it is used) and along the `model` axis (M-way, so XLA
    splits the matmuls between the devices of a group). Weights, gradients and the
    optimizer's moments therefore take 1/(B*M) of their size per device, where each sharded
    dimension divides evenly (`shard_axes` picks the dimensions); biases and norms are
    replicated. A mesh Bx1 is pure fully sharded data parallelism, 1xM splits the matmuls only.

    Layouts given in `layout_map` (regexes of variable paths, Keras' rules) take precedence.
    """

    def __init__(self, mesh=(None, 1), devices=None, layout_map=None, auto_shard_dataset=True):
        devices = devices or keras.distribution.list_devices()
        batch, model = mesh
        if batch is None:
            batch = len(devices) // model
        device_mesh = keras.distribution.DeviceMesh((batch, model), ("batch", "model"), devices)
        if layout_map is None:
            layout_map = keras.distribution.LayoutMap(device_mesh)
        super().__init__(layout_map=layout_map, batch_dim_name="batch",
                         auto_shard_dataset=auto_shard_dataset)
        self.mesh_shape = (batch, model)

    def get_variable_layout(self, variable):
        layout = super().get_variable_layout(variable)  # its own, or the layout map's
        if any(axis is not None for axis in layout.axes):
            return layout
        batch, model = self.mesh_shape
        axes = shard_axes(tuple(variable.shape), {"batch": batch, "model": model})
        return keras.distribution.TensorLayout(axes, self.device_mesh)


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
def fully_sharded(mesh=(None, 1), devices=None):
    """Build, compile and fit models inside this context to train with sharded weights
    (JAX only): `mesh` (batch, model), e.g. (2, 4), or "2x4"; the default (None, 1) puts
    every device on the batch axis (weights sharded over all of them). See
    `FullyShardedDataParallel`."""
    if keras.backend.backend() != "jax":
        raise NotImplementedError(
            "Sharded training (--distribution fsdp) runs on the jax backend "
            "(keras.distribution shards variables only there); on "
            f"{keras.backend.backend()} use --distribution data, or set KERAS_BACKEND=jax."
        )
    if isinstance(mesh, str):
        mesh = parse_mesh(mesh, len(devices or keras.distribution.list_devices()))
    # several processes feed their own shares of each batch (a PyDataset cannot be sharded)
    distribution = FullyShardedDataParallel(mesh, devices=devices,
                                            auto_shard_dataset=process_count() == 1)
    with distribution.scope():
        yield distribution


def batch_ways(distribution=None, mesh=None):
    """Into how many parts each batch is split here (see `options.batch_ways`)."""
    if distribution in (None, "none", "single"):
        return 1
    devices = len(keras.distribution.list_devices()) if keras.backend.backend() == "jax" \
        else len(local_devices())
    return options.batch_ways(distribution, mesh, devices)


def check_batch_size(batch_size, distribution=None, mesh=None):
    """ValueError unless `batch_size` splits evenly over the batch's devices."""
    ways = batch_ways(distribution, mesh)
    if int(batch_size) % ways:
        raise ValueError(
            f"batch size {batch_size} does not split over the {ways} devices of the batch "
            f"axis ({distribution}); use a multiple of {ways}."
        )


def distribution_scope(distribution=None, mesh=None):
    """The context a run builds, compiles and fits in: None (one device), "data" (see
    `data_parallel`) or "fsdp" (see `fully_sharded`, with `mesh` "BxM")."""
    if distribution in (None, "none", "single"):
        if mesh:
            raise ValueError("mesh= (--mesh) goes with distribution='fsdp' (--distribution fsdp).")
        return contextlib.nullcontext()
    if distribution == "data":
        if mesh:
            raise ValueError("mesh= (--mesh) goes with distribution='fsdp'; 'data' uses every "
                             "local device on one batch axis.")
        return data_parallel()
    if distribution == "fsdp":
        return fully_sharded(mesh or (None, 1))
    raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)} (or None); got "
                     f"{distribution!r}.")


@contextlib.contextmanager
def data_parallel(devices=None):
    """Build, compile and fit models inside this context to train data-parallel.

    `devices`: device names for JAX (default: all), logical device names for TensorFlow.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        distribution = keras.distribution.DataParallel(
            devices=devices, auto_shard_dataset=process_count() == 1)
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


# --- several processes (multi-host) -------------------------------------------------------------

def initialize(coordinator=None, num_processes=None, process_id=None):
    """Joins this process to a multi-process (multi-host) JAX run through
    `keras.distribution.initialize` (`jax.distributed` underneath); call it before anything
    touches a device. `coordinator` "HOST:PORT" is process 0's address, reachable by all;
    each process gives the same `num_processes` and its own `process_id`. Without a
    coordinator it initialises only on a TPU VM slice of several workers (TPU_WORKER_HOSTNAMES
    lists more than one host; JAX finds its peers), or from Keras' KERAS_DISTRIBUTION_*
    variables; elsewhere it does nothing. Returns (process_id, process_count)."""
    import os

    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("a multi-process run needs all three of --coordinator HOST:PORT, "
                         "--num-processes P and --process-id I (coordinator=, num_processes=, "
                         "process_id=).")
    automatic = (len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h])
                 > 1 or bool(os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")))
    if not any(given) and not automatic:
        return process_index(), process_count()
    if keras.backend.backend() != "jax":
        raise NotImplementedError(f"multi-process runs use the jax backend; this process runs "
                                  f"{keras.backend.backend()} (set KERAS_BACKEND=jax).")
    if all(given):
        num_processes, process_id = int(num_processes), int(process_id)
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"process id {process_id} must lie in [0, {num_processes}) for "
                             f"{num_processes} processes.")
        if ":" not in str(coordinator):
            raise ValueError(f"coordinator must be HOST:PORT (process 0's address); got "
                             f"{coordinator!r}.")
    import jax

    if jax.distributed.is_initialized():
        return process_index(), process_count()
    try:
        if all(given):
            keras.distribution.initialize(str(coordinator), num_processes, process_id)
        else:
            keras.distribution.initialize()
    except RuntimeError as e:
        if "before any JAX" in str(e) or "initialize" in str(e).lower():
            raise RuntimeError("the multi-process run must start before anything uses a device "
                               "in this process: call videomae_keras.training.distribute."
                               "initialize first (the CLI does)") from e
        raise
    return process_index(), process_count()


def process_index():
    """This process's index in a multi-process JAX run (0 otherwise)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index() if jax.distributed.is_initialized() else 0


def process_count():
    """Processes in the run (1 unless `initialize` joined several)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_main_process():
    """Whether this process writes the run's files (process 0)."""
    return process_index() == 0


def barrier(name):
    """Every process waits here until all have arrived (a no-op in one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def whole_values(model):
    """Within, every variable of `model` and its optimizer holds its whole value on this
    host, gathered from all processes (a collective: every process enters it, in the same
    order), so Keras can save it; the sharded values come back on exit. No distribution is
    set within: what saving creates (Keras builds reference objects with variables) stays
    on this process, where a variable laid out over the mesh would need every process. A
    no-op in one process."""
    if process_count() == 1:
        yield
        return
    from jax.experimental import multihost_utils

    variables, seen = [], set()
    optimizer = getattr(model, "optimizer", None)
    for variable in list(model.variables) + list(getattr(optimizer, "variables", [])):
        if id(variable) not in seen:
            seen.add(id(variable))
            variables.append(variable)
    swapped = []
    distribution = keras.distribution.distribution()
    try:
        for variable in variables:
            value = variable._value
            if value is not None and not getattr(value, "is_fully_addressable", True):
                whole = multihost_utils.process_allgather(value, tiled=True)
                swapped.append((variable, value))
                variable._value = whole
        keras.distribution.set_distribution(None)
        yield
    finally:
        keras.distribution.set_distribution(distribution)
        for variable, value in swapped:
            variable._value = value
