#!/usr/bin/env python
"""GPU speed in bfloat16: ours on each backend against transformers' VideoMAE (SDPA).

Usage: python bench/gpu.py [--variants transformers,jax,tensorflow,torch-compile]
                           [--cases ...] [--budget 450] [--repeats 10] [--warmup 2]
                           [--no-readme] | --readme | --smoke [--out PATH]

Cases, in this order (16 frames at 224x224, random weights: speed does not depend on them):
  ft-B-b8, ft-B-b32  fine-tuned ViT-B/16 inference (400 classes), batch 8 and 32, in
                     bfloat16 (weights and compute)
  train-B-b32        one ViT-B pretraining train step at 90% tube masking (forward, loss,
                     backward, AdamW update) in mixed bfloat16: float32 weights, bfloat16
                     compute
  ft-L-b8, ft-L-b32  fine-tuned ViT-L/16 inference, as for ViT-B

Variants, each in its own process: transformers (PyTorch, attn_implementation="sdpa";
inference in torch.inference_mode, the train step under torch.autocast with fused AdamW);
jax and tensorflow (jit_compile: XLA); torch-compile (jit_compile=True, i.e. torch.compile);
torch (eager; not in the default run, for quick checks). jax asks for flash attention
(flash_attention=True, cuDNN) and falls back to flash_attention=False, with a note, where
that fails; tensorflow has no flash kernel in Keras; on torch attention is left to
scaled_dot_product_attention, which picks flash where it can (forcing it puts an untraceable
check into every attention layer under torch.compile). Each row records the kernel that ran.
Every call is synchronised: ours return numpy (logits) or floats (the loss), transformers'
steps end in torch.cuda.synchronize(). A variant whose packages are missing gets "skipped"
rows; a failing case an "error" row with its one-line reason.

The whole run keeps to --budget seconds (default 450, so it ends inside 8 minutes): each
variant gets an equal share of what is left, a case that would not fit in its share is
skipped with a note, and a variant still running at the end of its share is stopped (the
cases it finished are kept). Progress goes to stderr. Writes bench/results/gpu.json and the
README's GPU table (between the gpu markers; --no-readme leaves it; --readme rewrites it
from the JSON alone). Needs a GPU: without one it says so and exits with status 1.

--smoke runs the same code paths on the CPU with tiny models (2 blocks, 2 frames at 32x32,
batch 1 and 2), eager torch in place of torch-compile unless --variants names it (compiling
takes minutes on a CPU even for these): about 1.5 minutes on 2 busy cores, most of it
imports and XLA compiling. It writes its JSON to --out (default: a file in the temporary
folder, never bench/results/gpu.json) and leaves the README alone.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402
from speed import parse_case  # noqa: E402

VARIANTS = ("transformers", "jax", "tensorflow", "torch-compile")
EXTRA_VARIANTS = ("torch",)
SMOKE_VARIANTS = ("transformers", "jax", "tensorflow", "torch")
# The train step before ViT-L: where the budget runs short (torch.compile takes minutes per
# case), the ViT-B cases, which have CPU figures beside them, are the ones kept.
CASES = ("ft-B-b8", "ft-B-b32", "train-B-b32", "ft-L-b8", "ft-L-b32")
SMOKE_CASES = ("ft-B-b1", "ft-B-b2", "train-B-b2", "ft-L-b1", "ft-L-b2")
FRAMES, SIZE, MASK_RATIO = 16, 224, 0.9
# --smoke: the same factories with these arguments on top (2 frames at 32x32, 16 tokens).
SMOKE_MODEL = dict(num_frames=2, image_size=32, patch_size=8, depth=2, mlp_dim=128)
SMOKE_WIDTH = {"B": dict(hidden_dim=64, num_heads=2), "L": dict(hidden_dim=96, num_heads=3)}
SMOKE_DECODER = dict(decoder_hidden_dim=32, decoder_depth=1, decoder_num_heads=2,
                     decoder_mlp_dim=64)
BUDGET_S = 450
GRACE_S = 10  # a child may overrun its share by this much before it is stopped
FIRST_CASE_S = {False: 20.0, True: 1.0}  # what a case is assumed to take before one has run
BACKEND = {"transformers": "torch", "jax": "jax", "tensorflow": "tensorflow",
           "torch-compile": "torch", "torch": "torch"}
NEEDS = {"transformers": ("torch", "transformers"), "jax": ("keras", "jax"),
         "tensorflow": ("keras", "tensorflow"), "torch-compile": ("keras", "torch"),
         "torch": ("keras", "torch")}
# Fused attention kernels of the flash kind (tiled, the score matrix never in memory):
# FlashAttention, and cuDNN's fused attention, which jax's "cudnn" and torch's
# CUDNN_ATTENTION (what torch picks for bfloat16 on Hopper) both run.
FLASH_KERNELS = {"flash", "cudnn"}
MARK = "@@RESULT@@"  # what _common.emit puts before a worker's JSON line
BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"
NO_FIGURE = ("No GPU figure exists yet: `bench/gpu.py` has not been run on a GPU. The "
             "command above writes this table.\n")


# ---------------------------------------------------------------------------------------------
# What a case builds: the same arguments for our models and transformers'.


def model_arguments(kind, size, smoke):
    """Keyword arguments on top of our factory's preset for one case's model (the
    architecture, frames and size; for pretraining the mask ratio)."""
    if smoke:
        arguments = dict(SMOKE_MODEL, **SMOKE_WIDTH[size])
        if kind == "train":
            arguments.update(SMOKE_DECODER)
    else:
        arguments = dict(num_frames=FRAMES, image_size=SIZE)
    if kind == "train":
        arguments["mask_ratio"] = MASK_RATIO
    else:
        arguments["num_classes"] = 10 if smoke else 400
    return arguments


def architecture(kind, size):
    """Our architecture name of a case: "B16FT", or "B16PT" for the train step."""
    return f"{size}16{'PT' if kind == 'train' else 'FT'}"


def full_arguments(kind, size, smoke):
    """Every argument of the case's model that sizes it or that transformers' config needs
    (the signature defaults the presets leave out included)."""
    from videomae_keras import presets
    from videomae_keras.configs import OFFICIAL_EPSILONS

    base = dict(num_frames=FRAMES, image_size=SIZE, tubelet_size=2, num_channels=3,
                qv_bias=True, use_mean_pooling=True, **OFFICIAL_EPSILONS)
    return dict(base, **presets.arguments(architecture(kind, size),
                                          **model_arguments(kind, size, smoke)))


def make_inputs(kind, batch, arguments, seed=0):
    """(video float32 (B, T, H, W, 3), tube mask bool (B, tokens) or None) as numpy."""
    import keras
    import numpy as np

    from videomae_keras.configs import grid_size
    from videomae_keras.masking import random_tube_mask

    frames, size = arguments["num_frames"], arguments["image_size"]
    rng = np.random.default_rng(seed)
    video = rng.standard_normal((batch, frames, size, size, 3)).astype("float32")
    if kind != "train":
        return video, None
    grid = grid_size(frames, size, arguments["patch_size"], arguments["tubelet_size"])
    mask = random_tube_mask(batch, grid, MASK_RATIO, seed=seed)
    return video, np.asarray(keras.ops.convert_to_numpy(mask), bool)


def attention_shapes(kind, batch, arguments, mask=None):
    """The (batch, heads, tokens, head_dim) that the model's attention layers see: the
    encoder over every token (fine-tuned) or the visible ones, the decoder over all."""
    tokens = (arguments["num_frames"] // arguments["tubelet_size"]
              * (arguments["image_size"] // arguments["patch_size"]) ** 2)
    heads = arguments["num_heads"]
    if kind != "train":
        return [(batch, heads, tokens, arguments["hidden_dim"] // heads)]
    visible = tokens - int(mask[0].sum())
    decoder_heads = arguments["decoder_num_heads"]
    return [(batch, heads, visible, arguments["hidden_dim"] // heads),
            (batch, decoder_heads, tokens, arguments["decoder_hidden_dim"] // decoder_heads)]


# ---------------------------------------------------------------------------------------------
# Worker side: one variant, its cases in turn, one JSON line per case.


def one_line(error):
    """An exception as one short line for a table cell: its first line that says something
    (Keras wraps a layer's error in "Exception encountered when calling ..." and colours)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines
             if line and not line.startswith("Exception encountered when calling")]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")[:240]


