"""What the VideoMAE models share: argument checks, the video input and its checks, and the
task contract (a task model wraps a `VideoMAEBackbone` and serialises it in its config)."""

import inspect
import warnings

import keras

from videomae_keras.configs import as_pair, grid_size
from videomae_keras.layers.transformer import check_remat
from videomae_keras.utils import static_shape

_COUNTS = ("num_frames", "num_channels", "patch_size", "tubelet_size", "hidden_dim", "depth",
           "num_heads", "mlp_dim", "decoder_hidden_dim", "decoder_depth", "decoder_num_heads",
           "decoder_mlp_dim")
_RATES = ("dropout_rate", "attention_dropout_rate", "drop_path_rate")
_EPSILONS = ("layer_norm_epsilon", "decoder_layer_norm_epsilon", "decoder_norm_epsilon")


def _whole(value):
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and float(value).is_integer())


def check_arguments(config):
    """One sentence for the first argument out of range (a count below 1, a rate outside
    [0, 1), a non-positive epsilon), instead of an error deep inside a layer. Counts come
    back as ints and a square image size as one int."""
    for key in _COUNTS:
        if key in config and not (_whole(config[key]) and config[key] >= 1):
            raise ValueError(f"{key} must be a whole number of at least 1; got {config[key]!r}.")
        if key in config:
            config[key] = int(config[key])
    if "image_size" in config:
        size = config["image_size"]
        sizes = size if isinstance(size, (list, tuple)) else [size]
        if not sizes or len(sizes) > 2 or not all(_whole(v) and v >= 1 for v in sizes):
            raise ValueError(f"image_size must be a positive size (224) or (height, width); "
                             f"got {size!r}.")
        height, width = as_pair(size)
        config["image_size"] = height if height == width else (height, width)
    for key in _RATES:
        value = config.get(key)
        if key in config and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 <= value < 1):
            raise ValueError(f"{key} must be a number in [0, 1); got {value!r}.")
    for key in _EPSILONS:
        value = config.get(key)
        if key in config and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value > 0):
            raise ValueError(f"{key} must be a positive number; got {value!r}.")
    if not isinstance(config.get("remat", False), bool):
        raise ValueError(f"remat must be True or False; got {config['remat']!r}.")
    if "hidden_dim" in config:
        check_remat(config.get("remat"), config.get("dropout_rate"),
                    config.get("attention_dropout_rate"))
        if config["hidden_dim"] % config["num_heads"]:
            raise ValueError(f"hidden_dim={config['hidden_dim']} is not divisible by "
                             f"num_heads={config['num_heads']}; choose a head count that "
                             "divides it.")
    if "decoder_hidden_dim" in config and config["decoder_hidden_dim"] % config[
            "decoder_num_heads"]:
        raise ValueError(f"decoder_hidden_dim={config['decoder_hidden_dim']} is not divisible "
                         f"by decoder_num_heads={config['decoder_num_heads']}.")
    return config


def _layer_mode(layer):
    """The quantization mode of one layer ("int8", ...), None for a float layer."""
    return getattr(layer.dtype_policy, "quantization_mode", None)


def quantization_mode(model):
    """The mode ("int8", ...) `model.quantize` gave this model's layers, or None. A task's
    backbone reports its own, so each config says what its part needs rebuilt."""
    modes = {_layer_mode(layer) for layer in model._flatten_layers(include_self=False)}
    modes.discard(None)
    if len(modes) > 1:
        raise ValueError(f"{model.name} mixes quantization modes {sorted(modes)}; a VideoMAE "
                         "model saves one mode (quantize it once, with one mode).")
    return modes.pop() if modes else None


