"""The masked-autoencoder loss of VideoMAE, in keras.ops with static shapes.

Target (official `engine_for_pretraining.py`, transformers' VideoMAEForPreTraining): the
input is un-normalised with the ImageNet mean and std, cut into tubelet patches (token
order t, h, w; pixels t, y, x; channel fastest) and, with `norm_pix_loss`, each patch is
normalised per channel by its mean and sqrt(unbiased variance) + 1e-6. The loss is the mean
squared error over the masked tokens only, taken in ascending token order (the order of the
pretraining model's predictions). VideoMAE V2 dual masking (`dual_masking_loss`) predicts the
decoded tokens instead and averages over those that are also masked.
"""

import keras
from keras import ops

from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD
from videomae_keras.patches import patchify


def masked_index(bool_masked_pos, num_masked):
    """(B, num_masked) indices of the masked tokens in ascending order (tie-free sort)."""
    num_tokens = bool_masked_pos.shape[-1]
    key = ops.cast(bool_masked_pos, "int32") * num_tokens + ops.arange(num_tokens, dtype="int32")
    return ops.argsort(key, axis=-1)[:, num_tokens - num_masked:]


def pretraining_patches(video, tubelet_size=2, patch_size=16, norm_pix_loss=True,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(B, N, tubelet * p * p * C) float32 targets for every token, in token order."""
    video = ops.cast(video, "float32")
    channels = video.shape[-1]
    if channels == len(mean):
        video = video * ops.convert_to_tensor(std, "float32") + ops.convert_to_tensor(
            mean, "float32")
    patches = patchify(video, tubelet_size, patch_size, ops=ops)
    if norm_pix_loss:
        pixels = patches.shape[-2]
        centred = patches - ops.mean(patches, axis=-2, keepdims=True)
        variance = ops.sum(ops.square(centred), axis=-2, keepdims=True) / (pixels - 1)
        patches = centred / (ops.sqrt(variance) + 1e-6)
    return ops.reshape(patches, (-1, patches.shape[1], patches.shape[2] * channels))


def pretraining_targets(video, bool_masked_pos, num_masked, tubelet_size=2, patch_size=16,
                        norm_pix_loss=True, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(B, num_masked, tubelet * p * p * C) float32 targets for the masked tokens."""
    patches = pretraining_patches(video, tubelet_size, patch_size, norm_pix_loss, mean, std)
    index = masked_index(bool_masked_pos, num_masked)
    return ops.take_along_axis(patches, index[..., None], axis=1)


def pretraining_loss(predictions, targets):
    """Mean squared error over every masked token and value (float32)."""
    return ops.mean(ops.square(ops.cast(predictions, "float32") - targets))


def dual_masking_loss(predictions, targets, weights):
    """VideoMAE V2: the per-token mean squared error, averaged with (B, K) 0/1 weights
    (decoded tokens that are encoder-masked); 0 rather than NaN when no weight is set."""
    per_token = ops.mean(ops.square(ops.cast(predictions, "float32") - targets), axis=-1)
    weights = ops.cast(weights, "float32")
    return ops.sum(per_token * weights) / ops.maximum(ops.sum(weights), 1.0)


def scale_for_replicas(loss):
    """Divides a per-replica mean loss by the replica count under tf.distribute (what Keras
    does for compiled losses), so gradients summed over replicas average instead."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / float(replicas)
    return loss


@keras.saving.register_keras_serializable(package="videomae_keras")
class SmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits with label smoothing (official 0.1). Takes integer labels
    (B,), smoothed here, or soft targets (B, num_classes) from `VideoMixup`, used as given
    (they carry their smoothing already)."""

    def __init__(self, num_classes, label_smoothing=0.1, name="smoothed_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if len(y_true.shape) == 2 and y_true.shape[-1] == self.num_classes:
            target = ops.cast(y_true, "float32")
        else:
            target = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"),
                                 self.num_classes)
            if self.label_smoothing:
                target = target * (1.0 - self.label_smoothing) + (
                    self.label_smoothing / self.num_classes)
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        return -ops.sum(target * log_probs, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, label_smoothing=self.label_smoothing)
        return config