def finite(output):
    """Whether a step's output (torch tensor, numpy array, float or a list of them) is
    finite: a step that computes NaNs is not timed as if it worked."""
    import numpy as np

    if isinstance(output, (list, tuple)):
        return all(finite(item) for item in output)
    if hasattr(output, "detach"):
        output = output.detach().float().cpu().numpy()
    return bool(np.isfinite(np.asarray(output, dtype="float32")).all())


def time_step(step, repeats, warmup):
    """{seconds (median), runs, first_call_s (compiling included)} of a synchronised step;
    ValueError if its first output is not finite."""
    start = time.perf_counter()
    output = step()
    first = time.perf_counter() - start
    if not finite(output):
        raise ValueError("the step's output is not finite")
    seconds, runs = _common.median_seconds(step, repeats, warmup=warmup)
    return {"seconds": seconds, "runs": runs, "first_call_s": first}


def sdpa_kernel(shapes, device, training):
    """The kernel torch's scaled_dot_product_attention picks for these shapes in bfloat16
    ("flash", "efficient", "cudnn", "math"; several joined by "+"), as torch.compile and
    eager both ask it: (name, whether every shape gets flash)."""
    import torch

    names = set()
    try:
        from torch.nn.attention import SDPBackend

        for batch, heads, tokens, head_dim in shapes:
            q = torch.zeros(batch, heads, tokens, head_dim, dtype=torch.bfloat16,
                            device=device, requires_grad=training)
            choice = SDPBackend(torch._fused_sdp_choice(q, q, q)).name
            names.add(choice.replace("_ATTENTION", "").lower())
    except Exception as error:  # a private helper: its absence must not lose the timing
        return f"unknown ({one_line(error)})", False
    return "+".join(sorted(names)), bool(names) and names <= FLASH_KERNELS