def quantize_remaining(model, mode):
    """`model.quantize(mode)` for the layers not quantized yet: a task's backbone comes
    quantized from its own config, and a reloaded int8 model is already int8 (Keras refuses
    to quantize a layer twice). Layers with nothing to quantize stay quiet."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
        model.quantize(mode, filters=lambda layer: _layer_mode(layer) is None)


def video_shape(config):
    """The (T, H, W, C) clip shape of a backbone config."""
    height, width = as_pair(config["image_size"])
    return (config["num_frames"], height, width, config["num_channels"])


def default_arguments(cls):
    """{argument: default} of `cls.__init__` (the backbone's defaults are ViT-B at 16x224)."""
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not p.empty}


def arguments_of(cls):
    """The keyword arguments `cls.__init__` names (its signature is the table)."""
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def settle_layer_paths(model):
    """Gives each sub-layer that building the graph did not call the name-scope path that
    its first call would record, so that the first call changes nothing.

    Keras records a layer's `_parent_path` when the layer is first called; our layers build
    their sub-layers without calling them (dropout, the position table), and torch.compile
    guards on that attribute: the first compiled call set it, the second failed the guard
    and compiled the whole step again (ViT-B inference on an H200: 43 s, twice; the train
    step twice as long). The path is the one Keras gives: the owner's path, then its name.
    """
    def visit(layer, path):
        for child in layer._layers:
            if isinstance(child, keras.layers.InputLayer):
                continue
            if child._parent_path is None:
                child._parent_path = path
            visit(child, "/".join(p for p in (child._parent_path, child.name) if p))

    visit(model, "")


