"""`from_pretrained` and `load_pytorch_weights`: PyTorch VideoMAE checkpoints into Keras models."""

import dataclasses
import os
import warnings

from videomae_keras import presets
from videomae_keras.checkpoints import cache
from videomae_keras.atomic import atomic_output
from videomae_keras.initializers import build_for_loading
from videomae_keras.memory import FreedMemory
from videomae_keras.models.saving import load_keras_model, rebuild
from videomae_keras.progress import Stages
from videomae_keras.convert.checkpoint import (
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    strip_prefixes,
)
from videomae_keras.convert import official, tensors, transformers
from videomae_keras.convert.keymap import (
    TORCH_SHAPES,
    TRANSFORMS,
    keras_weight_map,
    to_canonical,
)

TASKS = ("classifier", "pretrainer", "backbone")


class WeightMismatchError(ValueError):
    """A strict load found keys or shapes that do not fit; `report` lists them."""

    def __init__(self, message, report, path):
        super().__init__(message)
        self.report, self.path = report, path

    def as_inconsistent_checkpoint(self):
        """The error for a model built from this same checkpoint: a mismatch then means the
        checkpoint disagrees with itself (a damaged or edited tensor), so name the tensors."""
        shown = "; ".join(f"{key} has shape {found} where the rest of the checkpoint needs "
                          f"{needed}" for key, found, needed in self.report.mismatched[:3])
        more = len(self.report.mismatched) - 3
        return CheckpointError(
            f"{self.path}: {shown}{f' (and {more} more)' if more > 0 else ''}: the file is "
            "damaged or was edited; get a fresh copy of it."
        )


@dataclasses.dataclass
class LoadReport:
    """What a load did: the source layout and any keys it could not use."""

    layout: str
    matched: int
    missing: list
    unexpected: list
    mismatched: list
    notes: list

    def __str__(self):
        lines = [f"{self.matched} tensors match ({self.layout} layout)"]
        if self.missing:
            lines.append(f"missing in the checkpoint ({len(self.missing)}): {_short(self.missing)}")
        if self.unexpected:
            lines.append(
                f"unused from the checkpoint ({len(self.unexpected)}): {_short(self.unexpected)}"
            )
        if self.mismatched:
            shown = [f"{k}: checkpoint {s}, model needs {m}" for k, s, m in self.mismatched]
            lines.append(f"shape mismatches ({len(shown)}): {_short(shown)}")
        lines.extend(self.notes)
        return "; ".join(lines)


def _short(items, limit=12):
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _canonical_checkpoint(source):
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source, lazy=True)
    state, layout, notes = to_canonical(strip_prefixes(checkpoint.state))
    return checkpoint, state, layout, notes


def load_pytorch_weights(model, source, strict=True, progress=None):
    """Fills `model` (any VideoMAE Keras model) with the weights of a PyTorch checkpoint.

    `source` is an official .pth (under 'model', 'module' or raw; prefixes module.,
    _orig_mod., encoder., backbone. handled), a transformers folder, or a .safetensors/.bin
    file. With `strict=True` any key the model lacks, any model weight the checkpoint lacks
    and any shape mismatch raise one ValueError that lists them all, and nothing is changed.
    With `strict=False` the matching weights are loaded and the rest reported. Returns a
    `LoadReport`. `progress`, if given, is called once per tensor assigned.

    Keys and shapes are checked from the checkpoint's header before any data is read; then
    each tensor is read, converted, assigned and dropped in turn, so loading needs little
    more memory than the model itself.
    """
    checkpoint, state, layout, notes = _canonical_checkpoint(source)
    targets = keras_weight_map(model)
    missing = sorted(k for k in targets if k not in state)
    unexpected = sorted(k for k in state if k not in targets)
    mismatched, matched = [], []
    for key in (k for k in state if k in targets):  # file order: reads run front to back
        variable, transform = targets[key]
        needed = TORCH_SHAPES[transform](tuple(variable.shape))
        if tuple(state[key].shape) != needed:
            mismatched.append((key, tuple(state[key].shape), needed))
        else:
            matched.append(key)
    mismatched.sort()
    report = LoadReport(layout, len(matched), missing, unexpected, mismatched, notes)
    if strict and (missing or unexpected or mismatched):
        raise WeightMismatchError(
            f"Checkpoint {checkpoint.path} does not match {model.name}: {report}. Build the "
            "model that matches the checkpoint (from_pretrained does this for you), or pass "
            "strict=False to load only the matching weights.", report, checkpoint.path
        )
    freed = FreedMemory()
    for key in matched:
        variable, transform = targets[key]
        value = TRANSFORMS[transform](tensors.load(state[key]))
        variable.assign(value)
        freed.count(value.nbytes)
        del value
        if progress is not None:
            progress()
    freed.trim()
    return report