def check_device(variant, smoke):
    """None, or why this process's backend cannot run the GPU cases (it sees no GPU)."""
    if smoke:
        return None
    backend = BACKEND[variant]
    if backend == "torch":
        import torch

        return None if torch.cuda.is_available() else "torch sees no GPU"
    if backend == "jax":
        import jax

        platform = jax.default_backend()
        return None if platform == "gpu" else f"jax sees no GPU (its backend is {platform})"
    import tensorflow as tf

    return None if tf.config.list_physical_devices("GPU") else "tensorflow sees no GPU"


def transformers_case(case, smoke, repeats, warmup):
    """transformers' model for one case, timed: bfloat16 weights under inference_mode, or
    the train step (float32 weights, autocast to bfloat16, AdamW) for "train"."""
    import torch
    import transformers

    from videomae_keras.convert.transformers import arguments_to_config

    kind, size, batch = parse_case(case)
    device = "cpu" if smoke else "cuda"
    arguments = full_arguments(kind, size, smoke)
    task = "pretrainer" if kind == "train" else "classifier"
    config = transformers.VideoMAEConfig(**arguments_to_config(arguments, task),
                                         attn_implementation="sdpa")
    cls = (transformers.VideoMAEForPreTraining if kind == "train"
           else transformers.VideoMAEForVideoClassification)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: ViT-L on the host takes seconds
        model = cls(config)
    video, mask = make_inputs(kind, batch, arguments)
    pixels = torch.from_numpy(video.transpose(0, 1, 4, 2, 3).copy()).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if kind == "train":
        masks = torch.from_numpy(mask).to(device)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                      weight_decay=0.05, fused=device == "cuda")

        def step():
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                loss = model(pixel_values=pixels, bool_masked_pos=masks).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            return loss.detach()
    else:
        model = model.to(torch.bfloat16).eval()
        pixels = pixels.to(torch.bfloat16)

        def step():
            with torch.inference_mode():
                logits = model(pixel_values=pixels).logits
            sync()
            return logits

    result = time_step(step, repeats, warmup)
    kernel, flash = sdpa_kernel(attention_shapes(kind, batch, arguments, mask), device,
                                kind == "train")
    return dict(result, attention=kernel, flash=flash,
                attn_implementation=model.config._attn_implementation)