class VideoMAEModelBase(keras.Model):
    """Base of the VideoMAE models: a functional graph built in `__init__` from plain arguments.

    `get_config` returns those arguments and `from_config` calls the class with them, so
    `.keras` files hold no graph, only the architecture and the weights.
    """

    def _finish_init(self, config, dtype):
        """Records the constructor arguments and turns off Keras' generic shape check."""
        self._videomae_config = dict(config)
        self._videomae_dtype = dtype
        # Our own checks in `call` give clearer messages than Keras' InputSpec.
        self.input_spec = None
        settle_layer_paths(self)

    def make_train_function(self, force=False):
        """Keras' train function, after `kernels.prepare_compiled_training` (on torch with
        jit_compile, gradients before the first step, so the step compiles once)."""
        from videomae_keras import kernels

        kernels.prepare_compiled_training(self)
        return super().make_train_function(force)

    def predict_on_batch(self, x):
        """Keras' `predict_on_batch`, with the model's variables gathered once per call.

        Keras asks for `trainable_variables` and `non_trainable_variables` twice each per
        call (to pass the state in and to write it back), and each walks every sub-layer:
        4 x 0.64 ms for a 24-block model on a CPU core, most of the fixed per-call cost that
        a GPU's small batches feel (4.2 ms per call against 0.76 ms for the jitted function
        itself). The list is gathered at the start of the call and dropped at its end, so
        nothing stale outlives it. (Only jax's trainer passes the state around.)"""
        if keras.backend.backend() != "jax":
            return super().predict_on_batch(x)
        object.__setattr__(self, "_videomae_gathered", super().variables)
        try:
            return super().predict_on_batch(x)
        finally:
            object.__setattr__(self, "_videomae_gathered", None)

    @property
    def variables(self):
        gathered = self.__dict__.get("_videomae_gathered")
        return list(gathered) if gathered is not None else super().variables

    @property
    def architecture(self):
        """The backbone's arguments (sizes, depth, heads, ...), for this model or its task."""
        return self._videomae_config

    @property
    def grid(self):
        """The (T', H', W') token grid of the clips the model was built for."""
        cfg = self.architecture
        return grid_size(cfg["num_frames"], cfg["image_size"], cfg["patch_size"],
                         cfg["tubelet_size"])

    @property
    def num_tokens(self):
        """Tokens per clip: (T / tubelet) * (H / patch) * (W / patch)."""
        frames, height, width = self.grid
        return frames * height * width

    @property
    def video_shape(self):
        """The (T, H, W, C) clip shape the model was built for."""
        return video_shape(self.architecture)

    def _check_video(self, video):
        shape = static_shape(video)
        self.encoder.patch_embed.check_video_shape(shape)
        if tuple(shape[1:]) != self.video_shape:
            frames, height, width, _ = shape[1:]
            raise ValueError(
                f"{self.name} was built for clips of shape {self.video_shape} (frames, height, "
                f"width, channels); got {tuple(shape[1:])}. Build the model with "
                f"num_frames={frames}, image_size={height if height == width else (height, width)} "
                "to run on these clips: the weights carry over, since the position table is "
                "recomputed, not learned."
            )
        return shape

    def _split_inputs(self, inputs, names):
        """The model's inputs in `names` order, from a list, tuple, dict or single tensor."""
        if isinstance(inputs, dict):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(
                    f"{self.name} takes inputs {names}; the dict lacks {missing}."
                )
            return [inputs[n] for n in names]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != len(names):
                raise ValueError(
                    f"{self.name} takes {len(names)} input(s) {names}; got {len(inputs)}."
                )
            return list(inputs)
        if len(names) != 1:
            raise ValueError(
                f"{self.name} takes inputs {names}, e.g. model([video, bool_masked_pos]); got "
                "one tensor."
            )
        return [inputs]

    def _check_mask(self, mask, video_shape, num_masked):
        shape = static_shape(mask)
        if len(shape) != 2 or shape[1] != self.num_tokens:
            raise ValueError(
                f"bool_masked_pos must have shape (batch, {self.num_tokens}): one flag per token "
                f"of the {self.grid[0]}x{self.grid[1]}x{self.grid[2]} token grid, True = "
                f"masked; got shape {shape}."
            )
        if None not in (shape[0], video_shape[0]) and shape[0] != video_shape[0]:
            raise ValueError(
                f"bool_masked_pos has {shape[0]} rows but the video batch has {video_shape[0]} "
                "clips; give one mask per clip."
            )

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        if self._videomae_dtype is not None:
            config["dtype"] = keras.dtype_policies.serialize(
                keras.dtype_policies.get(self._videomae_dtype)
            )
        config.update(self._videomae_config)
        if not config.get("remat"):
            config.pop("remat", None)  # a training setting: files stay as they were without it
        mode = quantization_mode(self)
        if mode:
            config["quantization"] = mode  # the model's own Dense layers were quantized
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        mode = config.pop("quantization", None)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        if isinstance(config.get("image_size"), list):
            config["image_size"] = tuple(config["image_size"])
        model = cls(**config)
        if mode:
            quantize_remaining(model, mode)
        return model

    @classmethod
    def from_arguments(cls, **arguments):
        """The model from one flat set of arguments (see `arguments`)."""
        return cls(**arguments)

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """The model from a preset folder (written by `save_to_preset`) or a registered name
        (downloaded and converted once, through the cache). A backbone class gives the
        backbone of any preset; a task class over a preset of another kind builds a new task
        over its backbone, with `kwargs` (e.g. `num_classes=174`)."""
        from videomae_keras.models.preset import load_preset

        return load_preset(cls, preset, **kwargs)

    def save_to_preset(self, preset_dir, overwrite=False):
        """Writes the model as a preset folder in keras-hub's layout: config.json and
        model.weights.h5 (the backbone), task.json and task.weights.h5 (a task), and
        metadata.json. An existing folder is replaced only with `overwrite=True`."""
        from videomae_keras.models.preset import save_to_preset

        return save_to_preset(self, preset_dir, overwrite=overwrite)

    def arguments(self):
        """Every constructor argument of this model, its backbone's included, as one flat
        dict: `type(model).from_arguments(**{**model.arguments(), "num_frames": 32})` is the
        same model for other clips (the weights carry over with `set_weights`)."""
        config = {}
        if isinstance(self, VideoMAETask):
            config.update(self.backbone._videomae_config)
        config.update(self._videomae_config, name=self.name)
        if self._videomae_dtype is not None:
            config["dtype"] = self._videomae_dtype
        if not config.get("remat"):
            config.pop("remat", None)
        return config


