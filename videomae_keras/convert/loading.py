"""`from_pretrained` and `load_pytorch_weights`: PyTorch VideoMAE checkpoints into Keras models."""

import collections
import dataclasses
import os
import re
import warnings


from videomae_keras import configs, hub, presets
from videomae_keras.atomic import atomic_output
from videomae_keras.initializers import build_for_loading
from videomae_keras.progress import Stages
from videomae_keras.convert.checkpoint import (
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    strip_prefixes,
)
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
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source)
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
    """
    checkpoint, state, layout, notes = _canonical_checkpoint(source)
    targets = keras_weight_map(model)
    missing = sorted(k for k in targets if k not in state)
    unexpected = sorted(k for k in state if k not in targets)
    mismatched, values = [], {}
    for key in targets.keys() & state.keys():
        variable, transform = targets[key]
        value = TRANSFORMS[transform](state[key])
        if tuple(value.shape) != tuple(variable.shape):
            needed = TORCH_SHAPES[transform](tuple(variable.shape))
            mismatched.append((key, tuple(state[key].shape), needed))
        else:
            values[key] = value
    mismatched.sort()
    report = LoadReport(layout, len(values), missing, unexpected, mismatched, notes)
    if strict and (missing or unexpected or mismatched):
        raise WeightMismatchError(
            f"Checkpoint {checkpoint.path} does not match {model.name}: {report}. Build the "
            "model that matches the checkpoint (from_pretrained does this for you), or pass "
            "strict=False to load only the matching weights.", report, checkpoint.path
        )
    for key, value in values.items():
        targets[key][0].assign(value)
        if progress is not None:
            progress()
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
    kwargs = _arguments_for_task(kwargs, task)
    kwargs.update(overrides)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return ModelPlan(checkpoint, state, layout, notes, task, natural_task, kwargs)


def from_pretrained(source, task=None, *, strict=None, dtype=None, progress=None,
                    architecture=None, **overrides):
    """Builds the Keras model that matches a PyTorch VideoMAE checkpoint and loads it.

    `source`: an official .pth, a transformers folder (config.json + weights), a single
    .safetensors/.bin file, a Keras `.keras` file (loaded in safe mode) or `.weights.h5` file
    (with `architecture=`, e.g. "B16FT", and the keyword arguments it was built with), or a
    registered name (`videomae_keras.presets.names()`, e.g.
    "videomae-b-k400-ft-1600e" or "MCG-NJU/videomae-base-finetuned-kinetics"), which is
    downloaded and converted once, then loaded from the cache. The architecture (size, heads, patch, depths, classes, pooling,
    pretraining or fine-tuned) comes from config.json when there is one, else from the tensor
    shapes (heads from the official table: official checkpoints do not store them). LayerNorm
    epsilons follow the source: 1e-6 everywhere for official files; layer_norm_eps (1e-12)
    in the blocks and 1e-5 in fc_norm and decoder.norm for transformers.

    `task`: "classifier", "pretrainer" or "backbone" to override what the checkpoint holds
    (e.g. a backbone from a fine-tuned file; weights it does not need are skipped). Keyword
    overrides go to the model: num_frames, image_size, num_heads, mask_ratio, num_masked,
    drop_path_rate, epsilons, ... (a checkpoint does not say which clip size it was used at:
    the default is 16 frames at 224, or config.json's values).
    """
    if isinstance(source, (str, os.PathLike)) and _is_keras_file(os.fspath(source)):
        return load_keras_file(os.fspath(source), architecture=architecture, task=task,
                               dtype=dtype, **overrides)
    if architecture is not None:
        raise ValueError("architecture= is only needed for .weights.h5 files; PyTorch "
                         "checkpoints describe their own architecture.")
    if isinstance(source, str) and not os.path.exists(source) and presets.is_registered(source):
        if task is not None or dtype is not None:
            raise ValueError(
                "task= and dtype= apply to checkpoint files; for a registered name, port it "
                "(videomae-keras port NAME) and load the file with the options you need."
            )
        return load_registered(source, progress=progress is not False, **overrides)
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


def load_registered(name, progress=True, **overrides):
    """The Keras model of registered checkpoint `name`, downloading and converting on first use.

    Keyword overrides (num_frames, image_size, drop_path_rate, ...) rebuild the model with
    those arguments around the cached weights. Classifiers of a shipped label space carry
    its class names.
    """
    info = presets.checkpoint(name)
    path = hub.converted_path(name)
    if not os.path.exists(path):
        stages = Stages(2, enabled=progress)
        with hub.fetched(name, stages) as source:
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
                f"Delete it (videomae_keras.hub.remove({name!r})) and it is converted again."
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


def load_keras_model(path):
    """A `.keras` file in Keras' safe mode (no code runs), without drawing random weights that
    the file then replaces."""
    import keras

    import videomae_keras  # noqa: F401  (registers the layers for deserialisation)

    return build_for_loading(keras.saving.load_model, path, safe_mode=True)


def rebuild(model, **overrides):
    """A copy of a VideoMAE model with some constructor arguments changed (clip size, mask
    ratio, drop path, class names, ...) and the same weights."""
    arguments = {**model.arguments(), **overrides}
    copy = build_for_loading(type(model).from_arguments, **arguments)
    copy.set_weights(model.get_weights())
    return copy


def _arguments_for_task(kwargs, task):
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


def _most_common(state, sources):
    """The most common size among the tensors matching each (name pattern, axis); ties go to
    the first source listed. None when no tensor matches."""
    sizes = [int(v.shape[axis]) for pattern, axis in sources for k, v in state.items()
             if re.match(pattern, k) and len(v.shape) > axis]
    if not sizes:
        return None
    return collections.Counter(sizes).most_common(1)[0][0]


def _count(state, pattern):
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    if indices and indices != set(range(len(indices))):
        raise CheckpointError(f"Block indices are not contiguous: {sorted(indices)}.")
    return len(indices)


def infer_architecture(state, layout, hf_config=None, given=()):
    """(task, model arguments) for a canonical state dict and, if any, its transformers config.

    Names in `given` (arguments the caller sets) are not looked up, so an unusual width
    needs no table entry when num_heads is passed.
    """
    if "patch_embed.proj.weight" not in state:
        raise CheckpointError(
            "The checkpoint has no patch embedding (patch_embed.proj.weight / "
            "embeddings.patch_embeddings.projection.weight): it is not a VideoMAE model."
        )
    embedding = state["patch_embed.proj.weight"].shape
    if len(embedding) != 5:
        raise CheckpointError(
            f"patch_embed.proj.weight has shape {tuple(embedding)}; a VideoMAE patch embedding "
            "is a Conv3d weight (width, channels, tubelet, patch, patch).")
    _, num_channels, tubelet, patch, patch_w = embedding
    if patch != patch_w:
        raise CheckpointError(f"Non-square patches ({patch}x{patch_w}) are not supported.")
    depth = _count(state, r"^blocks\.(\d+)\.attn\.qkv\.weight$")
    if depth == 0:
        raise CheckpointError("The checkpoint has no transformer blocks (blocks.N.attn.qkv.*).")
    # Widths by the tensors' majority: one damaged tensor is then named as the mismatch,
    # instead of setting the width that every other tensor then fails.
    hidden_dim = _most_common(state, [
        (r"^patch_embed\.proj\.(weight|bias)$", 0),
        (r"^blocks\.\d+\.(norm1|norm2)\.(weight|bias)$", 0),
        (r"^blocks\.\d+\.(attn\.proj|mlp\.fc2)\.(weight|bias)$", 0),
        (r"^blocks\.\d+\.(attn\.qkv|mlp\.fc1)\.weight$", 1),
        (r"^(norm|fc_norm)\.(weight|bias)$", 0),
    ])
    kwargs = dict(
        num_channels=int(num_channels),
        tubelet_size=int(tubelet),
        patch_size=int(patch),
        hidden_dim=hidden_dim,
        depth=depth,
        mlp_dim=_most_common(state, [(r"^blocks\.\d+\.mlp\.fc1\.(weight|bias)$", 0),
                                     (r"^blocks\.\d+\.mlp\.fc2\.weight$", 1)]),
        qv_bias="blocks.0.attn.q_bias" in state,
        init_values=0.1 if "blocks.0.gamma_1" in state else 0.0,
        use_final_norm="norm.weight" in state,
    )
    is_pretrainer = "mask_token" in state or any(k.startswith("decoder.") for k in state)
    if is_pretrainer:
        task = "pretrainer"
        kwargs.update(
            decoder_hidden_dim=_most_common(state, [
                (r"^decoder\.norm\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.(norm1|norm2)\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.(attn\.proj|mlp\.fc2)\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.(attn\.qkv|mlp\.fc1)\.weight$", 1),
                (r"^decoder\.head\.weight$", 1),
            ]),
            decoder_depth=_count(state, r"^decoder\.blocks\.(\d+)\.attn\.qkv\.weight$"),
            decoder_mlp_dim=_most_common(state, [
                (r"^decoder\.blocks\.\d+\.mlp\.fc1\.(weight|bias)$", 0),
                (r"^decoder\.blocks\.\d+\.mlp\.fc2\.weight$", 1),
            ]),
        )
        expected = int(num_channels) * int(tubelet) * int(patch) ** 2
        if int(state["decoder.head.weight"].shape[0]) != expected:
            raise CheckpointError(
                f"The decoder head predicts {state['decoder.head.weight'].shape[0]} values per "
                f"token; a {patch}x{patch} patch over {tubelet} frames of {num_channels} "
                f"channels needs {expected}."
            )
    elif "head.weight" in state or "fc_norm.weight" in state:
        task = "classifier"
        kwargs.update(
            num_classes=_most_common(state, [(r"^head\.(weight|bias)$", 0)]) or 0,
            use_mean_pooling="fc_norm.weight" in state,
        )
    else:
        task = "backbone"  # e.g. the encoder-only V1 ViT-H pretrained file
    if hf_config is not None:
        kwargs.update(_from_hf_config(hf_config, task))
    else:
        kwargs.update(_official_conventions(kwargs, task, layout, given))
    return task, kwargs


def _official_conventions(kwargs, task, layout, given):
    out = {}
    if "num_heads" not in given:
        out["num_heads"] = presets.encoder_heads_for_width(kwargs["hidden_dim"])
    if task == "pretrainer" and "decoder_num_heads" not in given:
        out["decoder_num_heads"] = presets.decoder_heads_for_width(kwargs["decoder_hidden_dim"])
    eps = configs.EPSILON_CONVENTIONS["transformers" if layout == "transformers" else "official"]
    out.update(eps)
    return out


def _config_value(config, key, default, kind):
    """config.json's `key` checked to be of `kind`: one sentence naming the key otherwise."""
    value = config.get(key, default)
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(
                value) or value < 1:
            raise CheckpointError(
                f"config.json: {key} must be a whole number of at least 1; got {value!r}.")
        return int(value)
    if kind == "size":
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return tuple(_config_value({key: v}, key, None, "count") for v in value)
        if isinstance(value, (list, tuple)):
            raise CheckpointError(
                f"config.json: {key} must be a size (224) or [height, width]; got {value!r}.")
        return _config_value(config, key, default, "count")
    if kind == "rate":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise CheckpointError(
                f"config.json: {key} must be a number in [0, 1); got {value!r}.")
        return float(value)
    if kind == "epsilon":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise CheckpointError(
                f"config.json: {key} must be a positive number; got {value!r}.")
        return float(value)
    if kind == "flag":
        if not isinstance(value, bool):
            raise CheckpointError(f"config.json: {key} must be true or false; got {value!r}.")
        return value
    raise AssertionError(kind)


def _from_hf_config(config, task):
    if not isinstance(config, dict):
        raise CheckpointError(
            f"config.json must hold a JSON object of settings; it holds a "
            f"{type(config).__name__}.")
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise CheckpointError(
            f"config.json uses hidden_act={activation!r}; VideoMAE models use exact 'gelu'."
        )
    eps = _config_value(config, "layer_norm_eps", 1e-12, "epsilon")
    out = dict(
        num_frames=_config_value(config, "num_frames", 16, "count"),
        image_size=_config_value(config, "image_size", 224, "size"),
        num_heads=_config_value(config, "num_attention_heads", 12, "count"),
        dropout_rate=_config_value(config, "hidden_dropout_prob", 0.0, "rate"),
        attention_dropout_rate=_config_value(config, "attention_probs_dropout_prob", 0.0,
                                             "rate"),
        layer_norm_epsilon=eps,
        # transformers builds fc_norm and decoder.norm with nn.LayerNorm's default eps.
        fc_norm_epsilon=1e-5,
        decoder_layer_norm_epsilon=eps,
        decoder_norm_epsilon=1e-5,
    )
    if task == "pretrainer":
        out["decoder_num_heads"] = _config_value(config, "decoder_num_attention_heads", 6,
                                                 "count")
        out["norm_pix_loss"] = _config_value(config, "norm_pix_loss", True, "flag")
    return out


def _is_keras_file(path):
    return path.endswith(".keras") or path.endswith(".weights.h5")


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