@dataclasses.dataclass
class ModelPlan:
    """A checkpoint read and understood: its canonical tensors and the model that fits it."""

    checkpoint: Checkpoint
    state: dict
    layout: str
    notes: list
    task: str
    natural_task: str
    kwargs: dict


def plan_model(source, task=None, dtype=None, **overrides):
    """Reads `source` and works out the model for it (see `from_pretrained`)."""
    checkpoint, state, layout, notes = _canonical_checkpoint(source)
    natural_task, kwargs = infer_architecture(state, layout, checkpoint.hf_config, overrides)
    task = task or natural_task
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
    kwargs = arguments_for_task(kwargs, task)
    kwargs.update(overrides)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return ModelPlan(checkpoint, state, layout, notes, task, natural_task, kwargs)


def from_pretrained(source, task=None, *, strict=None, dtype=None, progress=None,
                    architecture=None, **overrides):
    """The Keras model a checkpoint or saved model holds, with its weights.

    `source` is any of (see `source_kind`, one loader each):
    - an official .pth, a transformers folder (config.json + weights), or a single
      .safetensors/.bin file: the model that matches it is built and filled. The
      architecture (size, heads, patch, depths, classes, pooling, pretraining or fine-tuned)
      comes from config.json when there is one, else from the tensor shapes (heads from the
      official table: official checkpoints do not store them). LayerNorm epsilons follow
      the source: 1e-6 everywhere for official files; layer_norm_eps (1e-12) in the blocks
      and 1e-5 in fc_norm and decoder.norm for transformers.
    - a `.keras` file (loaded in safe mode), or a `.weights.h5` file with `architecture=`
      (e.g. "B16FT") and the keyword arguments it was built with;
    - a preset folder written by `save_to_preset` (the task it holds, or its backbone with
      task="backbone");
    - a registered name (`videomae_keras.presets.names()`, e.g. "videomae-b-k400-ft-1600e"
      or "MCG-NJU/videomae-base-finetuned-kinetics"), downloaded and converted once, then
      loaded from the cache.

    `task`: "classifier", "pretrainer" or "backbone" to override what a checkpoint holds
    (e.g. a backbone from a fine-tuned file; weights it does not need are skipped). Keyword
    overrides go to the model: num_frames, image_size, num_heads, mask_ratio, num_masked,
    drop_path_rate, epsilons, ... (a checkpoint does not say which clip size it was used at:
    the default is 16 frames at 224, or config.json's values).
    """
    kind = source_kind(source)
    if architecture is not None and kind != "weights":
        raise ValueError("architecture= is only needed for .weights.h5 files; checkpoints and "
                         "saved models describe their own architecture.")
    if kind == "keras" or kind == "weights":
        return load_keras_file(os.fspath(source), architecture=architecture, task=task,
                               dtype=dtype, **overrides)
    if kind == "registered":
        if task is not None or dtype is not None:
            raise ValueError(
                "task= and dtype= apply to checkpoint files; for a registered name, port it "
                "(videomae-keras port NAME) and load the file with the options you need."
            )
        return load_registered(source, progress=progress is not False, **overrides)
    if kind == "preset":
        if dtype is not None:
            raise ValueError(f"{source} is a preset folder, saved with its dtype; dtype= does "
                             "not apply to it (build the model with the dtype you need and "
                             "load the folder's weights into it).")
        return load_preset_folder(os.fspath(source), task, **overrides)
    return load_pytorch_checkpoint(source, task, strict=strict, dtype=dtype,
                                   progress=progress, **overrides)


