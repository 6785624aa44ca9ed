"""The fine-tuned VideoMAE video classifier."""

import keras

from videomae_keras.initializers import official_trunc_normal
from videomae_keras.layers import TokenPooling
from videomae_keras.layers.common import dense, layer_norm
from videomae_keras.models.base import VideoMAEModelBase, split_encoder_kwargs


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEClassifier(VideoMAEModelBase):
    """Video classifier: encoder -> mean over tokens -> fc_norm -> dropout -> head.

    Takes (B, T, H, W, C) float32 normalised pixels and returns (B, num_classes) logits
    (or the pooled (B, hidden_dim) features when num_classes is 0). With
    `use_mean_pooling=False` the encoder's final norm runs over all tokens and the first token
    feeds the head (the official `--use_cls` variant; VideoMAE has no cls token).

    Args:
        num_classes: number of output classes (400 for Kinetics-400, 174 for SSv2).
        use_mean_pooling: mean pooling + fc_norm (every released model) or first token.
        fc_norm_epsilon: LayerNorm epsilon after pooling (official 1e-6, transformers 1e-5).
        head_dropout_rate: dropout before the head (official fc_drop_rate / head_drop_rate).
        head_init_scale: the head's initial weights are scaled by this (official 0.001).
        class_names: the name of each class, in head order (saved with the model, so
            `predict_video` and `videomae-keras predict` show them), or None.
        dtype: dtype policy, e.g. "mixed_bfloat16"; the head always computes in float32.
        **kwargs: encoder arguments, see `videomae_keras.configs.ENCODER_DEFAULTS`
            (num_frames, image_size, patch_size, hidden_dim, depth, num_heads, mlp_dim,
            drop_path_rate, layer_norm_epsilon, ...).
    """

    def __init__(
        self,
        num_classes=400,
        *,
        use_mean_pooling=True,
        fc_norm_epsilon=1e-6,
        head_dropout_rate=0.0,
        head_init_scale=0.001,
        class_names=None,
        name="videomae_classifier",
        dtype=None,
        **kwargs,
    ):
        config, model_kwargs = split_encoder_kwargs(kwargs)
        num_classes = _check_count("num_classes", num_classes)
        class_names = _check_class_names(class_names, num_classes)
        video, grid = self._video_input(config)
        # official fine-tuning init: trunc_normal_(std=0.02) Linear weights
        encoder = self._make_encoder(
            config, use_final_norm=not use_mean_pooling,
            kernel_initializer=official_trunc_normal(0.02), dtype=dtype,
        )
        x = encoder(video)
        x = TokenPooling("mean" if use_mean_pooling else "first", dtype=dtype, name="pool")(x)
        if use_mean_pooling:
            x = layer_norm(fc_norm_epsilon, "fc_norm", dtype)(x)
        x = keras.layers.Dropout(head_dropout_rate, dtype=dtype, name="head_dropout")(x)
        if num_classes > 0:
            # trunc_normal_(std=0.02), then weight and (zero) bias times init_scale
            x = dense(num_classes, official_trunc_normal(0.02, head_init_scale), "head",
                      _head_dtype(dtype))(x)
        super().__init__(inputs=video, outputs=x, name=name, **model_kwargs)
        self.encoder = encoder
        config.update(
            num_classes=int(num_classes),
            use_mean_pooling=bool(use_mean_pooling),
            fc_norm_epsilon=float(fc_norm_epsilon),
            head_dropout_rate=float(head_dropout_rate),
            head_init_scale=float(head_init_scale),
        )
        if class_names is not None:
            config["class_names"] = list(class_names)
        self.class_names = class_names
        self._finish_init(config, grid, dtype)

    def call(self, inputs, training=None, mask=None):
        (video,) = self._split_inputs(inputs, ["video"])
        self._check_video(video)
        return super().call(video, training=training, mask=mask)


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < 0:
        raise ValueError(f"{name} must be a whole number, 0 or more (0: no head, pooled "
                         f"features out); got {value!r}.")
    return int(value)


def _check_class_names(names, num_classes):
    """The class names as a tuple of strings, one per class, or None."""
    if names is None:
        return None
    if isinstance(names, str):
        raise ValueError("class_names must be a list of names, one per class; got a string.")
    names = tuple(str(n) for n in names)
    if len(names) != num_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the head has {num_classes} classes."
        )
    if len(set(names)) != len(names):
        raise ValueError("class_names repeat; each class needs its own name.")
    return names


def _head_dtype(dtype):
    """Heads compute in float32 under mixed precision, as keras-hub and the official code do."""
    if dtype is None:
        return None
    policy = keras.dtype_policies.get(dtype)
    if policy.compute_dtype != policy.variable_dtype:
        return "float32"
    return policy
