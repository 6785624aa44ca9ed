"""A memory plan, measured not guessed: XLA's per-device memory analysis of the real training
step (model, loss, optimizer update, as `fit` compiles it) for a device mesh, and the largest
batch that fits on common accelerators.

`plan(...)` compiles in a child process on virtual CPU devices (JAX, whatever backend this
process runs), with abstract inputs and variables: nothing is allocated, so ViT-g plans on
a laptop. It compiles at the requested batch and at one more clip per replica, then for each
chip the largest batch per replica that fits, found from the nearest compiled points and
compiled itself (`largest_batches`): the total is not one straight line in the batch.

Why a flag: XLA's CPU pipeline expands the optimization barriers that `jax.checkpoint` puts
around a rematerialised block before its common-subexpression pass, which then merges the
recomputation with the forward pass: compiled for CPU, remat shows no saving (and more
temporaries) although accelerators keep it. The child disables that expansion
(`--xla_disable_hlo_passes=cse_barrier_expander`), so the compiled step keeps the
recomputation, as TPU and GPU compilers do. Attention is traced as accelerators run it,
through `keras.ops.dot_product_attention` (`utils.accelerator_attention`), not the CPU's
query-chunked path, whose chunks shrink as the batch grows (chunked, the program changed with
the batch, so the cost of one more clip was wrong, and grew to thousands of attention blocks
that took ViT-H fine-tuning 36 minutes and ViT-g past 18 GB of host memory to compile). On
CPU that op is XLA's composite with the whole (heads, N, N) score matrix; TPU's Splash and
GPU's cuDNN flash kernels keep less, so attention's share is an upper bound. Memory on a real
accelerator also depends on
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

# Measured: ViT-S fine-tuning at 16x224, fsdp with remat on 8 devices, 1 clip per device:
# temporaries 410 MiB in float32, 423 MiB with mixed_bfloat16 (ViT-L: 2032 and 2035 MiB):
# the CPU compiler computes bfloat16 through float32.
MIXED_PRECISION_NOTE = (
    "XLA's CPU compiler computes bfloat16 in float32 buffers (and keeps both copies), so "
    "with --mixed-precision these figures are upper bounds; TPU and GPU compilers keep "
    "bfloat16 activations at half the size.")


def plan(architecture, devices=8, distribution="fsdp", mesh=None, batch_size=None,
         remat=False, mixed_precision=False, accumulate=1, num_frames=16, image_size=224,
         num_classes=400, mask_ratio=0.9, check_fits=True, progress=True):
    """The memory plan of one training configuration (a dict; see `format_plan`).

    `architecture`: an architecture name (`presets.ARCHITECTURES`: "g14FT", "B16PT",
    "tinyFT", ...; FT plans fine-tuning, PT pretraining). `distribution`: None (one
    device), "data" or "fsdp" (with `mesh` "BxM"; default all devices on the batch axis).
    `batch_size`: the global batch (default one clip per replica). `check_fits`: compile the
    largest batch that fits each chip (`largest_batches`: a few compiles more); False
    extrapolates it from the requested batch and one more clip (two compiles; the figures
    can be far too large). Runs in a child process; `progress` passes its progress lines
    through to stderr.
    """
    arguments = dict(architecture=architecture, devices=int(devices), distribution=distribution,
                     mesh=mesh, batch_size=batch_size, remat=bool(remat),
                     mixed_precision=bool(mixed_precision), accumulate=int(accumulate),
                     num_frames=int(num_frames), image_size=int(image_size),
                     num_classes=int(num_classes), mask_ratio=float(mask_ratio),
                     check_fits=bool(check_fits))
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

    from videomae_keras.utils import accelerator_attention

    name = arguments["architecture"]
    pretraining = name.lower().endswith("pt")
    if not (pretraining or name.lower().endswith("ft")):
        raise ValueError(f"architecture must end in FT (fine-tuning) or PT (pretraining), e.g. "
                         f"g14FT; got {name!r}.")
    ways = _batch_ways(arguments)
    batch = arguments["batch_size"] or ways
    per_replica = batch // ways
    distribution = _distribution(arguments)
    what = "pretraining" if pretraining else "fine-tuning"
    _say(f"building {name} ({what}) with unallocated weights")
    compiled = {}  # clips per replica: XLA's figures
    totals = {}  # clips per replica: their total, what the estimates read

    def measure(clips, why):
        _say(f"compiling the training step for {clips} clip(s) per replica (global batch "
             f"{clips * ways}) on {arguments['devices']} CPU devices: {why}")
        compiled[clips] = _compile(model, distribution, clips * ways, pretraining)
        totals[clips] = compiled[clips]["total"]

    with accelerator_attention():  # the fused op, as on TPU and GPU: not the CPU's chunks
        model = _build(arguments, pretraining)
        measure(per_replica, "the requested batch")
        measure(per_replica + 1, "one more clip")
        if arguments["check_fits"]:
            fits = largest_batches(measure, totals)
        else:
            fits = {chip: _estimate(totals, size * GiB) for chip, size in CHIPS.items()}
    # the cost of one more clip between the two largest batches compiled (the slope there)
    below, top = sorted(compiled)[-2:]
    per_clip = (compiled[top]["total"] - compiled[below]["total"]) // (top - below)
    fixed = compiled[top]["total"] - top * per_clip
    measured = compiled[per_replica]
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
        "fits_checked": arguments["check_fits"],
        "compiled_totals": {str(n): compiled[n]["total"] for n in sorted(compiled)},
        "chips_gib": CHIPS,
        "backend": "XLA CPU, " + keras.backend.backend(),
        "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


MAX_CHECKS_PER_CHIP = 3


def largest_batches(measure, totals):
    """The largest batch per replica that fits each chip, each one compiled and measured.

    `totals`: {clips per replica: total bytes} compiled so far; `measure(clips, why)` compiles
    one more and adds it to `totals`. Per chip, smallest first: estimate from the nearest
    compiled points (`_estimate`), compile the estimate, and again from the new point when
    it does not fit (at most MAX_CHECKS_PER_CHIP compiles). Why not one straight line: the
    total is the peak over the step, a maximum of lines in the batch, so its slope grows
    where activations take over from the fixed part (sharded ViT-H fine-tuning with remat:
    0.50 GiB per clip from 1 to 2 clips per replica, 1.14 GiB from 8 to 9). The answer is
    the largest compiled batch that fits. When the first estimate fits, the next batch up does
    not (the slope only grows); when a later one does, it is a lower bound, short of the
    failing point above it by a clip or a few.
    """
    fits = {}
    for chip, size in sorted(CHIPS.items(), key=lambda item: item[1]):
        capacity = size * GiB
        for _ in range(MAX_CHECKS_PER_CHIP):
            clips = _estimate(totals, capacity)
            if clips is None or clips < 1 or clips in totals:
                break
            measure(clips, f"the estimate for {chip} ({size} GiB)")
        fitting = [n for n, total in totals.items() if total <= capacity]
        fits[chip] = None if clips is None else max(fitting, default=0)
    return {chip: fits[chip] for chip in CHIPS}


def _estimate(totals, capacity):
    """The largest batch per replica that a straight line through the nearest compiled points
    puts under `capacity`: between the largest fitting and the smallest failing point when
    both exist, else through the two largest (or two smallest) points. None when memory does
    not grow with the batch."""
    points = sorted(totals)
    fitting = [n for n in points if totals[n] <= capacity]
    failing = [n for n in points if totals[n] > capacity]
    if fitting and failing and min(failing) > max(fitting):
        low, high = max(fitting), min(failing)
    elif fitting:
        low, high = points[-2], points[-1]
    else:
        low, high = points[0], points[1]
    slope = (totals[high] - totals[low]) / (high - low)
    if slope <= 0:
        return None
    return max(0, low + math.floor((capacity - totals[low]) / slope))


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
        f"{result['replicas']}; " + ("each compiled and measured" if result["fits_checked"]
                                     else "extrapolated from this batch and one more clip, "
                                     "unchecked (--quick)") + "):",
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
