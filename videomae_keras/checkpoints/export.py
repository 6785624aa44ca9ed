"""SavedModel (TF Serving) and ONNX files of the Keras models, made through TensorFlow.

Both exporters need the TensorFlow backend. `export_files` works from any backend: under
another backend it runs the export in a TensorFlow subprocess that loads the model's `.keras`
file. SavedModels carry `serving_default` (float32 normalised clips) and, by default,
`serving_uint8` (uint8 frames of the model's size, scaled by 1/255 and normalised with the
ImageNet mean and std inside the graph). `run_saved_model` runs an exported file in a fresh
TensorFlow process, the way a server would see it.

Run as `python -m videomae_keras.checkpoints.export ...` this module is that subprocess.
"""

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import keras

from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD
from videomae_keras.utils import onnx_attention

OUTPUT_NAMES = {"classifier": "logits", "pretrainer": "predictions", "backbone": "tokens"}


def task_of(model):
    from videomae_keras import models

    if isinstance(model, models.VideoMAEPretrainer):
        return "pretrainer"
    if isinstance(model, models.VideoMAEBackbone):
        return "backbone"
    return "classifier"


def takes_mask(model):
    return getattr(model, "num_masked", None) is not None


def input_specs(model):
    """[(name, shape, dtype)] of the model's inputs with a free batch axis."""
    specs = [("video", (None, *model.video_shape), "float32")]
    if takes_mask(model):
        specs.append(("bool_masked_pos", (None, model.num_tokens), "bool"))
    if getattr(model, "num_decoded", None) is not None:  # VideoMAE V2 dual masking
        specs.append(("decoder_mask", (None, model.num_tokens), "bool"))
    return specs


def _require_tensorflow():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "This export runs on the TensorFlow backend; use export_files(), which switches to "
            "a TensorFlow subprocess, or set KERAS_BACKEND=tensorflow."
        )
    import tensorflow as tf

    return tf


def normalize_uint8(frames, tf):
    """uint8 frames -> float32 model input: x / 255, then ImageNet mean and std."""
    mean = tf.constant(IMAGENET_MEAN, tf.float32)
    std = tf.constant(IMAGENET_STD, tf.float32)
    return (tf.cast(frames, tf.float32) / 255.0 - mean) / std


def export_saved_model(model, path, uint8_signature=True):
    """Writes a SavedModel for TF Serving at `path` (TensorFlow backend).

    Written with tf.saved_model.save on a tf.Module that tracks each variable once (Keras'
    ExportArchive stores every weight twice, doubling the file).
    """
    tf = _require_tensorflow()
    output = OUTPUT_NAMES[task_of(model)]
    specs = [tf.TensorSpec(shape, dtype, name=name) for name, shape, dtype in input_specs(model)]

    def run(inputs):
        inputs = inputs[0] if len(inputs) == 1 else list(inputs)
        return {output: model(inputs, training=False)}

    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]  # the raw tf.Variables
    module.serve = tf.function(lambda *inputs: run(inputs), input_signature=specs)
    signatures = {"serving_default": module.serve.get_concrete_function()}
    if uint8_signature:
        frames = tf.TensorSpec(specs[0].shape, tf.uint8, name="frames")
        module.serve_uint8 = tf.function(
            lambda frames, *rest: run((normalize_uint8(frames, tf), *rest)),
            input_signature=[frames, *specs[1:]],
        )
        signatures["serving_uint8"] = module.serve_uint8.get_concrete_function()
    tf.saved_model.save(module, path, signatures=signatures)


# Above this many bytes of weights, ONNX files keep their tensors in a `.data` file beside them
# (a single protobuf message cannot exceed 2 GB).
ONNX_EXTERNAL_DATA_BYTES = 1800 * 1024**2


def weights_bytes(model):
    return sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)