class VideoMAETask(VideoMAEModelBase):
    """A model over a `VideoMAEBackbone` (keras-hub's Task contract): `model.backbone` is that
    backbone, shared, not copied; the config holds it serialised under "backbone".

    The task's graph calls the backbone's encoder layer itself, so its weights sit where
    release 0.1 files (which had no backbone) put them and those files load unchanged.
    """

    @staticmethod
    def _task_dtype(backbone, dtype):
        """The backbone checked, and the dtype policy the task's own layers use (the
        backbone's unless one is given)."""
        from videomae_keras.models.backbone import VideoMAEBackbone

        if not isinstance(backbone, VideoMAEBackbone):
            raise TypeError(
                f"The first argument must be a VideoMAEBackbone; got {type(backbone).__name__}. "
                "Build one with VideoMAEBackbone(...) or VideoMAEBackbone.from_preset(...), "
                "or use a factory such as VideoMAE_ViTB16FT()."
            )
        return backbone._videomae_dtype if dtype is None else dtype

    @property
    def encoder(self):
        """The backbone's encoder layer (embedding, blocks, final norm)."""
        return self.backbone.encoder

    @property
    def architecture(self):
        return self.backbone.architecture

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.layers.serialize(self.backbone)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "backbone" not in config:  # release 0.1: one flat dict of every argument
            if isinstance(config.get("dtype"), dict):
                config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
            return cls.from_arguments(**config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"],
                                                          custom_objects=custom_objects)
        return super().from_config(config, custom_objects)

    @classmethod
    def backbone_defaults(cls, task_arguments):
        """Backbone arguments this task implies unless given (final norm, initialiser)."""
        return {}

    @classmethod
    def from_arguments(cls, **arguments):
        """The task and a new backbone from one flat set of arguments (the backbone's and the
        task's together, as checkpoints, the factories and release-0.1 configs give them):
        `VideoMAEClassifier.from_arguments(hidden_dim=384, depth=12, num_classes=400)`."""
        from videomae_keras.models.backbone import VideoMAEBackbone

        backbone_arguments, task_arguments = split_arguments(cls, arguments)
        for key, value in cls.backbone_defaults(task_arguments).items():
            backbone_arguments.setdefault(key, value)
        return cls(VideoMAEBackbone(**backbone_arguments), **task_arguments)


def split_arguments(cls, arguments):
    """(backbone arguments, task arguments) from one flat dict; `dtype` goes to both, a name
    neither takes raises one TypeError that lists what they take."""
    from videomae_keras.models.backbone import VideoMAEBackbone

    task_names = (set(arguments_of(cls)) - {"backbone"}) | {"trainable"}
    backbone_names = set(arguments_of(VideoMAEBackbone)) - {"name"}
    unknown = sorted(set(arguments) - task_names - backbone_names)
    if unknown:
        raise TypeError(
            f"Unknown argument(s) {', '.join(unknown)}. {cls.__name__} takes: "
            f"{', '.join(sorted(task_names | backbone_names))}."
        )
    task = {k: v for k, v in arguments.items() if k in task_names}
    backbone = {k: v for k, v in arguments.items() if k not in task_names}
    if "dtype" in arguments:
        backbone["dtype"] = arguments["dtype"]
    if "trainable" in arguments:
        backbone["trainable"] = arguments["trainable"]
    return backbone, task


def model_kwargs(cls, kwargs):
    """The Keras arguments a VideoMAE model passes on (`trainable`); any other name raises one
    TypeError that lists the model's own arguments."""
    unknown = sorted(set(kwargs) - {"trainable"})
    if unknown:
        raise TypeError(
            f"Unknown argument(s) {', '.join(unknown)}. {cls.__name__} takes: "
            f"{', '.join(arguments_of(cls))}."
        )
    return kwargs
