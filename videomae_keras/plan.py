"""A memory plan, measured not guessed: XLA's per-device memory analysis of the real training
step (model, loss, optimizer update, as `fit` compiles it) for a device mesh, and the largest
batch that fits on common accelerators.

`plan(...)` compiles in a child process on virtual CPU devices (JAX, whatever backend this
process runs), with abstract inputs and variables: nothing is allocated, so ViT-g plans on
a laptop. Two compiles: at the requested batch and at one more clip per replica, whose
difference is the memory of one clip; with it the fixed part gives the largest batch per
chip capacity (linear in the batch, as XLA's buffers are).

Why a flag: XLA's CPU pipeline expands the optimization barriers that `jax.checkpoint` puts
around a rematerialised block before its common-subexpression pass, which then merges the
recomputation with the forward pass: compiled for CPU, remat shows no saving (and more
temporaries) although accelerators keep it. The child disables that expansion
(`--xla_disable_hlo_passes=cse_barrier_expander`), so the compiled step keeps the
recomputation, as TPU and GPU compilers do. Memory on a real accelerator also depends on
its compiler's layouts and fusion; treat the figures as the CPU compiler's accounting of
the same program. The CPU compiler also runs bfloat16 through float32, so mixed-precision
plans are upper bounds (MIXED_PRECISION_NOTE).
"""

import json
import math
import os
import resource
import subprocess
import sys

GiB = 1024 ** 3

# Memory per chip (GiB), as the accelerators' documentation gives it. JAX on GPU
# preallocates 75% of it unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise.
CHIPS = {
    "TPU v5e": 16,
    "TPU v4": 32,
    "A100/H100": 80,
    "TPU v5p": 95,
    "H200": 141,
}

CPU_FLAGS = "--xla_disable_hlo_passes=cse_barrier_expander"

# Measured: ViT-S fine-tuning at 16x224, fsdp on 8 devices, 1 clip per device: temporaries
# 1634 MiB in float32, 2099 MiB with mixed_bfloat16 (2073 MiB with
# --xla_allow_excess_precision=false): the CPU compiler computes bfloat16 through float32.
MIXED_PRECISION_NOTE = (
    "XLA's CPU compiler computes bfloat16 in float32 buffers (and keeps both copies), so "
    "with --mixed-precision these figures are upper bounds; TPU and GPU compilers keep "
    "bfloat16 activations at half the size.")


def plan(architecture, devices=8, distribution="fsdp", mesh=None, batch_size=None,
         remat=False, mixed_precision=False, accumulate=1, num_frames=16, image_size=224,
         num_classes=400, mask_ratio=0.9, progress=True):
    """The memory plan of one training configuration (a dict; see `format_plan`).

    `architecture`: an architecture name (`presets.ARCHITECTURES`: "g14FT", "B16PT",
    "tinyFT", ...; FT plans fine-tuning, PT pretraining). `distribution`: None (one
    device), "data" or "fsdp" (with `mesh` "BxM"; default all devices on the batch axis).
    `batch_size`: the global batch (default one clip per replica). Runs in a child process;
    `progress` passes its progress lines through to stderr.
    """
    arguments = dict(architecture=architecture, devices=int(devices), distribution=distribution,
                     mesh=mesh, batch_size=batch_size, remat=bool(remat),
                     mixed_precision=bool(mixed_precision), accumulate=int(accumulate),
                     num_frames=int(num_frames), image_size=int(image_size),
                     num_classes=int(num_classes), mask_ratio=float(mask_ratio))
    _check(arguments)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = " ".join(filter(None, [
        env.get("XLA_FLAGS", ""),
        f"--xla_force_host_platform_device_count={arguments['devices']}", CPU_FLAGS]))
    with subprocess.Popen(
            [sys.executable, "-m", "videomae_keras.plan", json.dumps(arguments)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        others = []
        for line in child.stderr:  # ours through as they come, the libraries' kept back
            if line.startswith(_PREFIX):
                if progress:
                    print(line, end="", file=sys.stderr, flush=True)
            elif line.strip():
                others.append(line.strip())
        output = child.stdout.read().strip().splitlines()
    if child.returncode != 0 or not output:
        if child.returncode in (-9, 137):
            raise RuntimeError("the plan's compile was killed (signal 9), most likely out of "
                               "host memory: close other programs or plan on a larger host")
        errors = [line for line in others if not line.startswith(("I0000", "W0000", "WARNING"))]
        raise RuntimeError("the plan's compile failed: " + (errors[-1] if errors else
                                                            f"exit status {child.returncode}"))
    result = json.loads(output[-1])
    if "error" in result:
        raise ValueError(result["error"])
    return result


def _check(arguments):
    """One line for arguments that cannot make a plan, before the child starts."""
    from videomae_keras.options import DISTRIBUTIONS, parse_mesh

    devices, distribution = arguments["devices"], arguments["distribution"]
    if devices < 1:
        raise ValueError(f"devices must be at least 1; got {devices}.")
    if distribution not in (None,) + DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)} or None; got "
                         f"{distribution!r}.")
    if distribution is None and devices != 1:
        raise ValueError("a plan on one device takes devices=1; give distribution='data' or "
                         "'fsdp' for several.")
    if arguments["mesh"] and distribution != "fsdp":
        raise ValueError("mesh (--mesh) goes with distribution 'fsdp'.")
    ways = _batch_ways(arguments)
    if arguments["mesh"]:
        parse_mesh(arguments["mesh"], devices)
    batch = arguments["batch_size"]
    if batch is not None and (batch < 1 or batch % ways):
        raise ValueError(f"batch size {batch} does not split over the {ways} replicas; use a "
                         f"multiple of {ways}.")
    if arguments["accumulate"] < 1:
        raise ValueError(f"accumulate must be at least 1; got {arguments['accumulate']}.")