def export_onnx(model, path, opset_version=None, external_data=None):
    """Writes an ONNX file at `path` (TensorFlow backend, through tf2onnx).

    Inputs are named as the model's (`video`, `bool_masked_pos`), the output after the task
    (`logits`, `predictions`, `tokens`). Models with more than about 1.8 GB of weights (ViT-H,
    ViT-g; the environment variable VIDEOMAE_KERAS_ONNX_EXTERNAL_DATA_BYTES moves the
    threshold), or any model with `external_data=True`, are written in ONNX's external-data form:
    the graph in `path` and the tensors in `path + ".data"` beside it, which onnxruntime reads
    when given `path`.
    """
    tf = _require_tensorflow()
    try:
        import onnx
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX export needs tf2onnx and onnx: pip install tf2onnx onnx") from None
    try:  # Keras' compatibility patch of tf2onnx for numpy 2
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:
        pass
    output = OUTPUT_NAMES[task_of(model)]
    specs = [tf.TensorSpec(shape, dtype, name=name) for name, shape, dtype in input_specs(model)]

    def run(*inputs):
        inputs = inputs[0] if len(inputs) == 1 else list(inputs)
        return {output: model(inputs, training=False)}

    function = tf.function(run, input_signature=specs)
    if external_data is None:
        threshold = int(os.environ.get("VIDEOMAE_KERAS_ONNX_EXTERNAL_DATA_BYTES",
                                       ONNX_EXTERNAL_DATA_BYTES))
        external_data = weights_bytes(model) > threshold
    with onnx_attention(), _node_protos_renewed():  # plain attention: the form runtimes fuse
        proto, storage = tf2onnx.convert.from_function(
            function, input_signature=specs, opset=opset_version, large_model=external_data,
            custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        )
    if not external_data:
        onnx.save_model(proto, path)
        return
    # tf2onnx keeps large tensors in its own storage; put them back and let onnx write them
    # to one `.data` file in the standard external-data layout.
    for tensor in _all_tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}["location"]
            tensor.raw_data = storage.name_to_tensor_data[location]
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data", size_threshold=1024)


@contextlib.contextmanager
def _node_protos_renewed():
    """Holds tf2onnx's memory to a few copies of the weights instead of one per optimizer pass.

    tf2onnx's optimizers (36 passes for ViT-B) end each pass by rewriting every node's
    NodeProto in place: its attributes, constants' weights included, are deleted and copied in
    again. Under protobuf's upb runtime a message's memory is only given back when the whole
    message goes, so every pass left one more copy of the weights behind: 12 GB above the
    model for ViT-B. Here each rewrite starts from a new NodeProto holding the node's other
    fields, and the old one is freed. tf2onnx also deep-copies the whole graph before each
    pass, to fall back on it should the pass fail; those copies wait for Python's cycle
    collector, several at a time. Unless TF2ONNX_CATCH_ERRORS says otherwise, the passes
    run on the graph itself, as tf2onnx already does in its external-data form: a failing
    pass then stops the export with its error instead of being skipped. The graph written
    is the same computation, the same operators on the same tensors (checked node by node
    for ViT-B, outputs equal bit for bit); node order and generated names may differ.
    """
    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(node, external_tensor_storage=None):
        renewed = type(node._op)()
        for field, value in node._op.ListFields():
            if field.name == "attribute":
                continue
            repeated = (field.is_repeated if hasattr(field, "is_repeated")  # protobuf >= 5
                        else field.label == field.LABEL_REPEATED)
            if repeated:
                getattr(renewed, field.name).extend(value)
            elif field.message_type is not None:
                getattr(renewed, field.name).CopyFrom(value)
            else:
                setattr(renewed, field.name, value)
        node._op = renewed
        return original(node, external_tensor_storage)

    Node.update_proto = update_proto
    user_set = "TF2ONNX_CATCH_ERRORS" in os.environ
    os.environ.setdefault("TF2ONNX_CATCH_ERRORS", "FALSE")
    try:
        yield
    finally:
        Node.update_proto = original
        if not user_set:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: TensorFlow's exact GELU uses Erfc, which ONNX lacks; write 1 - Erf."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype=dtype))
    erf = ctx.make_node("Erf", [node.input[0]])
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    node.type = "Sub"


def _all_tensors(graph):
    from videomae_keras.checkpoints.onnx_fusion import subgraphs

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
        for subgraph in subgraphs(node):
            yield from _all_tensors(subgraph)


def export_files(model, keras_file, saved_model=None, onnx=None):
    """Exports `model` (saved at `keras_file`) to a SavedModel and/or ONNX file, from any
    backend. The paths are written as given (callers make them temporary for atomicity)."""
    if keras.backend.backend() == "tensorflow":
        if saved_model:
            export_saved_model(model, saved_model)
        if onnx:
            export_onnx(model, onnx)
        return
    command = ["export", keras_file]
    if saved_model:
        command += ["--saved-model", saved_model]
    if onnx:
        command += ["--onnx", onnx]
    _run_tensorflow_worker(command)


