"""The fine-tuned VideoMAE video classifier."""

import keras

from videomae_keras.initializers import official_trunc_normal
from videomae_keras.layers import TokenPooling
from videomae_keras.layers.common import dense, layer_norm
from videomae_keras.models.base import VideoMAETask, model_kwargs


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEClassifier(VideoMAETask):
    """Video classifier: backbone -> mean over tokens -> fc_norm -> dropout -> head.

    Takes (B, T, H, W, C) float32 normalised pixels and returns (B, num_classes) logits
    (or the pooled (B, hidden_dim) features when num_classes is 0). With
    `use_mean_pooling=False` the first token feeds the head (the official `--use_cls`
    variant, whose backbone has a final norm; VideoMAE has no cls token).

    `VideoMAEClassifier(pretrainer.backbone, num_classes=174)` shares the pretrained
    backbone, final norm included; the official fine-tuning recipe drops that norm and
    raises drop path, which `videomae_keras.training.classifier_from_pretrained` does.

    Args:
        backbone: a `VideoMAEBackbone` (mean-pooling models: `use_final_norm=False`).
        num_classes: number of output classes (400 for Kinetics-400, 174 for SSv2); 0 for
            no head.
        use_mean_pooling: mean pooling + fc_norm (every released model) or first token.
        fc_norm_epsilon: LayerNorm epsilon after pooling (official 1e-6, transformers 1e-5).
        head_dropout_rate: dropout before the head (official fc_drop_rate / head_drop_rate).
        head_init_scale: the head's initial weights are scaled by this (official 0.001).
        class_names: the name of each class, in head order (saved with the model, so
            `predict_video` and `videomae-keras predict` show them), or None.
        dtype: dtype policy of the pooling and norm (default: the backbone's); the head
            always computes in float32 under mixed precision.
    """

    def __init__(
        self,
        backbone,
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
        dtype = self._task_dtype(backbone, dtype)
        num_classes = _check_count("num_classes", num_classes)
        class_names = _check_class_names(class_names, num_classes)
        video = keras.Input(backbone.video_shape, name="video")
        x = backbone.encoder(video)
        x = TokenPooling("mean" if use_mean_pooling else "first", dtype=dtype, name="pool")(x)
        if use_mean_pooling:
            x = layer_norm(fc_norm_epsilon, "fc_norm", dtype)(x)
        x = keras.layers.Dropout(head_dropout_rate, dtype=dtype, name="head_dropout")(x)
        if num_classes > 0:
            # official fine-tuning init: trunc_normal_(std=0.02), then weight and (zero)
            # bias times init_scale
            x = dense(num_classes, official_trunc_normal(0.02, head_init_scale), "head",
                      _head_dtype(dtype))(x)
        super().__init__(inputs=video, outputs=x, name=name,
                         **model_kwargs(type(self), kwargs))
        self.backbone = backbone
        config = dict(
            num_classes=int(num_classes),
            use_mean_pooling=bool(use_mean_pooling),
            fc_norm_epsilon=float(fc_norm_epsilon),
            head_dropout_rate=float(head_dropout_rate),
            head_init_scale=float(head_init_scale),
        )
        if class_names is not None:
            config["class_names"] = list(class_names)
        self.class_names = class_names
        self._finish_init(config, dtype)

    @classmethod
    def backbone_defaults(cls, task_arguments):
        """Mean-pooling models have no final norm; first-token models have one."""
        return {"use_final_norm": not task_arguments.get("use_mean_pooling", True)}

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