def set_flash_attention(model, value):
    """Sets `flash_attention` on every attention layer of a built model. The factories do
    not take it; the layers read it when the (compiled) call is traced, so setting it
    before the first call is enough."""
    from videomae_keras.layers.attention import MultiHeadSelfAttention

    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, MultiHeadSelfAttention)]
    for layer in layers:
        layer.flash_attention = value
    return len(layers)


class JaxAttentionWatch:
    """Records which implementations of jax.nn.dot_product_attention the traced model used.

    Keras' jax backend tries implementation="cudnn" when flash attention is asked for and
    quietly falls back to "xla" when that raises; wrapping the function for the time of a
    case tells which one ran, and why cuDNN did not."""

    def __init__(self):
        self.used, self.failures = set(), []

    def __enter__(self):
        import jax

        self._original = original = jax.nn.dot_product_attention

        def watched(*args, **kwargs):
            implementation = kwargs.get("implementation")
            try:
                out = original(*args, **kwargs)
            except Exception as error:
                self.failures.append(f"{implementation}: {one_line(error)}")
                raise
            self.used.add(implementation or "default")
            return out

        jax.nn.dot_product_attention = watched
        return self

    def __exit__(self, *exc):
        import jax

        jax.nn.dot_product_attention = self._original

    def kernel(self):
        """(name, flash used): "cudnn" where cuDNN's fused attention ran, "xla" where the
        composed softmax ran, "query-chunked" where our layer skipped the fused op (CPU)."""
        if "cudnn" in self.used:
            return "cudnn", True
        return ("xla", False) if self.used else ("query-chunked", False)


def keras_case(variant, case, smoke, repeats, warmup, flash_failures):
    """Our model for one case on this process's backend. jax asks for flash attention and,
    if that fails, measures again with flash_attention=False and says why; the reason is
    kept in `flash_failures` by kind ("ft", "train"), so later cases of that kind do not
    build a model only to fail again."""
    if variant != "jax":
        return _keras_measure(variant, case, smoke, repeats, warmup, flash=None)
    kind = parse_case(case)[0]
    if kind not in flash_failures:
        try:
            return _keras_measure(variant, case, smoke, repeats, warmup, flash=True)
        except Exception as error:
            flash_failures[kind] = one_line(error)
            _release(variant)
    note = f"flash_attention=True failed ({flash_failures[kind]}); ran with False"
    return dict(_keras_measure(variant, case, smoke, repeats, warmup, flash=False), note=note)


def _keras_measure(variant, case, smoke, repeats, warmup, flash):
    """Builds, compiles and times our model for one case with `flash_attention=flash`."""
    import contextlib

    import keras

    from videomae_keras.models import factories
    from videomae_keras.training.optimizers import pretraining_optimizer

    kind, size, batch = parse_case(case)
    arguments = full_arguments(kind, size, smoke)
    factory = getattr(factories, f"VideoMAE_ViT{architecture(kind, size)}")
    dtype = "mixed_bfloat16" if kind == "train" else "bfloat16"
    model = factory(dtype=dtype, **model_arguments(kind, size, smoke))
    set_flash_attention(model, flash)
    video, mask = make_inputs(kind, batch, arguments)
    video = keras.ops.convert_to_tensor(video)  # on the device, as transformers' pixels
    jit = variant != "torch"
    if kind == "train":
        model.compile(optimizer=pretraining_optimizer(1000, batch, 1.5e-4, 10),
                      jit_compile=jit)
        masks = keras.ops.convert_to_tensor(mask)
        step = lambda: model.train_on_batch([video, masks])  # noqa: E731
    else:
        model.compile(jit_compile=jit)
        step = lambda: model.predict_on_batch(video)  # noqa: E731
    watch = JaxAttentionWatch() if variant == "jax" else contextlib.nullcontext()
    with watch:
        result = time_step(step, repeats, warmup)
    if variant == "jax":
        kernel, used = watch.kernel()
        if watch.failures and not used:
            result["note"] = "cuDNN attention failed: " + watch.failures[0]
    elif BACKEND[variant] == "torch":
        kernel, used = sdpa_kernel(attention_shapes(kind, batch, arguments, mask),
                                   "cpu" if smoke else "cuda", kind == "train")
    else:
        from videomae_keras.utils import fused_attention_is_fast

        kernel, used = ("xla" if fused_attention_is_fast() else "query-chunked"), False
        result["note"] = "Keras' tensorflow backend has no flash attention"
    return dict(result, attention=kernel, flash=used, flash_attention=flash, dtype=dtype)