def _run_tensorflow_worker(arguments):
    # The worker imports this package from wherever this process did (installed or not).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path,
               VIDEOMAE_KERAS_PARENT_PID=str(os.getpid()))
    # subprocess.run kills the worker when this process is interrupted (Ctrl-C, SIGTERM);
    # the worker ends itself when this process dies outright (see _die_with_parent)
    process = subprocess.run(
        [sys.executable, "-m", "videomae_keras.checkpoints.export", *arguments],
        env=env,
        capture_output=True,
        text=True,
    )
    if process.returncode != 0:
        tail = "\n".join(process.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"The TensorFlow export process failed:\n{tail}")
    return process.stdout


def run_saved_model(path, inputs, signature="serving_default", jit_compile=False):
    """Runs a SavedModel signature in a fresh TensorFlow process; returns {output: array}.

    `inputs` maps input names to arrays. With `jit_compile` the signature runs inside a
    `tf.function(jit_compile=True)`, i.e. under XLA.
    """
    return run_saved_model_many(path, [(signature, inputs, jit_compile)])[0]


def run_saved_model_many(path, runs):
    """Several (signature, inputs, jit_compile) runs of one SavedModel in one fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        manifest = []
        for i, (signature, inputs, jit_compile) in enumerate(runs):
            feed = os.path.join(folder, f"in{i}.npz")
            np.savez(feed, **inputs)
            manifest.append({"signature": signature, "inputs": feed, "xla": bool(jit_compile),
                             "outputs": os.path.join(folder, f"out{i}.npz")})
        manifest_path = os.path.join(folder, "runs.json")
        with open(manifest_path, "w", encoding="utf-8") as f:
            json.dump(manifest, f)
        _run_tensorflow_worker(["run-saved-model", path, manifest_path])
        results = []
        for run in manifest:
            with np.load(run["outputs"]) as data:
                results.append({k: data[k] for k in data.files})
        return results


def run_onnx(path, inputs):
    """Runs an ONNX file with onnxruntime on the CPU; returns {output: array}."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("Running ONNX files needs onnxruntime: pip install onnxruntime") from None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {name: inputs[name] for name in names}
    outputs = session.run(None, feed)
    return {o.name: v for o, v in zip(session.get_outputs(), outputs)}


def onnx_bytes(path):
    """The size of an ONNX file with its external data (`path + ".data"`) if it has any."""
    size = os.path.getsize(path)
    if os.path.exists(path + ".data"):
        size += os.path.getsize(path + ".data")
    return size