def source_kind(source):
    """What `from_pretrained` makes of a source: "keras" (a .keras file), "weights" (a
    .weights.h5 file), "preset" (a folder `save_to_preset` wrote), "registered" (a released
    checkpoint's name that is not a local path), else "pytorch" (an official .pth, a
    transformers folder, a .safetensors/.bin file)."""
    from videomae_keras.models import preset

    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if path is None:
        return "pytorch"  # e.g. a Checkpoint already read
    if path.endswith(".keras"):
        return "keras"
    if path.endswith(".weights.h5"):
        return "weights"
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, preset.METADATA)) and \
            os.path.isfile(os.path.join(path, preset.BACKBONE_WEIGHTS)):
        return "preset"
    if not os.path.exists(path) and presets.is_registered(path):
        return "registered"
    return "pytorch"


def load_pytorch_checkpoint(source, task=None, strict=None, dtype=None, progress=None,
                            **overrides):
    """An official or transformers checkpoint into the model that matches it (see
    `from_pretrained`); all or nothing unless a task override asks for part of it."""
    plan = plan_model(source, task, dtype=dtype, **overrides)
    if strict is None:
        strict = plan.task == plan.natural_task
    # a strict load assigns every weight: nothing to draw at random first
    model = build_model(plan.task, plan.kwargs, initialize=not strict)
    callback = progress if callable(progress) else None
    try:
        report = load_pytorch_weights(model, plan.checkpoint, strict=strict, progress=callback)
    except WeightMismatchError as e:
        if e.report.mismatched and not e.report.missing and not e.report.unexpected:
            raise e.as_inconsistent_checkpoint() from None
        raise
    model.load_report = report
    return model


def load_preset_folder(folder, task=None, **overrides):
    """The model a preset folder holds (its task, or its backbone for a backbone folder or
    task="backbone"); another `task` builds that task over the folder's backbone."""
    from videomae_keras.models import preset

    if task is None:
        kind = preset.saved_class(folder)
        task = {"VideoMAEClassifier": "classifier",
                "VideoMAEPretrainer": "pretrainer"}.get(kind, "backbone")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
    return preset.load_preset(_task_class(task), folder, **overrides)


def load_registered(name, progress=True, **overrides):
    """The Keras model of registered checkpoint `name`, downloading and converting on first use.

    Keyword overrides (num_frames, image_size, drop_path_rate, ...) rebuild the model with
    those arguments around the cached weights. Classifiers of a shipped label space carry
    its class names.
    """
    info = presets.checkpoint(name)
    path = cache.converted_path(name)
    if not os.path.exists(path):
        stages = Stages(2, enabled=progress)
        with cache.fetched(name, stages) as source:
            model = stages.run(
                f"convert {name}", from_pretrained, source, **info.get("model_args", {})
            )
        names = registered_class_names(info, model)
        if names:
            model = rebuild(model, class_names=names)
        with atomic_output(path, overwrite=True, suffix=".keras") as temp:
            model.save(temp)
    else:
        try:
            model = load_keras_model(path)
        except Exception as e:
            raise RuntimeError(
                f"The converted model of {name} in the cache ({path}) cannot be loaded ({e}). "
                f"Delete it (videomae_keras.checkpoints.cache.remove({name!r})) and it is converted again."
            ) from None
    if overrides:
        model = rebuild(model, **overrides)
    model.registry_entry = info
    return model