def _release(variant):
    """Frees one case's model and compiled programs before the next case."""
    import gc

    if variant != "transformers":
        import keras

        keras.backend.clear_session()
    if BACKEND[variant] == "torch":
        import torch

        if variant == "torch-compile":
            torch._dynamo.reset()  # else batch 32 after batch 8 recompiles with dynamic shapes
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    gc.collect()


def worker(variant, cases, smoke, repeats, warmup, deadline):
    """Runs the cases in turn and emits one JSON line per case as it ends, so that what
    finished survives a stop at the deadline. A case that would not end before the deadline
    (judged by the case before it) is skipped."""
    problem = check_device(variant, smoke)
    estimate = FIRST_CASE_S[smoke]
    flash_failures = {}
    for case in cases:
        if problem:
            _common.emit({"case": case, "status": "error", "note": problem})
            continue
        if time.time() + estimate > deadline:
            _common.emit({"case": case, "status": "skipped",
                          "note": "skipped: it would not end inside the time budget"})
            continue
        start = time.time()
        try:
            if variant == "transformers":
                result = dict(transformers_case(case, smoke, repeats, warmup), status="ok")
            else:
                result = dict(keras_case(variant, case, smoke, repeats, warmup, flash_failures),
                              status="ok")
        except Exception as error:  # one failing case must not hide the others
            result = {"status": "error", "note": one_line(error)}
        _release(variant)
        result["case_s"] = estimate = time.time() - start
        _common.emit({"case": case, **result})


# ---------------------------------------------------------------------------------------------
# Driver side.


def missing_module(variant):
    """None, or which package that the variant needs is not installed (then its rows say
    "skipped" and no process is started for it)."""
    for name in NEEDS[variant]:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    return None


def gpu_name():
    """The first GPU's name (nvidia-smi, else torch), or None where none is found."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30)
        if done.returncode == 0 and done.stdout.strip():
            name, _, driver = done.stdout.strip().splitlines()[0].partition(",")
            return f"{name.strip()} (driver {driver.strip()})"
    except (OSError, subprocess.TimeoutExpired):
        pass
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return None


def run_child(variant, args, timeout, on_answer):
    """Runs `gpu.py --worker variant args` in a process group of its own, calling
    `on_answer` with each JSON line as it comes; stops the group after `timeout` seconds.
    Returns (answers, None) or (answers, why it ended early)."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND[variant])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "--smoke" in args:  # the CPU, even on a machine with a GPU
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    command = [sys.executable, os.path.abspath(__file__), "--worker", variant] + list(args)
    answers = []
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr,
                                 text=True, start_new_session=True)

        def read():
            for line in child.stdout:
                if line.startswith(MARK):
                    answers.append(json.loads(line[len(MARK):]))
                    on_answer(answers[-1])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            child.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            pass
        finally:  # also on Ctrl-C: the group (torch.compile's workers too) goes with it
            reason = None
            if child.poll() is None:
                reason = f"stopped at the end of its {timeout:.0f} s share of the budget"
            # always: workers that outlive a finished child would hold its stdout open
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        reader.join(timeout=10)
        if reason is None and child.returncode != 0:
            stderr.seek(0)
            tail = [line.strip() for line in stderr.read().splitlines() if line.strip()][-2:]
            reason = f"exit {child.returncode}: " + " | ".join(tail)
    return answers, reason


