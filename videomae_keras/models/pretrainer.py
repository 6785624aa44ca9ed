"""The VideoMAE masked-autoencoder pretraining model."""

import numpy as np

import keras
from keras import ops

from videomae_keras.configs import DECODER_DEFAULTS, num_masked_tokens
from videomae_keras.layers import InvalidSampleGuard, MaskedTokenIndex, VideoMAEDecoder
from videomae_keras.initializers import TORCH_DEFAULT_KERNEL
from videomae_keras.layers.common import dense
from videomae_keras.layers.tokens import count_mismatches
from videomae_keras.masking import num_decoded_tokens
from videomae_keras.models.base import VideoMAEModelBase, split_encoder_kwargs
from videomae_keras.training.losses import (
    dual_masking_loss,
    masked_index,
    pretraining_loss,
    pretraining_patches,
    pretraining_targets,
    scale_for_replicas,
)
from videomae_keras.utils import concrete_numpy, static_shape


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEPretrainer(VideoMAEModelBase):
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
        mask_ratio, mask_type: give num_masked as the tube ("tube") or random ("random")
            generator would produce it.
        num_masked: the exact count of masked tokens per sample (overrides mask_ratio).
        norm_pix_loss: train on per-patch normalised pixels (the official default) or on
            plain [0, 1] pixels; see `compute_loss`.
        decoder_mask_ratio: 0 (VideoMAE) or the running-cell decoder mask ratio of VideoMAE
            V2 dual masking; the decoded count, (1 - ratio) of every slice, is static.
        use_final_norm: the encoder's final LayerNorm before the decoder (official models
            and transformers hub configs have it; a transformers config with
            use_mean_pooling=True has none).
        decoder_*: decoder width, depth, heads, MLP size and LayerNorm epsilons, see
            `videomae_keras.configs.DECODER_DEFAULTS`.
        dtype: dtype policy, e.g. "mixed_bfloat16".
        **kwargs: encoder arguments, see `videomae_keras.configs.ENCODER_DEFAULTS`.
    """

    def __init__(
        self,
        *,
        mask_ratio=0.9,
        mask_type="tube",
        num_masked=None,
        use_final_norm=True,
        norm_pix_loss=True,
        decoder_mask_ratio=0.0,
        name="videomae_pretrainer",
        dtype=None,
        **kwargs,
    ):
        config, model_kwargs = split_encoder_kwargs(kwargs, DECODER_DEFAULTS)
        video, grid = self._video_input(config)
        num_tokens = grid[0] * grid[1] * grid[2]
        if num_masked is None:
            num_masked = num_masked_tokens(grid, mask_ratio, mask_type)
        num_masked = int(num_masked)
        if not 0 < num_masked < num_tokens:
            raise ValueError(
                f"num_masked must be between 1 and {num_tokens - 1} (of {num_tokens} tokens); "
                f"got {num_masked}."
            )
        bool_masked_pos = keras.Input((num_tokens,), dtype="bool", name="bool_masked_pos")
        decoder_mask_ratio = float(decoder_mask_ratio or 0.0)
        num_decoded = num_decoded_tokens(grid, decoder_mask_ratio) or None

        encoder = self._make_encoder(
            config,
            use_final_norm=use_final_norm,
            kernel_initializer="glorot_uniform",
            dtype=dtype,
        )
        visible_index, masked_index, valid = MaskedTokenIndex(
            num_masked, dtype=dtype, name="token_index"
        )(bool_masked_pos)
        x = encoder(video, visible_index=visible_index)
        # the official encoder_to_decoder keeps torch's default Linear init
        x = dense(config["decoder_hidden_dim"], TORCH_DEFAULT_KERNEL, "encoder_to_decoder", dtype,
                  use_bias=False)(x)
        patch = config["patch_size"]
        decoder = VideoMAEDecoder(
            num_tokens=num_tokens,
            hidden_dim=config["decoder_hidden_dim"],
            depth=config["decoder_depth"],
            num_heads=config["decoder_num_heads"],
            mlp_dim=config["decoder_mlp_dim"],
            output_dim=config["num_channels"] * config["tubelet_size"] * patch * patch,
            qv_bias=config["qv_bias"],
            init_values=config["init_values"],
            dropout_rate=config["dropout_rate"],
            attention_dropout_rate=config["attention_dropout_rate"],
            drop_path_rate=config["drop_path_rate"],
            remat=config["remat"],
            layer_norm_epsilon=config["decoder_layer_norm_epsilon"],
            norm_epsilon=config["decoder_norm_epsilon"],
            dtype=dtype,
            name="decoder",
        )
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
        super().__init__(inputs=inputs, outputs=x, name=name, **model_kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.num_masked = num_masked
        self.num_decoded = num_decoded
        self.decoder_mask_ratio = decoder_mask_ratio
        self.norm_pix_loss = bool(norm_pix_loss)
        config.update(num_masked=num_masked, use_final_norm=bool(use_final_norm),
                      norm_pix_loss=self.norm_pix_loss, decoder_mask_ratio=decoder_mask_ratio)
        self._finish_init(config, grid, dtype)

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
            config = self._videomae_config
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
        config = self._videomae_config
        patches = pretraining_patches(
            video, config["tubelet_size"], config["patch_size"], self.norm_pix_loss
        )
        decoded = ops.equal(ops.cast(decoder_mask, "int32"), 0)
        index = masked_index(decoded, self.num_decoded)
        targets = ops.take_along_axis(patches, index[..., None], axis=1)
        weights = ops.take_along_axis(ops.cast(bool_masked_pos, "float32"), index, axis=1)
        return dual_masking_loss(y_pred, targets, weights)
