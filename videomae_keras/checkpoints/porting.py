"""Porting a PyTorch VideoMAE checkpoint: build the Keras model, verify it, write its files.

`port()` is what `videomae-keras port` and `tools/port_pytorch_weights.py` run. Every output
is written atomically and an existing one is only replaced with `overwrite=True`; with
`verify=True` the Keras outputs are compared with the PyTorch reference on a fixed input, and
every written file is loaded back and compared with the Keras model.
"""

import contextlib
import dataclasses
import os

import numpy as np

import keras

from videomae_keras import flops, presets
from videomae_keras.checkpoints import cache, export
from videomae_keras.atomic import OutputSet, check_writable
from videomae_keras.convert.loading import (
    WeightMismatchError,
    build_model,
    load_pytorch_weights,
    plan_model,
    rebuild,
    registered_class_names,
)
from videomae_keras.masking import mask_with_count
from videomae_keras.options import FORMATS  # format name -> file suffix
from videomae_keras.progress import Stages
from videomae_keras.video.preprocess import normalize


class VerificationError(RuntimeError):
    """A measured difference is above the tolerance."""


# onnx-int8 is checked by its mean |diff| relative to the float32 outputs' std (int8 moves
# every output a little, so max |diff| against 1e-4 cannot apply): 0.011 for ViT-B.
INT8_TOLERANCE = 0.1
INT8_CLIPS = 4  # fixed clips the int8 file and the float model both see under --verify


@dataclasses.dataclass
class PortResult:
    name: str
    task: str
    description: str
    parameters: int
    gflops: float
    files: dict  # format -> path
    differences: dict  # what was compared -> max |diff|
    reference: str = None
    notes: list = dataclasses.field(default_factory=list)
    int8: dict = None  # onnx-int8 against the float32 Keras model (int8_agreement), verified


    def summary(self):
        lines = [
            f"Architecture  {self.description}",
            f"Parameters    {self.parameters:,} ({self.parameters / 1e6:.1f}M), "
            f"{self.gflops:.1f} GFLOPs per clip",
        ]
        for i, (fmt, path) in enumerate(self.files.items()):
            label = "Files" if i == 0 else ""
            lines.append(f"{label:<14}{path}  ({_human(_size(path))}, {fmt})")
        if self.reference:
            lines.append(f"Reference     {self.reference}")
        for i, (what, diff) in enumerate(self.differences.items()):
            label = "max |diff|" if i == 0 else ""
            lines.append(f"{label:<14}{diff:.2e}  {what}")
        if self.int8:
            lines.append(f"int8 ONNX     {_int8_line(self.int8)}")
        for note in self.notes:
            lines.append(f"Note          {note}")
        return "\n".join(lines)


def _int8_line(report):
    """The onnx-int8 check as one line of the summary."""
    line = (f"max |diff| {report['max_abs_diff']:.2e}, mean |diff| / std "
            f"{report['relative_diff']:.4f}")
    if "top1_agreement" in report:
        agreeing = round(report["top1_agreement"] * report["clips"])
        line += f", top-1 agreement {agreeing}/{report['clips']} clips"
    return line + " (onnxruntime int8 against the float32 Keras model)"


def _size(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
        )
    return export.onnx_bytes(path)  # with an ONNX file's external data, if any