def run_variant(variant, cases, args, deadline):
    """The rows of one variant: its worker's answers, and for cases it did not answer a
    row saying why (skipped: the budget ran out; error: the process failed)."""
    share = deadline - time.time()
    print(f"[{variant}] {', '.join(cases)} (share {share:.0f} s) ...", file=sys.stderr,
          flush=True)

    def progress(answer):
        shown = (f"{answer['seconds'] * 1e3:.1f} ms, attention {answer['attention']}"
                 if answer.get("status") == "ok" else answer.get("note", answer.get("status")))
        print(f"[{variant}] {answer['case']}: {shown}", file=sys.stderr, flush=True)

    worker_args = ["--cases", ",".join(cases), "--repeats", str(args.repeats),
                   "--warmup", str(args.warmup), "--deadline", repr(deadline)]
    answers, failure = run_child(variant, worker_args + (["--smoke"] if args.smoke else []),
                                 share + GRACE_S, progress)
    by_case = {answer["case"]: answer for answer in answers}
    rows = []
    for case in cases:
        answer = by_case.get(case)
        if answer is None:
            stopped = failure and failure.startswith("stopped")
            answer = {"status": "skipped" if stopped else "error",
                      "note": f"{'skipped' if stopped else 'error'}: {failure or 'not run'}"}
        rows.append({"case": case, "backend": variant, **answer})
    return rows


def run(variants, cases, args):
    """Every variant in turn inside the budget; the rows with ms, clips/s and ratios."""
    end = time.time() + args.budget
    missing = {variant: missing_module(variant) for variant in variants}
    runnable = [variant for variant in variants if missing[variant] is None]
    rows = []
    for variant in variants:
        if missing[variant]:
            print(f"[{variant}] skipped: {missing[variant]}", file=sys.stderr, flush=True)
            rows += [{"case": case, "backend": variant, "status": "skipped",
                      "note": f"skipped: {missing[variant]}"} for case in cases]
            continue
        left = len(runnable) - runnable.index(variant)
        rows += run_variant(variant, cases, args, time.time() + (end - time.time()) / left)
    for row in rows:
        if row.get("status") == "ok":
            row["ms"] = row["seconds"] * 1e3
            row["clips_per_s"] = parse_case(row["case"])[2] / row["seconds"]
    return _common.add_ratios(rows)


def flash_cell(row):
    """'yes (cudnn)', 'no (xla)', ... for the table; empty where the case did not run."""
    if "attention" not in row:
        return None
    return f"{'yes' if is_flash(row['attention']) else 'no'} ({row['attention']})"


def is_flash(attention):
    """Whether an attention name ("cudnn", "flash+efficient", ...) is all flash-kind kernels."""
    return set(attention.split("+")) <= FLASH_KERNELS


def render(payload):
    """The GPU table as Markdown, with a line saying what and where it measured."""
    info = payload["machine"]
    versions = ", ".join(f"{k} {info[k]}" for k in ("keras", "jax", "tensorflow", "torch",
                                                     "transformers") if k in info)
    rows = [dict(row, flash_used=flash_cell(row)) for row in payload["rows"]]
    lines = [f"Measured with `{payload['command']}` on {info.get('gpu', 'no GPU')} "
             f"({versions}); {payload['frames']} frames at {payload['image_size']}x"
             f"{payload['image_size']}, inference in bfloat16, the train step in mixed "
             f"bfloat16 at {payload['mask_ratio']:.0%} masking; median of {payload['repeats']} "
             f"calls after {payload['warmup']} warm-up calls (x transformers: ours / "
             f"transformers' SDPA, below 1 is faster). The whole run took "
             f"{payload['elapsed_s']:.0f} s.", "",
             _common.table(rows, [("case", "case"), ("backend", "variant"),
                                  ("ms", "median ms"), ("clips_per_s", "clips/s"),
                                  ("ratio", "x transformers"), ("flash_used", "flash used"),
                                  ("note", "note")])]
    return "\n".join(lines) + "\n"


