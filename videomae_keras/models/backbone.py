"""The VideoMAE encoder as a model: the backbone every task model wraps."""

import keras

from videomae_keras.configs import grid_size, num_masked_tokens
from videomae_keras.initializers import official_trunc_normal
from videomae_keras.layers import InvalidSampleGuard, MaskedTokenIndex, VideoMAEEncoder
from videomae_keras.models.base import VideoMAEModelBase, check_arguments, model_kwargs, video_shape


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEBackbone(VideoMAEModelBase):
    """The encoder as a model: video (B, T, H, W, C) -> token features (B, N, hidden_dim).

    Task models wrap one: `VideoMAEClassifier(backbone, num_classes=400)`,
    `VideoMAEPretrainer(backbone)`; `task.backbone` is it, shared. With `num_masked` (or
    `mask_ratio`) set, the backbone alone takes `[video, bool_masked_pos]` and returns the
    visible tokens only, (B, N - num_masked, hidden_dim) in ascending token order, like
    transformers' VideoMAEModel given a mask.

    Args:
        num_frames: frames per clip the model is built for (16).
        image_size: clip height and width, an int or (height, width) (224).
        patch_size: square patch side in pixels (16; ViT-g 14).
        tubelet_size: frames per token (2).
        hidden_dim: token width (S 384, B 768, L 1024, H 1280, g 1408).
        depth: number of transformer blocks (S/B 12, L 24, H 32, g 40).
        num_heads: attention heads (S 6, B 12, L/H/g 16).
        mlp_dim: hidden width of each block's MLP (4 x hidden_dim; g 6144).
        num_channels: colour channels (3).
        qv_bias: q and v biases, no k bias (True in every released model).
        init_values: layer scale; above 0 adds gamma_1/gamma_2 (no release uses it).
        dropout_rate: dropout after positions, attention projection and MLP (official
            drop_rate).
        attention_dropout_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, growing linearly over the blocks to this rate.
        layer_norm_epsilon: epsilon of the block norms and the final norm (official 1e-6,
            transformers 1e-12).
        use_final_norm: a LayerNorm after the blocks (pretrained and `--use_cls` models have
            one; mean-pooling classifiers do not: their norm is fc_norm after pooling).
        remat: recompute each block in the backward pass (less memory, about 1/3 more
            compute; dropout inside blocks is refused with it).
        mask_ratio, mask_type, num_masked: a backbone that takes a mask and returns the
            visible tokens; num_masked is the exact count, or it follows from mask_ratio
            for "tube" or "random" masks. Leave unset for all tokens.
        kernel_initializer: the Dense kernels' initialiser (default: the official
            fine-tuning trunc_normal(std=0.02)); not saved, since loading replaces it.
        dtype: dtype policy, e.g. "mixed_bfloat16".
    """

    def __init__(
        self,
        num_frames=16,
        image_size=224,
        patch_size=16,
        tubelet_size=2,
        hidden_dim=768,
        depth=12,
        num_heads=12,
        mlp_dim=3072,
        num_channels=3,
        qv_bias=True,
        init_values=0.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        use_final_norm=False,
        remat=False,
        mask_ratio=None,
        mask_type="tube",
        num_masked=None,
        kernel_initializer=None,
        name="videomae_backbone",
        dtype=None,
        **kwargs,
    ):
        config = check_arguments(dict(
            num_frames=num_frames, image_size=image_size, num_channels=num_channels,
            patch_size=patch_size, tubelet_size=tubelet_size, hidden_dim=hidden_dim,
            depth=depth, num_heads=num_heads, mlp_dim=mlp_dim, qv_bias=qv_bias,
            init_values=init_values, dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate, drop_path_rate=drop_path_rate,
            layer_norm_epsilon=layer_norm_epsilon, remat=remat,
        ))
        grid = grid_size(config["num_frames"], config["image_size"], config["patch_size"],
                         config["tubelet_size"])
        num_tokens = grid[0] * grid[1] * grid[2]
        if num_masked is None and mask_ratio is not None:
            num_masked = num_masked_tokens(grid, mask_ratio, mask_type)
        encoder = VideoMAEEncoder(
            **{k: v for k, v in config.items() if k not in ("num_frames", "image_size")},
            use_final_norm=use_final_norm,
            kernel_initializer=kernel_initializer or official_trunc_normal(0.02), dtype=dtype,
            name="encoder")
        video = keras.Input(video_shape(config), name="video")
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
        super().__init__(inputs=inputs, outputs=outputs, name=name,
                         **model_kwargs(type(self), kwargs))
        self.encoder = encoder
        self.num_masked = num_masked
        config.update(use_final_norm=bool(use_final_norm), num_masked=num_masked)
        self._finish_init(config, dtype)

    def call(self, inputs, training=None, mask=None):
        if self.num_masked is None:
            (video,) = self._split_inputs(inputs, ["video"])
            self._check_video(video)
            return super().call(video, training=training, mask=mask)
        video, bool_masked_pos = self._split_inputs(inputs, ["video", "bool_masked_pos"])
        shape = self._check_video(video)
        self._check_mask(bool_masked_pos, shape, self.num_masked)
        return super().call([video, bool_masked_pos], training=training, mask=mask)
