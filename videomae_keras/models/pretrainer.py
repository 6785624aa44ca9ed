"""The VideoMAE masked-autoencoder pretraining model."""

import numpy as np

import keras
from keras import ops

from videomae_keras.configs import num_masked_tokens
from videomae_keras.layers import InvalidSampleGuard, MaskedTokenIndex, VideoMAEDecoder
from videomae_keras.initializers import TORCH_DEFAULT_KERNEL
from videomae_keras.layers.common import dense
from videomae_keras.layers.tokens import count_mismatches
from videomae_keras.layers.transformer import TransformerStack
from videomae_keras.masking import num_decoded_tokens
from videomae_keras.models.base import VideoMAETask, check_arguments, model_kwargs
from videomae_keras.losses import (
    dual_masking_loss,
    masked_index,
    pretraining_loss,
    pretraining_patches,
    pretraining_targets,
    scale_for_replicas,
)
from videomae_keras.utils import concrete_numpy, static_shape


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEPretrainer(VideoMAETask):
    """Masked video autoencoder: encoder on the visible tokens -> encoder_to_decoder ->
    decoder over [visible, mask tokens] -> pixel predictions for the masked tokens.

    Call it as `model([video, bool_masked_pos])`: video (B, T, H, W, C) float32 normalised
    pixels, bool_masked_pos (B, N) with True = masked. Returns (B, num_masked,
    3 * tubelet * patch * patch), the masked tokens in ascending token order, each vector laid
    out (t, y, x, channel) with the channel fastest, exactly as the official and transformers
    models.

    The number of masked tokens is part of the architecture (static shapes under jit): by
    default tube masking at `mask_ratio` (1408 of 1568 tokens at 0.9 for 16x224); set
    `num_masked` for masks of another kind. An eager call with a mask of another count
    raises; under jit, where values cannot be checked, that sample's output is NaN.

    VideoMAE V2 dual masking (`decoder_mask_ratio` > 0, official 0.5): the model takes
    `[video, bool_masked_pos, decoder_mask]`, decoder_mask (B, N) from
    `RunningCellMaskingGenerator(model.grid, decoder_mask_ratio)` with 1 = not decoded. The
    decoder gets mask tokens at the decoded positions only (visible ones among them too) and
    returns (B, num_decoded, ...) in ascending token order; `compute_loss` averages the
    per-token error over the decoded tokens that are also encoder-masked. The weights are
    those of the plain model, so either can load the other's.

    Args:
        backbone: a `VideoMAEBackbone`, the encoder (official pretraining: a final norm,
            `use_final_norm=True`, and Xavier-uniform kernels); its bias, layer-scale,
            dropout, drop-path and remat settings apply to the decoder too.
        mask_ratio, mask_type: give num_masked as the tube ("tube") or random ("random")
            generator would produce it.
        num_masked: the exact count of masked tokens per sample (overrides mask_ratio).
        norm_pix_loss: train on per-patch normalised pixels (the official default) or on
            plain [0, 1] pixels; see `compute_loss`.
        decoder_mask_ratio: 0 (VideoMAE) or the running-cell decoder mask ratio of VideoMAE
            V2 dual masking; the decoded count, (1 - ratio) of every slice, is static.
        decoder_hidden_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim: the decoder's
            width, blocks, heads and MLP size (ViT-B: 384, 4, 6, 1536).
        decoder_layer_norm_epsilon: the decoder blocks' norms (transformers: 1e-12).
        decoder_norm_epsilon: the decoder's final norm (transformers: 1e-5).
        dtype: dtype policy of the decoder (default: the backbone's).
    """

    def __init__(
        self,
        backbone,
        *,
        mask_ratio=0.9,
        mask_type="tube",
        num_masked=None,
        norm_pix_loss=True,
        decoder_mask_ratio=0.0,
        decoder_hidden_dim=384,
        decoder_depth=4,
        decoder_num_heads=6,
        decoder_mlp_dim=1536,
        decoder_layer_norm_epsilon=1e-6,
        decoder_norm_epsilon=1e-6,
        name="videomae_pretrainer",
        dtype=None,
        **kwargs,
    ):
        dtype = self._task_dtype(backbone, dtype)
        decoder_config = check_arguments(dict(
            decoder_hidden_dim=decoder_hidden_dim, decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads, decoder_mlp_dim=decoder_mlp_dim,
            decoder_layer_norm_epsilon=decoder_layer_norm_epsilon,
            decoder_norm_epsilon=decoder_norm_epsilon,
        ))
        arch = backbone.architecture
        grid = backbone.grid
        num_tokens = grid[0] * grid[1] * grid[2]
        if num_masked is None:
            num_masked = num_masked_tokens(grid, mask_ratio, mask_type)
        num_masked = int(num_masked)
        if not 0 < num_masked < num_tokens:
            raise ValueError(
                f"num_masked must be between 1 and {num_tokens - 1} (of {num_tokens} tokens); "
                f"got {num_masked}."
            )
        video = keras.Input(backbone.video_shape, name="video")
        bool_masked_pos = keras.Input((num_tokens,), dtype="bool", name="bool_masked_pos")
        decoder_mask_ratio = float(decoder_mask_ratio or 0.0)
        num_decoded = num_decoded_tokens(grid, decoder_mask_ratio) or None

        visible_index, masked_index, valid = MaskedTokenIndex(
            num_masked, dtype=dtype, name="token_index"
        )(bool_masked_pos)
        x = backbone.encoder(video, visible_index=visible_index)
        # the official encoder_to_decoder keeps torch's default Linear init
        x = dense(decoder_config["decoder_hidden_dim"], TORCH_DEFAULT_KERNEL,
                  "encoder_to_decoder", dtype, use_bias=False)(x)
        patch = arch["patch_size"]
        decoder = VideoMAEDecoder(
            num_tokens=num_tokens, hidden_dim=decoder_config["decoder_hidden_dim"],
            depth=decoder_config["decoder_depth"], num_heads=decoder_config["decoder_num_heads"],
            mlp_dim=decoder_config["decoder_mlp_dim"],
            output_dim=arch["num_channels"] * arch["tubelet_size"] * patch * patch,
            **{k: arch[k] for k in TransformerStack.SHARED_WITH_DECODER},
            layer_norm_epsilon=decoder_config["decoder_layer_norm_epsilon"],
            norm_epsilon=decoder_config["decoder_norm_epsilon"], dtype=dtype, name="decoder")
        inputs = [video, bool_masked_pos]
        if num_decoded is None:
            x = decoder(x, visible_index, masked_index)
        else:
            decoder_mask = keras.Input((num_tokens,), dtype="bool", name="decoder_mask")
            inputs.append(decoder_mask)
            decoded_index, _, decode_valid = MaskedTokenIndex(
                num_tokens - num_decoded, dtype=dtype, name="decode_index"
            )(decoder_mask)
            x = decoder(x, visible_index, decoded_index)
            x = InvalidSampleGuard(dtype=dtype, name="decoder_mask_guard")(x, decode_valid)
        x = InvalidSampleGuard(dtype=dtype, name="mask_guard")(x, valid)
        super().__init__(inputs=inputs, outputs=x, name=name,
                         **model_kwargs(type(self), kwargs))
        self.backbone = backbone
        self.decoder = decoder
        self.num_masked = num_masked
        self.num_decoded = num_decoded
        self.decoder_mask_ratio = decoder_mask_ratio
        self.norm_pix_loss = bool(norm_pix_loss)
        config = dict(num_masked=num_masked, norm_pix_loss=self.norm_pix_loss,
                      decoder_mask_ratio=decoder_mask_ratio, **decoder_config)
        self._finish_init(config, dtype)

    @classmethod
    def backbone_defaults(cls, task_arguments):
        """The official pretraining encoder: a final norm and Xavier-uniform kernels."""
        return {"use_final_norm": True, "kernel_initializer": "glorot_uniform"}

    @property
    def input_names(self):
        """The inputs in call order: video, bool_masked_pos (and decoder_mask for V2)."""
        names = ["video", "bool_masked_pos"]
        return names if self.num_decoded is None else names + ["decoder_mask"]

    def call(self, inputs, training=None, mask=None):
        inputs = self._split_inputs(inputs, self.input_names)
        shape = self._check_video(inputs[0])
        self._check_mask(inputs[1], shape, self.num_masked)
        if self.num_decoded is not None:
            self._check_decoder_mask(inputs[2], shape)
        return super().call(inputs, training=training, mask=mask)

    def _check_decoder_mask(self, decoder_mask, video_shape):
        """Shape and (eagerly) the decoded count per sample of a V2 decoder mask."""
        shape = static_shape(decoder_mask)
        batch = video_shape[0]
        if (len(shape) != 2 or shape[1] != self.num_tokens
                or (None not in (shape[0], batch) and shape[0] != batch)):
            raise ValueError(
                f"decoder_mask must have shape (batch, {self.num_tokens}), one row per clip "
                f"(1 = not decoded); got shape {shape} for a video batch of {batch}."
            )
        values = concrete_numpy(decoder_mask)
        if values is None:
            return
        decoded = (~np.asarray(values).astype(bool)).sum(-1)
        shown = count_mismatches(decoded, self.num_decoded)
        if shown:
            raise ValueError(
                f"decoder_mask must leave exactly {self.num_decoded} of {self.num_tokens} tokens "
                f"decoded (0) in every sample; got {shown}. Use RunningCellMaskingGenerator("
                f"{tuple(self.grid)}, {self.decoder_mask_ratio})."
            )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The VideoMAE loss, so `compile(optimizer)` + `fit([video, mask])` trains: MSE
        between the predictions and the (norm-pix) targets of the masked tokens (with dual
        masking, the V2 loss: see `_dual_masking_loss`). `y` is not used (the targets come
        from the video); a compiled loss, if any, is added."""
        inputs = self._split_inputs(x, self.input_names)
        if self.num_decoded is None:
            config = self.architecture
            targets = pretraining_targets(
                inputs[0], inputs[1], self.num_masked, config["tubelet_size"],
                config["patch_size"], self.norm_pix_loss,
            )
            loss = scale_for_replicas(pretraining_loss(y_pred, targets))
        else:
            loss = scale_for_replicas(self._dual_masking_loss(*inputs, y_pred))
        if y is not None and getattr(self, "_compile_loss", None) is not None:
            extra = self._compile_loss(y, y_pred, sample_weight)
            if extra is not None:
                loss = loss + extra
        for extra in self.losses:
            loss = loss + scale_for_replicas(ops.cast(extra, "float32"))
        return loss

    def _dual_masking_loss(self, video, bool_masked_pos, decoder_mask, y_pred):
        """VideoMAE V2: targets at the decoded tokens (ascending), each token weighted by
        its encoder mask, sum(weight * token MSE) / sum(weight)."""
        config = self.architecture
        patches = pretraining_patches(
            video, config["tubelet_size"], config["patch_size"], self.norm_pix_loss
        )
        decoded = ops.equal(ops.cast(decoder_mask, "int32"), 0)
        index = masked_index(decoded, self.num_decoded)
        targets = ops.take_along_axis(patches, index[..., None], axis=1)
        weights = ops.take_along_axis(ops.cast(bool_masked_pos, "float32"), index, axis=1)
        return dual_masking_loss(y_pred, targets, weights)
