"""The VideoMAE masked-autoencoder pretraining model."""

import keras
from keras import ops

from videomae_keras.configs import DECODER_DEFAULTS, num_masked_tokens
from videomae_keras.layers import InvalidSampleGuard, MaskedTokenIndex, VideoMAEDecoder
from videomae_keras.layers.embedding import TORCH_DEFAULT_KERNEL_INIT
from videomae_keras.models.base import VideoMAEModelBase, split_encoder_kwargs
from videomae_keras.training.losses import (
    pretraining_loss,
    pretraining_targets,
    scale_for_replicas,
)


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

    Args:
        mask_ratio, mask_type: give num_masked as the tube ("tube") or random ("random")
            generator would produce it.
        num_masked: the exact count of masked tokens per sample (overrides mask_ratio).
        norm_pix_loss: train on per-patch normalised pixels (the official default) or on
            plain [0, 1] pixels; see `compute_loss`.
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
        x = keras.layers.Dense(
            config["decoder_hidden_dim"],
            use_bias=False,
            kernel_initializer=TORCH_DEFAULT_KERNEL_INIT,
            dtype=dtype,
            name="encoder_to_decoder",
        )(x)
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
            layer_norm_epsilon=config["decoder_layer_norm_epsilon"],
            norm_epsilon=config["decoder_norm_epsilon"],
            dtype=dtype,
            name="decoder",
        )
        x = decoder(x, visible_index, masked_index)
        x = InvalidSampleGuard(dtype=dtype, name="mask_guard")(x, valid)
        super().__init__(
            inputs=[video, bool_masked_pos], outputs=x, name=name, **model_kwargs
        )
        self.encoder = encoder
        self.decoder = decoder
        self.num_masked = num_masked
        self.norm_pix_loss = bool(norm_pix_loss)
        config.update(num_masked=num_masked, use_final_norm=bool(use_final_norm),
                      norm_pix_loss=self.norm_pix_loss)
        self._finish_init(config, grid, dtype)

    def call(self, inputs, training=None, mask=None):
        video, bool_masked_pos = self._split_inputs(inputs, ["video", "bool_masked_pos"])
        shape = self._check_video(video)
        self._check_mask(bool_masked_pos, shape, self.num_masked)
        return super().call([video, bool_masked_pos], training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The VideoMAE loss, so `compile(optimizer)` + `fit([video, mask])` trains: MSE
        between the predictions and the (norm-pix) targets of the masked tokens. `y` is not
        used (the targets come from the video); a compiled loss, if any, is added."""
        video, bool_masked_pos = self._split_inputs(x, ["video", "bool_masked_pos"])
        config = self._videomae_config
        targets = pretraining_targets(
            video, bool_masked_pos, self.num_masked, config["tubelet_size"],
            config["patch_size"], self.norm_pix_loss,
        )
        loss = scale_for_replicas(pretraining_loss(y_pred, targets))
        if y is not None and getattr(self, "_compile_loss", None) is not None:
            extra = self._compile_loss(y, y_pred, sample_weight)
            if extra is not None:
                loss = loss + extra
        for extra in self.losses:
            loss = loss + scale_for_replicas(ops.cast(extra, "float32"))
        return loss