def _batch_ways(arguments):
    """Replicas the batch is split over: the batch axis of the mesh."""
    from videomae_keras.options import batch_ways

    return batch_ways(arguments["distribution"], arguments["mesh"], arguments["devices"])


_PREFIX = "videomae-keras plan: "


def _say(text):
    print(_PREFIX + text, file=sys.stderr, flush=True)


# --- the child process ------------------------------------------------------------------------

def _distribution(arguments):
    import keras

    from videomae_keras.options import parse_mesh
    from videomae_keras.training.distribute import FullyShardedDataParallel

    devices = keras.distribution.list_devices()[:arguments["devices"]]
    if len(devices) < arguments["devices"]:
        raise RuntimeError(f"{arguments['devices']} devices asked for, {len(devices)} present")
    if arguments["distribution"] == "fsdp":
        mesh = parse_mesh(arguments["mesh"], len(devices)) if arguments["mesh"] else None
        return FullyShardedDataParallel(mesh or (len(devices), 1), devices=devices)
    return keras.distribution.DataParallel(devices=devices)


def _build(arguments, pretraining):
    """The model and its compiled optimizer with deferred (unallocated) variables."""
    import keras

    from videomae_keras.models.factories import build
    from videomae_keras.losses import SmoothedCrossentropy
    from videomae_keras.training.optimizers import finetuning_optimizer, pretraining_optimizer

    name = arguments["architecture"]
    kwargs = dict(num_frames=arguments["num_frames"], image_size=arguments["image_size"],
                  remat=arguments["remat"],
                  dtype="mixed_bfloat16" if arguments["mixed_precision"] else None)
    if pretraining:
        kwargs["mask_ratio"] = arguments["mask_ratio"]
    else:
        kwargs.update(num_classes=arguments["num_classes"], drop_path_rate=0.1)
    # variables get shapes and layouts, no values (on exit the scope would initialise them)
    with keras.StatelessScope(initialize_variables=False):
        model = build(name, **kwargs)
    batch = 8 * arguments["accumulate"]
    if pretraining:  # optimizers hold a few scalar variables, created outside the scope
        optimizer = pretraining_optimizer(1000, batch, accumulate=arguments["accumulate"])
        model.compile(optimizer=optimizer)
    else:
        optimizer = finetuning_optimizer(model, 1000, batch, accumulate=arguments["accumulate"])
        model.compile(optimizer=optimizer,
                      loss=SmoothedCrossentropy(arguments["num_classes"], 0.1))
    with keras.StatelessScope(initialize_variables=False):
        optimizer.build(model.trainable_variables)
    return model


def _compile(model, distribution, batch, pretraining):
    """XLA's memory analysis of `model.train_step` for a global `batch`, compiled as Keras'
    JAX `fit` does (state donated, state shardings kept)."""
    import jax

    def variable(v):
        layout = distribution.get_variable_layout(v)
        return jax.ShapeDtypeStruct(tuple(v.shape), v.dtype, sharding=layout.backend_layout)

    def data(shape, dtype):
        layout = distribution.get_data_layout(shape)
        return jax.ShapeDtypeStruct(shape, dtype, sharding=layout.backend_layout)

    state = tuple([variable(v) for v in group] for group in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
        model.metrics_variables))
    video = data((batch,) + tuple(model.video_shape), "float32")
    inputs = ((video, data((batch, model.num_tokens), "bool")),) if pretraining else \
        (video, data((batch,), "int32"))
    with distribution.scope():
        step = jax.jit(model.train_step, donate_argnums=0,
                       out_shardings=(None, tuple([s.sharding for s in g] for g in state)))
        memory = step.lower(state, inputs).compile().memory_analysis()
    arguments = memory.argument_size_in_bytes
    outputs = memory.output_size_in_bytes
    temporaries = memory.temp_size_in_bytes
    aliased = memory.alias_size_in_bytes
    model_state = sum(_shard_bytes(s) for g in state[:3] for s in g)
    replicated = sum(_shard_bytes(s) for g in state[:3] for s in g
                     if s.sharding.is_fully_replicated)
    return {"arguments": arguments, "outputs": outputs, "temporaries": temporaries,
            "aliased": aliased, "total": arguments + outputs + temporaries - aliased,
            "model_state": model_state, "replicated_state": replicated}


