"""The VideoMAE encoder on its own, for token features."""

import keras

from videomae_keras.configs import num_masked_tokens
from videomae_keras.initializers import official_trunc_normal
from videomae_keras.layers import InvalidSampleGuard, MaskedTokenIndex
from videomae_keras.models.base import VideoMAEModelBase, split_encoder_kwargs


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEBackbone(VideoMAEModelBase):
    """The encoder as a model: video (B, T, H, W, C) -> token features (B, N, hidden_dim).

    With `num_masked` (or `mask_ratio`) set, it takes `[video, bool_masked_pos]` and returns the
    visible tokens only, (B, N - num_masked, hidden_dim) in ascending token order, like
    transformers' VideoMAEModel given a mask.

    Args:
        use_final_norm: apply the encoder's final LayerNorm (pretrained and `--use_cls`
            models have one; mean-pooling fine-tuned models do not: their norm is fc_norm).
        mask_ratio, mask_type, num_masked: as in VideoMAEPretrainer; leave unset for all tokens.
        **kwargs: encoder arguments, see `videomae_keras.configs.ENCODER_DEFAULTS`.
    """

    def __init__(
        self,
        *,
        use_final_norm=False,
        mask_ratio=None,
        mask_type="tube",
        num_masked=None,
        name="videomae_backbone",
        dtype=None,
        **kwargs,
    ):
        config, model_kwargs = split_encoder_kwargs(kwargs)
        video, grid = self._video_input(config)
        num_tokens = grid[0] * grid[1] * grid[2]
        if num_masked is None and mask_ratio is not None:
            num_masked = num_masked_tokens(grid, mask_ratio, mask_type)
        encoder = self._make_encoder(
            config,
            use_final_norm=use_final_norm,
            kernel_initializer=official_trunc_normal(0.02),  # as the fine-tuning encoder
            dtype=dtype,
        )
        if num_masked is None:
            inputs = video
            outputs = encoder(video)
        else:
            num_masked = int(num_masked)
            if not 0 <= num_masked < num_tokens:
                raise ValueError(
                    f"num_masked must be between 0 and {num_tokens - 1}; got {num_masked}."
                )
            bool_masked_pos = keras.Input((num_tokens,), dtype="bool", name="bool_masked_pos")
            visible_index, _, valid = MaskedTokenIndex(
                num_masked, dtype=dtype, name="token_index"
            )(bool_masked_pos)
            outputs = encoder(video, visible_index=visible_index)
            outputs = InvalidSampleGuard(dtype=dtype, name="mask_guard")(outputs, valid)
            inputs = [video, bool_masked_pos]
        super().__init__(inputs=inputs, outputs=outputs, name=name, **model_kwargs)
        self.encoder = encoder
        self.num_masked = num_masked
        config.update(use_final_norm=bool(use_final_norm), num_masked=num_masked)
        self._finish_init(config, grid, dtype)

    def call(self, inputs, training=None, mask=None):
        if self.num_masked is None:
            (video,) = self._split_inputs(inputs, ["video"])
            self._check_video(video)
            return super().call(video, training=training, mask=mask)
        video, bool_masked_pos = self._split_inputs(inputs, ["video", "bool_masked_pos"])
        shape = self._check_video(video)
        self._check_mask(bool_masked_pos, shape, self.num_masked)
        return super().call([video, bool_masked_pos], training=training, mask=mask)
