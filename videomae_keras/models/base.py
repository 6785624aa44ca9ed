"""What the three VideoMAE models share: encoder arguments, the video input and its checks."""

import keras

from videomae_keras.configs import ENCODER_DEFAULTS, as_pair, grid_size
from videomae_keras.layers import VideoMAEEncoder
from videomae_keras.layers.transformer import check_remat
from videomae_keras.utils import static_shape

_MODEL_KWARGS = ("trainable",)


def split_encoder_kwargs(kwargs, extra_defaults=None):
    """Fills encoder arguments from ENCODER_DEFAULTS (and `extra_defaults`); unknown names raise."""
    defaults = dict(ENCODER_DEFAULTS, **(extra_defaults or {}))
    unknown = sorted(set(kwargs) - set(defaults) - set(_MODEL_KWARGS))
    if unknown:
        raise TypeError(
            f"Unknown argument(s) {', '.join(unknown)}. VideoMAE models take: "
            f"{', '.join(sorted(defaults))}."
        )
    config = {k: kwargs.get(k, v) for k, v in defaults.items()}
    _check_arguments(config)
    height, width = as_pair(config["image_size"])
    config["image_size"] = height if height == width else (height, width)
    model_kwargs = {k: kwargs[k] for k in _MODEL_KWARGS if k in kwargs}
    return config, model_kwargs


_COUNTS = ("num_frames", "num_channels", "patch_size", "tubelet_size", "hidden_dim", "depth",
           "num_heads", "mlp_dim", "decoder_hidden_dim", "decoder_depth", "decoder_num_heads",
           "decoder_mlp_dim")
_RATES = ("dropout_rate", "attention_dropout_rate", "drop_path_rate")
_EPSILONS = ("layer_norm_epsilon", "decoder_layer_norm_epsilon", "decoder_norm_epsilon")


def _whole(value):
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and float(value).is_integer())


def _check_arguments(config):
    """One sentence for the first argument out of range (a count below 1, a rate outside
    [0, 1), a non-positive epsilon), instead of an error deep inside a layer."""
    for key in _COUNTS:
        if key in config and not (_whole(config[key]) and config[key] >= 1):
            raise ValueError(f"{key} must be a whole number of at least 1; got {config[key]!r}.")
        if key in config:
            config[key] = int(config[key])
    size = config["image_size"]
    sizes = size if isinstance(size, (list, tuple)) else [size]
    if not sizes or len(sizes) > 2 or not all(_whole(v) and v >= 1 for v in sizes):
        raise ValueError(f"image_size must be a positive size (224) or (height, width); got "
                         f"{size!r}.")
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
    check_remat(config.get("remat"), config.get("dropout_rate"),
                config.get("attention_dropout_rate"))
    if config["hidden_dim"] % config["num_heads"]:
        raise ValueError(f"hidden_dim={config['hidden_dim']} is not divisible by "
                         f"num_heads={config['num_heads']}; choose a head count that divides it.")
    if "decoder_hidden_dim" in config and config["decoder_hidden_dim"] % config[
            "decoder_num_heads"]:
        raise ValueError(f"decoder_hidden_dim={config['decoder_hidden_dim']} is not divisible "
                         f"by decoder_num_heads={config['decoder_num_heads']}.")


class VideoMAEModelBase(keras.Model):
    """Base of the VideoMAE models: a functional graph built in `__init__` from plain arguments.

    `get_config` returns those arguments and `from_config` calls the class with them, so
    `.keras` files hold no graph, only the architecture and the weights.
    """

    @staticmethod
    def _video_input(config):
        grid = grid_size(
            config["num_frames"], config["image_size"], config["patch_size"], config["tubelet_size"]
        )
        height, width = as_pair(config["image_size"])
        video = keras.Input(
            (config["num_frames"], height, width, config["num_channels"]), name="video"
        )
        return video, grid

    @staticmethod
    def _make_encoder(config, use_final_norm, kernel_initializer, dtype):
        return VideoMAEEncoder(
            hidden_dim=config["hidden_dim"],
            depth=config["depth"],
            num_heads=config["num_heads"],
            mlp_dim=config["mlp_dim"],
            patch_size=config["patch_size"],
            tubelet_size=config["tubelet_size"],
            num_channels=config["num_channels"],
            qv_bias=config["qv_bias"],
            init_values=config["init_values"],
            dropout_rate=config["dropout_rate"],
            attention_dropout_rate=config["attention_dropout_rate"],
            drop_path_rate=config["drop_path_rate"],
            layer_norm_epsilon=config["layer_norm_epsilon"],
            remat=config["remat"],
            use_final_norm=use_final_norm,
            kernel_initializer=kernel_initializer,
            dtype=dtype,
            name="encoder",
        )

    def _finish_init(self, config, grid, dtype):
        """Records the constructor arguments and turns off Keras' generic shape check."""
        self._videomae_config = dict(config)
        self._videomae_dtype = dtype
        self.grid = grid
        # Our own checks in `call` give clearer messages than Keras' InputSpec.
        self.input_spec = None

    @property
    def num_tokens(self):
        """Tokens per clip: (T / tubelet) * (H / patch) * (W / patch)."""
        frames, height, width = self.grid
        return frames * height * width

    @property
    def video_shape(self):
        """The (T, H, W, C) clip shape the model was built for."""
        cfg = self._videomae_config
        height, width = as_pair(cfg["image_size"])
        return (cfg["num_frames"], height, width, cfg["num_channels"])

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
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        if isinstance(config.get("image_size"), list):
            config["image_size"] = tuple(config["image_size"])
        return cls(**config)