def _shard_bytes(spec):
    import numpy as np

    shape = spec.sharding.shard_shape(spec.shape)
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize


def run_plan(arguments):
    """The plan, in this process (the child: JAX with the devices already set up)."""
    import keras

    name = arguments["architecture"]
    pretraining = name.lower().endswith("pt")
    if not (pretraining or name.lower().endswith("ft")):
        raise ValueError(f"architecture must end in FT (fine-tuning) or PT (pretraining), e.g. "
                         f"g14FT; got {name!r}.")
    ways = _batch_ways(arguments)
    batch = arguments["batch_size"] or ways
    distribution = _distribution(arguments)
    what = "pretraining" if pretraining else "fine-tuning"
    _say(f"building {name} ({what}) with unallocated weights")
    model = _build(arguments, pretraining)
    figures = []
    for step, global_batch in enumerate((batch, batch + ways), 1):
        _say(f"compiling the training step for batch {global_batch} on "
             f"{arguments['devices']} CPU devices ({step}/2)")
        figures.append(_compile(model, distribution, global_batch, pretraining))
    measured, one_more = figures
    per_clip = one_more["total"] - measured["total"]  # one more clip per replica
    per_replica = batch // ways
    fixed = measured["total"] - per_replica * per_clip
    fits = {chip: (max(0, math.floor((size * GiB - fixed) / per_clip)) if per_clip > 0
                   else None) for chip, size in CHIPS.items()}
    return {
        "architecture": name, "task": what, "devices": arguments["devices"],
        "distribution": arguments["distribution"] or "single",
        "mesh": "x".join(map(str, getattr(distribution, "mesh_shape", (ways, 1)))),
        "batch_size": batch, "batch_per_replica": per_replica, "replicas": ways,
        "remat": arguments["remat"], "mixed_precision": arguments["mixed_precision"],
        "accumulate": arguments["accumulate"],
        "clip": [arguments["num_frames"], arguments["image_size"]],
        "parameters": int(sum(math.prod(v.shape) for v in model.weights)),
        "per_device_bytes": measured,
        "per_clip_bytes": per_clip,
        "fixed_bytes": fixed,
        "max_batch_per_replica": fits,
        "chips_gib": CHIPS,
        "backend": "XLA CPU, " + keras.backend.backend(),
        "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def format_plan(result):
    """The plan as the lines `videomae-keras plan` prints."""
    memory = result["per_device_bytes"]

    def gib(value):
        if abs(value) < GiB:
            return f"{value / 2 ** 20:8.1f} MiB"
        return f"{value / GiB:8.2f} GiB"

    modes = [m for m, on in (("remat", result["remat"]),
                             ("mixed_bfloat16", result["mixed_precision"])) if on]
    if result["accumulate"] > 1:
        modes.append(f"accumulate {result['accumulate']}")
    frames, size = result["clip"]
    lines = [
        f"{result['architecture']} {result['task']}, {frames}x{size} clips, "
        f"{result['distribution']} on mesh {result['mesh']} ({result['devices']} devices), "
        f"batch {result['batch_size']} ({result['batch_per_replica']} per replica)"
        + (", " + ", ".join(modes) if modes else ""),
        "per device (XLA memory analysis of the compiled training step):",
        f"  arguments    {gib(memory['arguments'])}  weights, optimizer state, batch",
        f"  outputs      {gib(memory['outputs'])}  new state, loss",
        f"  temporaries  {gib(memory['temporaries'])}  activations and workspace",
        f"  aliased     -{gib(memory['aliased'])[1:]}  donated state, counted twice",
        f"  total        {gib(memory['total'])}",
        f"  of which weights and optimizer state {gib(memory['model_state']).strip()}, one more "
        f"clip per replica {gib(result['per_clip_bytes']).strip()}",
        "largest batch per replica that fits (global = x "
        f"{result['replicas']}; linear from this batch and one more clip per replica: "
        "confirm far larger ones with --batch-size):",
    ]
    for chip, size in result["chips_gib"].items():
        fits = result["max_batch_per_replica"][chip]
        text = "does not fit" if fits == 0 else ("?" if fits is None else str(fits))
        lines.append(f"  {chip:<10} {size:>4} GiB  {text}")
    if result["mixed_precision"]:
        lines.append("note: " + MIXED_PRECISION_NOTE)
    return lines


if __name__ == "__main__":  # the child of `plan`
    try:
        print(json.dumps(run_plan(json.loads(sys.argv[1]))))
    except (ValueError, RuntimeError) as e:
        print(json.dumps({"error": str(e).strip().splitlines()[0]}))