def _human(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024


def output_paths(out_dir, name, formats):
    return {fmt: os.path.join(out_dir, name + FORMATS[fmt]) for fmt in formats}


def default_name(source):
    if presets.is_registered(source) and not os.path.exists(source):
        return source.replace("/", "--")
    base = os.path.basename(os.path.normpath(os.fspath(source)))
    for suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".tar"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def fixed_inputs(model, batch=1, seed=0):
    """The verification input: seeded normal pixels and, for masked models, a seeded mask
    with the model's count (tube-shaped when the count allows, random otherwise)."""
    rng = np.random.default_rng(seed)
    video = rng.standard_normal((batch, *model.video_shape)).astype("float32")
    inputs = {"video": video}
    if export.takes_mask(model):
        masks = np.stack([mask_with_count(model.grid, model.num_masked, rng)
                          for _ in range(batch)])
        inputs["bool_masked_pos"] = masks
    return inputs


def normalise_uint8(frames):
    """uint8 frames -> model input, in float32 as the SavedModel's serving_uint8 does it."""
    return normalize(frames, export.IMAGENET_MEAN, export.IMAGENET_STD)


def keras_outputs(model, inputs):
    values = list(inputs.values())
    return np.asarray(keras.ops.convert_to_numpy(model(values if len(values) > 1 else values[0])))


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@dataclasses.dataclass
class PortPlan:
    """What a port will do, worked out before any work: the outputs and the source."""

    source: str
    out_dir: str
    name: str
    formats: list
    targets: dict  # format -> path
    overwrite: bool
    verify: bool
    tolerance: float
    int8_tolerance: float = INT8_TOLERANCE
    task: str = None
    overrides: dict = dataclasses.field(default_factory=dict)
    info: dict = None  # the registry entry of a registered name

    @property
    def stage_count(self):
        int8_check = self.verify and "onnx-int8" in self.formats
        return 2 + bool(self.info) + 2 * self.verify + len(self.formats) + int8_check


def plan_port(source, out_dir, formats=("keras",), verify=False, overwrite=False, name=None,
              tolerance=1e-4, task=None, int8_tolerance=INT8_TOLERANCE, **overrides):
    """Step 1: checks the formats and that every output may be written (refusing before
    any work) and looks the source up in the registry."""
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Unknown format(s) {unknown}; choose from {', '.join(FORMATS)}.")
    name = name or default_name(source)
    targets = output_paths(out_dir, name, formats)
    for path in _output_names(targets):
        check_writable(os.path.join(out_dir, path), overwrite)
    info = None
    if presets.is_registered(source) and not os.path.exists(source):
        info = presets.checkpoint(source)
        overrides = {**info.get("model_args", {}), **overrides}
    return PortPlan(source, out_dir, name, formats, targets, overwrite, verify, tolerance,
                    int8_tolerance, task, overrides, info)


def convert(plan, stages, notes):
    """Step 2: (Keras model, checkpoint plan): reads the checkpoint (fetching a registered
    name first; fetched files that do not convert are removed again), builds the model and
    loads every weight."""
    with contextlib.ExitStack() as fetching:
        source = plan.source
        if plan.info:
            source = stages.run(f"fetch {plan.info['name']}", fetching.enter_context,
                                cache.fetched(plan.info["name"], stages))
        checkpoint = stages.run("read checkpoint", plan_model, source, plan.task,
                                **plan.overrides)
        notes.extend(checkpoint.notes)
        model = stages.run("build model and load weights", _build_and_load, checkpoint,
                           stages, notes)
    return model, checkpoint


def _build_and_load(checkpoint, stages, notes):
    strict = checkpoint.task == checkpoint.natural_task  # every weight loaded: none drawn
    model = build_model(checkpoint.task, checkpoint.kwargs, initialize=not strict)
    with stages.bar(len(checkpoint.state), "load weights", "tensor") as bar:
        try:
            report = load_pytorch_weights(model, checkpoint.checkpoint, strict=strict,
                                          progress=lambda: bar.update(1))
        except WeightMismatchError as e:
            if e.report.mismatched and not (e.report.missing or e.report.unexpected):
                raise e.as_inconsistent_checkpoint() from None
            raise
    if report.missing or report.unexpected or report.mismatched:
        notes.append(f"partial load: {report}")
    return model


def verify_against_reference(model, checkpoint, inputs, expected, stages):
    """Step 3: ({what: max |diff|}, reference description): the Keras outputs against the
    PyTorch reference model built from the same checkpoint."""
    from videomae_keras.convert.reference import build_reference, reference_outputs

    def run_reference():
        reference, description = build_reference(
            checkpoint.checkpoint.path, checkpoint.layout, checkpoint.checkpoint.hf_config,
            checkpoint.state, model.arguments(), checkpoint.task)
        return reference_outputs(reference, inputs["video"],
                                 inputs.get("bool_masked_pos")), description

    torch_out, description = stages.run("verify against PyTorch", run_reference)
    output = export.OUTPUT_NAMES[checkpoint.task]
    return {f"Keras vs PyTorch reference ({output})": _max_diff(expected, torch_out)}, description


def write_outputs(model, plan, stages, notes, inputs, expected, differences, output,
                  quality=None):
    """Step 4: writes every format into a hidden staging folder beside the outputs and
    moves them into place together once complete (and, with `plan.verify`, each loaded back
    and compared; the int8 ONNX file's agreement goes into `quality["int8"]`): an error,
    Ctrl-C or SIGTERM leaves the folder as it was, old outputs included; a SIGKILL's
    leftovers go at the next port."""
    names = _output_names(plan.targets)
    with OutputSet(plan.out_dir, names, plan.overwrite, label=f"{plan.name}.port") as outputs:
        if outputs.recovered:
            notes.append("completed the outputs of a port that was killed while moving them "
                         f"into place: {', '.join(outputs.recovered)}")
        staged = {fmt: outputs.path(os.path.basename(path))
                  for fmt, path in plan.targets.items()}
        for fmt in plan.formats:
            if fmt in ("keras", "h5"):
                stages.run(f"write {plan.targets[fmt]}", _write, model, fmt, staged[fmt])
        exports = [f for f in ("savedmodel", "onnx", "onnx-int8") if f in plan.formats]
        if exports:
            keras_file = staged.get("keras")
            if keras_file is None:  # the exporter reads a .keras file
                keras_file = os.path.join(outputs.scratch(), "model.keras")
                model.save(keras_file)
            for fmt in exports:
                if fmt == "onnx-int8":
                    stages.run(f"write {plan.targets[fmt]}", _quantize, model, keras_file,
                               staged, outputs.scratch())
                else:
                    stages.run(f"write {plan.targets[fmt]}", _export, model, keras_file, fmt,
                               staged[fmt])
        if plan.verify:
            stages.run("verify written files", _verify_files, model, staged, inputs,
                       expected, differences, output)
            _check(differences, plan.tolerance)
            if "onnx-int8" in staged:
                report = stages.run("verify the int8 ONNX file", _verify_int8, model,
                                    staged["onnx-int8"])
                if quality is not None:
                    quality["int8"] = report
                _check_int8(report, plan.int8_tolerance)
        outputs.commit()
    return dict(plan.targets)


def port(source, out_dir, formats=("keras",), verify=False, overwrite=False, name=None,
         tolerance=1e-4, task=None, progress=True, labels=None, int8_tolerance=INT8_TOLERANCE,
         **overrides):
    """Converts `source` and writes the requested formats into `out_dir`; returns a PortResult.

    The four steps: `plan_port` (outputs checked before any work), `convert` (the Keras
    model with every weight loaded), `verify_against_reference` (with `verify`) and
    `write_outputs`. `labels`: class names for a classifier (a text file, one per line, or
    a list), saved in the `.keras` file; registered classifiers of a shipped label space
    get theirs anyway. "onnx-int8" writes `NAME.int8.onnx`, the ONNX file dynamically
    quantised by onnxruntime; `verify` runs it on INT8_CLIPS fixed clips against the float32
    Keras model and fails above `int8_tolerance` (mean |diff| over the outputs' std).

    Raises VerificationError (after writing nothing) when the Keras model differs from the
    PyTorch reference by more than `tolerance`, or (after removing what it wrote) when a
    written file does.
    """
    plan = plan_port(source, out_dir, formats, verify, overwrite, name, tolerance, task,
                     int8_tolerance, **overrides)
    stages = Stages(plan.stage_count, enabled=progress)
    notes = []
    model, checkpoint = convert(plan, stages, notes)
    names = _class_names(labels, plan.info, model)
    if names:
        model = rebuild(model, class_names=names)
    config = model.arguments()
    inputs = fixed_inputs(model)
    expected = keras_outputs(model, inputs)
    differences, reference = {}, None
    if verify:
        differences, reference = verify_against_reference(model, checkpoint, inputs, expected,
                                                          stages)
        _check(differences, tolerance)
    quality = {}
    files = write_outputs(model, plan, stages, notes, inputs, expected, differences,
                          export.OUTPUT_NAMES[checkpoint.task], quality)
    return PortResult(
        name=plan.name,
        task=checkpoint.task,
        description=f"{flops.describe(config, checkpoint.task)} ({checkpoint.layout} checkpoint)",
        parameters=model.count_params(),
        gflops=flops.count(config)["flops"] / 1e9,
        files=files,
        differences=differences,
        reference=reference,
        notes=notes,
        int8=quality.get("int8"),
    )


def _check(differences, tolerance):
    bad = {k: v for k, v in differences.items() if not v <= tolerance}
    if bad:
        shown = "; ".join(f"{k}: {v:.2e}" for k, v in bad.items())
        raise VerificationError(f"Outputs differ by more than the tolerance {tolerance:g}: {shown}.")


def _check_int8(report, tolerance):
    if not report["relative_diff"] <= tolerance:
        raise VerificationError(
            f"The int8 ONNX file's outputs differ from the float32 model's by "
            f"{report['relative_diff']:.4f} of their std (mean |diff|), more than the int8 "
            f"tolerance {tolerance:g}; pass a larger --int8-tolerance to accept it.")


def _class_names(labels, info, model):
    """Class names for the ported model: from `labels`, else the registry's label space."""
    from videomae_keras.models import VideoMAEClassifier

    if labels is None:
        return registered_class_names(info, model) if info else None
    if not isinstance(model, VideoMAEClassifier):
        raise ValueError("--labels (labels=) names a classifier's classes; this checkpoint "
                         f"is a {type(model).__name__}.")
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such label file (one class name per line).")
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return [str(n) for n in labels]


def _output_names(targets):
    """File names of a port's outputs, with the `.onnx.data` an ONNX file may bring."""
    names = [os.path.basename(path) for path in targets.values()]
    for fmt in ("onnx", "onnx-int8"):
        if fmt in targets:
            names.append(os.path.basename(targets[fmt]) + ".data")
    return names


def _write(model, fmt, path):
    if fmt == "keras":
        model.save(path)
    else:
        model.save_weights(path)


def _export(model, keras_file, fmt, path):
    """A SavedModel folder, or an ONNX file (with `.onnx.data` beside it for large models)."""
    if fmt == "savedmodel":
        export.export_files(model, keras_file, saved_model=path)
    else:
        export.export_files(model, keras_file, onnx=path)


def _quantize(model, keras_file, staged, scratch):
    """The onnx-int8 file: quantised from the float ONNX file being written, or from one
    exported into the scratch folder when onnx is not among the formats."""
    float_path = staged.get("onnx")
    if float_path is None:
        float_path = os.path.join(scratch, "float.onnx")
        export.export_files(model, keras_file, onnx=float_path)
    export.quantize_onnx(float_path, staged["onnx-int8"], scratch)


def _verify_int8(model, path):
    """int8_agreement of the int8 file and the float32 Keras model on fixed clips."""
    inputs = fixed_inputs(model, batch=INT8_CLIPS, seed=8)
    expected = keras_outputs(model, inputs)
    quantized = list(export.run_onnx(path, inputs).values())[0]
    return export.int8_agreement(expected, quantized)


def _verify_files(model, written, inputs, expected, differences, output):
    values = list(inputs.values())
    batch = values if len(values) > 1 else values[0]
    if "keras" in written:
        restored = keras.saving.load_model(written["keras"])
        differences[".keras reloaded"] = _max_diff(keras.ops.convert_to_numpy(restored(batch)), expected)
    if "h5" in written:
        fresh = type(model).from_config(model.get_config())
        fresh.load_weights(written["h5"])
        differences[".weights.h5 into a new model"] = _max_diff(
            keras.ops.convert_to_numpy(fresh(batch)), expected
        )
    if "savedmodel" in written:
        frames = np.random.default_rng(1).integers(0, 256, inputs["video"].shape, dtype=np.uint8)
        keras_uint8 = keras_outputs(model, dict(inputs, video=normalise_uint8(frames)))
        feed_uint8 = {k: v for k, v in inputs.items() if k != "video"}
        feed_uint8["frames"] = frames
        plain, xla, uint8 = export.run_saved_model_many(
            written["savedmodel"],
            [("serving_default", inputs, False), ("serving_default", inputs, True),
             ("serving_uint8", feed_uint8, False)],
        )
        differences["SavedModel serving_default (fresh TensorFlow process)"] = _max_diff(
            plain[output], expected
        )
        differences["SavedModel serving_default under XLA"] = _max_diff(xla[output], expected)
        differences["SavedModel serving_uint8 (uint8 frames, in-graph normalisation)"] = _max_diff(
            uint8[output], keras_uint8
        )
    if "onnx" in written:
        out = list(export.run_onnx(written["onnx"], inputs).values())[0]
        differences["ONNX (onnxruntime)"] = _max_diff(out, expected)