def registered_class_names(info, model):
    """The class names of a registered classifier's label space, when this package ships
    them and they fit the head (e.g. Kinetics-400), else None."""
    label_map = info.get("label_map") or presets.labels_for(
        getattr(model, "get_config", dict)().get("num_classes", 0) or 0)
    if info.get("task") != "classifier" or not label_map:
        return None
    try:
        names = presets.labels(label_map)
    except KeyError:
        return None
    return list(names) if len(names) == model.get_config().get("num_classes") else None


def build_model(task, kwargs, initialize=True):
    """The Keras model for a task from plain arguments. `initialize=False` skips the random
    draws, for a model whose every weight is loaded next."""
    cls = _task_class(task)
    return (cls.from_arguments(**kwargs) if initialize
            else build_for_loading(cls.from_arguments, **kwargs))


def _task_class(task):
    from videomae_keras import models

    return {
        "classifier": models.VideoMAEClassifier,
        "pretrainer": models.VideoMAEPretrainer,
        "backbone": models.VideoMAEBackbone,
    }[task]


def arguments_for_task(kwargs, task):
    """Of the arguments a checkpoint gave, those the task's model (and its backbone) takes; a
    classifier's final norm follows its pooling, whatever the checkpoint held."""
    from videomae_keras.models import VideoMAEBackbone
    from videomae_keras.models.base import arguments_of

    accepted = set(arguments_of(VideoMAEBackbone))
    if task != "backbone":
        accepted |= set(arguments_of(_task_class(task)))
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if task == "classifier":
        kwargs.pop("use_final_norm", None)
    return kwargs


def infer_architecture(state, layout, hf_config=None, given=()):
    """(task, model arguments) for a canonical state dict: sizes from the tensor shapes,
    then the source's conventions (config.json for transformers folders; for files without
    one, the official head table and the layout's epsilons). Names in `given` (arguments
    the caller sets) are not looked up, so an unusual width needs no table entry when
    num_heads is passed."""
    task, kwargs = official.infer_from_shapes(state)
    if hf_config is not None:
        kwargs.update(transformers.config_to_arguments(hf_config, task))
    else:
        kwargs.update(official.conventions(kwargs, task, layout, given))
    return task, kwargs


def load_keras_file(path, architecture=None, task=None, dtype=None, **kwargs):
    """A `.keras` file (safe mode: no code runs) or a `.weights.h5` file into the model
    it holds. A `.weights.h5` file stores no architecture: give `architecture` (e.g.
    "B16FT") and the keyword arguments the model was built with (num_classes, ...)."""

    import videomae_keras  # noqa: F401  (registers the layers for deserialisation)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    if task is not None:
        raise ValueError("task= applies to PyTorch checkpoints; a Keras file holds one model.")
    if path.endswith(".keras"):
        if architecture is not None or kwargs or dtype is not None:
            raise ValueError(
                f"{path} is a whole saved model; architecture and keyword overrides do not "
                "apply to it (port the PyTorch checkpoint again to change them)."
            )
        try:
            return load_keras_model(path)
        except Exception as e:
            raise ValueError(f"{path}: cannot load this .keras file ({_first_line(e)}).") from e
    if architecture is None:
        raise ValueError(
            f"{path} holds weights only, no architecture: pass architecture= (--arch on the "
            "command line), e.g. B16FT, and num_classes= if not 400; or use the .keras file."
        )
    from videomae_keras.models.factories import build

    if dtype is not None:
        kwargs["dtype"] = dtype
    model = build_for_loading(build, architecture, **kwargs)
    try:
        with warnings.catch_warnings():
            # Keras notes that functional models' bookkeeping containers hold no weights
            warnings.filterwarnings("ignore", message="Skipping nested container")
            model.load_weights(path)
    except Exception as e:
        raise ValueError(
            f"{path}: these weights do not fit {architecture}"
            f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): {_first_line(e)}"
        ) from e
    return model


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