def quantize_onnx(float_path, int8_path, work_dir):
    """Writes `int8_path`: the float ONNX file at `float_path` dynamically quantised with
    onnxruntime's own tools, for CPU serving.

    `quant_pre_process` first (onnxruntime's recommended shape inference and graph
    optimisation, 7% faster for ViT-B than without it; without its symbolic shape inference
    where that cannot follow the graph); then attention, LayerNorm and GELU are fused into
    onnxruntime's own kernels (`onnx_fusion`); then `quantize_dynamic`: the
    weights of every MatMul with constant weights (the patch embedding, qkv, projections,
    MLP, head) become int8 per output channel, and activations are quantised to uint8 per
    call (onnxruntime's fast u8s8 kernels on x86); attention, LayerNorm and GELU run in
    float32. The weights use 7 of the 8 bits (`reduce_range`): x86 CPUs without VNNI (AVX2,
    AVX-512 before Cascade Lake) add pairs of u8 x s8 products in 16 bits, which full-range
    weights overflow (a small pretrainer's outputs off by 0.20 of their std on an AVX2 CPU,
    0.018 with 7-bit weights), and the file must be right on whatever CPU serves it. The
    weights take a quarter of the room; a model whose int8 weights still pass the
    external-data threshold keeps them in `int8_path + ".data"`.
    """
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise ImportError("onnx-int8 needs onnxruntime: pip install onnxruntime") from None
    threshold = int(os.environ.get("VIDEOMAE_KERAS_ONNX_EXTERNAL_DATA_BYTES",
                                   ONNX_EXTERNAL_DATA_BYTES))
    size = onnx_bytes(float_path)
    float_path, int8_path = os.path.abspath(float_path), os.path.abspath(int8_path)
    own_dir = tempfile.mkdtemp(prefix=".quantize-", dir=work_dir)  # removed whatever happens
    prepared = os.path.join(own_dir, "prepared.onnx")
    large = size > threshold
    options = dict(save_as_external_data=large, all_tensors_to_one_file=True,
                   external_data_location="prepared.onnx.data" if large else None)
    try:
        with _quiet_onnxruntime_tools(), _working_in(own_dir):
            _prepare_and_quantize(float_path, prepared, int8_path, options,
                                  size // 4 > threshold)
    finally:
        shutil.rmtree(own_dir, ignore_errors=True)


def _prepare_and_quantize(float_path, prepared, int8_path, options, large_int8):
    """quant_pre_process into `prepared`, then quantize_dynamic into `int8_path`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    try:
        quant_pre_process(float_path, prepared, **options)
    except Exception:  # onnxruntime raises a bare Exception when symbolic shape
        # inference cannot follow a shape (a pretrainer's gather of the masked tokens);
        # the other steps (graph optimisation, ONNX's shape inference) still apply
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True, **options)
    _fuse_for_onnxruntime(prepared)
    quantize_dynamic(prepared, int8_path, per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8, use_external_data_format=large_int8)


def _fuse_for_onnxruntime(path):
    """Rewrites the ONNX graph at `path` with its attention, LayerNorm and GELU fused into
    onnxruntime's kernels (`onnx_fusion`); the weights stay where they are (an
    external-data file beside it is only referred to). Returns {operator: count}."""
    import onnx

    from videomae_keras.checkpoints.onnx_fusion import fuse_for_onnxruntime

    model = onnx.load(path, load_external_data=False)
    if not model.graph.value_info:
        model = onnx.shape_inference.infer_shapes(model)
    counts = fuse_for_onnxruntime(model)
    if any(counts.values()):
        onnx.save_model(model, path)
    return counts


@contextlib.contextmanager
def _working_in(directory):
    """Runs onnxruntime's quantisation tools from `directory`: when its symbolic shape
    inference gives up it saves the half-inferred model (`sym_shape_infer_temp.onnx` and a
    uuid-named `.data` file) into the current directory, which is the user's."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _quiet_onnxruntime_tools():
    """Keeps the quantisation tools' chatter off the user's terminal: the symbolic shape
    inference prints what it cannot infer, and the quantizer logs a warning through the root
    logger for every integer tensor it leaves alone (the mask's indices)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def int8_agreement(expected, quantized):
    """{max_abs_diff, relative_diff (mean |diff| over the float outputs' std), top1_agreement
    (classifier logits: the share of clips whose top class is the same), clips}: what int8
    costs against the float32 outputs of the same clips."""
    expected = np.asarray(expected, np.float64)
    diff = np.abs(np.asarray(quantized, np.float64) - expected)
    report = {"max_abs_diff": float(diff.max()),
              "relative_diff": float(diff.mean() / max(expected.std(), 1e-12)),
              "clips": int(expected.shape[0])}
    if expected.ndim == 2:
        report["top1_agreement"] = float(
            (expected.argmax(-1) == np.asarray(quantized).argmax(-1)).mean())
    return report


# --- the TensorFlow subprocess ---------------------------------------------------------------

def _worker_export(args):
    model = keras.saving.load_model(args.model)
    if args.saved_model:
        export_saved_model(model, args.saved_model)
    if args.onnx:
        export_onnx(model, args.onnx)


def _worker_run_saved_model(args):
    import tensorflow as tf

    loaded = tf.saved_model.load(args.path)
    with open(args.manifest, encoding="utf-8") as f:
        runs = json.load(f)
    for run in runs:
        function = loaded.signatures[run["signature"]]
        with np.load(run["inputs"]) as data:
            feed = {k: tf.constant(data[k]) for k in data.files}
        if run["xla"]:
            outputs = tf.function(lambda **kw: function(**kw), jit_compile=True)(**feed)
        else:
            outputs = function(**feed)
        np.savez(run["outputs"], **{k: v.numpy() for k, v in outputs.items()})


def _die_with_parent():
    """The worker must not outlive the process that started it (a SIGKILL leaves no chance
    to stop it): on Linux the kernel sends it SIGKILL when the parent dies (prctl
    PR_SET_PDEATHSIG); elsewhere a thread checks for the parent every half second."""
    parent = int(os.environ.get("VIDEOMAE_KERAS_PARENT_PID") or 0)
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def main(argv=None):
    _die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m videomae_keras.checkpoints.export")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="export a .keras model (TensorFlow backend)")
    export.add_argument("model")
    export.add_argument("--saved-model")
    export.add_argument("--onnx")
    export.set_defaults(run=_worker_export)
    run = commands.add_parser("run-saved-model", help="run SavedModel signatures")
    run.add_argument("path")
    run.add_argument("manifest", help="JSON list of {signature, inputs, outputs, xla}")
    run.set_defaults(run=_worker_run_saved_model)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("run with KERAS_BACKEND=tensorflow")
    args.run(args)


if __name__ == "__main__":
    main()