def update_readme(payload):
    """Puts the table of a GPU run into the README (never a smoke run's)."""
    if payload.get("smoke"):
        raise SystemExit("That JSON is from a --smoke run: its figures are not GPU figures.")
    _common.replace_readme_block(BEGIN, END, render(payload))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--variants", help="comma-separated, of " + ", ".join(
        VARIANTS + EXTRA_VARIANTS) + " (default: all but torch; --smoke: all but torch-compile)")
    parser.add_argument("--cases", help="comma-separated, of " + ", ".join(CASES)
                        + " (default: all; --smoke: " + ", ".join(SMOKE_CASES) + ")")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds for the whole run (default {BUDGET_S})")
    parser.add_argument("--repeats", type=int, help="timed calls per case (default 10)")
    parser.add_argument("--warmup", type=int, help="untimed calls after the first (default 2)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models on the CPU: tests the code paths, measures nothing")
    parser.add_argument("--out", help="JSON path (default bench/results/gpu.json; --smoke: "
                                      "a file in the temporary folder)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--readme", action="store_true",
                        help="only put the table of bench/results/gpu.json into README.md")
    args = parser.parse_args()
    args.repeats = args.repeats or (2 if args.smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    cases = args.cases.split(",") if args.cases else list(SMOKE_CASES if args.smoke else CASES)

    wrong = [case for case in cases if not re.fullmatch(r"(ft-[BL]|train-B)-b[1-9][0-9]*", case)]
    if wrong:
        parser.error(f"unknown cases {wrong}: ft-B-bN, ft-L-bN or train-B-bN")
    if args.worker:
        worker(args.worker, cases, args.smoke, args.repeats, args.warmup, args.deadline)
        return
    if args.readme:
        update_readme(_common.load("gpu"))
        return
    variants = ([v.strip() for v in args.variants.split(",") if v.strip()] if args.variants
                else list(SMOKE_VARIANTS if args.smoke else VARIANTS))
    unknown = sorted(set(variants) - set(VARIANTS + EXTRA_VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from "
                     f"{', '.join(VARIANTS + EXTRA_VARIANTS)}")
    gpu = None if args.smoke else gpu_name()
    if gpu is None and not args.smoke:
        raise SystemExit("No GPU found (nvidia-smi and torch.cuda see none): bench/gpu.py "
                         "measures on a GPU; --smoke runs its code paths on the CPU.")
    start = time.time()
    rows = run(variants, cases, args)
    payload = {"machine": dict(_common.machine(), gpu=gpu or "CPU (--smoke)"),
               "smoke": args.smoke, "frames": SMOKE_MODEL["num_frames"] if args.smoke
               else FRAMES, "image_size": SMOKE_MODEL["image_size"] if args.smoke else SIZE,
               "mask_ratio": MASK_RATIO, "repeats": args.repeats, "warmup": args.warmup,
               "budget_s": args.budget, "elapsed_s": time.time() - start, "rows": rows,
               "command": _common.command()}
    out = args.out or (os.path.join(tempfile.gettempdir(), "videomae-keras-gpu-smoke.json")
                       if args.smoke else None)
    path = _common.save("gpu", payload, out)
    print(render(payload))
    print(f"written: {path}")
    if not (args.smoke or args.no_readme):
        full = args.out is None and args.cases is None and args.variants is None
        ran = {row["backend"] == "transformers" for row in rows if row.get("status") == "ok"}
        if full and ran == {True, False}:
            update_readme(payload)
            print("and the README's GPU table")
        else:
            print("README.md left alone: the table needs a full run (all cases and variants, "
                  "bench/results/gpu.json) with transformers and ours; --readme rewrites it "
                  "from that JSON", file=sys.stderr)


if __name__ == "__main__":
    main()
