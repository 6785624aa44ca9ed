"""The VideoMAE encoder and pretraining decoder, each one composite layer."""

import numpy as np

import keras
from keras import ops

from videomae_keras.initializers import BoundedTruncatedNormal, for_weight, fresh
from videomae_keras.layers.common import dense, layer_norm
from videomae_keras.layers.embedding import (
    TORCH_DEFAULT_KERNEL_INIT,
    SinusoidPositionEmbedding,
    TubeletEmbedding,
)
from videomae_keras.layers.transformer import TransformerBlock


def _transformer_blocks(owner, hidden_dim, num_heads, mlp_dim, layer_norm_epsilon):
    """`owner.depth` blocks sharing the owner's bias, scale, dropout and init settings (each
    block its own draws), with stochastic depth growing linearly from 0 to
    `owner.drop_path_rate` (timm)."""
    rates = np.linspace(0.0, owner.drop_path_rate, owner.depth) if owner.depth else []
    return [
        TransformerBlock(
            hidden_dim,
            num_heads,
            mlp_dim,
            qv_bias=owner.qv_bias,
            init_values=owner.init_values,
            dropout_rate=owner.dropout_rate,
            attention_dropout_rate=owner.attention_dropout_rate,
            drop_path_rate=float(rate),
            layer_norm_epsilon=layer_norm_epsilon,
            kernel_initializer=fresh(owner.kernel_initializer, f"blocks_{i}"),
            remat=owner.remat,
            dtype=owner.dtype_policy,
            name=f"blocks_{i}",
        )
        for i, rate in enumerate(rates)
    ]


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEEncoder(keras.layers.Layer):
    """Video (B, T, H, W, C) -> tokens: tubelet embedding, + sinusoid positions, optionally
    only the visible tokens, the transformer blocks and, when `use_final_norm`, a LayerNorm.

    `call(video, visible_index=None)`: with visible_index (B, K) (ascending token indices)
    only those K tokens enter the blocks, as in masked pretraining.
    """

    def __init__(
        self,
        hidden_dim=768,
        depth=12,
        num_heads=12,
        mlp_dim=3072,
        patch_size=16,
        tubelet_size=2,
        num_channels=3,
        qv_bias=True,
        init_values=0.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        remat=False,
        layer_norm_epsilon=1e-6,
        use_final_norm=False,
        kernel_initializer="glorot_uniform",
        patch_kernel_initializer=TORCH_DEFAULT_KERNEL_INIT,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.patch_size = int(patch_size)
        self.tubelet_size = int(tubelet_size)
        self.num_channels = int(num_channels)
        self.qv_bias = bool(qv_bias)
        self.init_values = float(init_values or 0.0)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.remat = bool(remat)  # recompute each block in the backward pass
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.use_final_norm = bool(use_final_norm)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.patch_kernel_initializer = keras.initializers.get(patch_kernel_initializer)
        policy = self.dtype_policy

        self.patch_embed = TubeletEmbedding(
            self.hidden_dim,
            patch_size=self.patch_size,
            tubelet_size=self.tubelet_size,
            num_channels=self.num_channels,
            kernel_initializer=fresh(self.patch_kernel_initializer, "patch_embed"),
            dtype=policy,
            name="patch_embed",
        )
        self.pos_embed = SinusoidPositionEmbedding(dtype=policy, name="pos_embed")
        self.pos_drop = keras.layers.Dropout(self.dropout_rate, dtype=policy, name="pos_drop")
        self.blocks = _transformer_blocks(
            self, self.hidden_dim, self.num_heads, self.mlp_dim, self.layer_norm_epsilon
        )
        self.norm = None
        if self.use_final_norm:
            self.norm = layer_norm(self.layer_norm_epsilon, "norm", policy)

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        num_tokens = self.patch_embed.compute_output_shape(input_shape)[1]
        if num_tokens is not None:
            self.pos_embed.prepare(num_tokens, self.hidden_dim)
        token_shape = (None, None, self.hidden_dim)
        for block in self.blocks:
            block.build(token_shape)
        if self.norm is not None:
            self.norm.build(token_shape)

    def call(self, video, visible_index=None, training=None):
        if visible_index is None:
            x = self.pos_embed(self.patch_embed(video))
        else:
            num_tokens = self.patch_embed.compute_output_shape(video.shape)[1]
            x = self.patch_embed(video, token_index=visible_index)
            x = self.pos_embed(x, positions=visible_index, num_tokens=num_tokens)
        x = self.pos_drop(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def compute_output_spec(self, video, visible_index=None, training=None):
        if visible_index is not None:
            shape = (video.shape[0], visible_index.shape[1], self.hidden_dim)
        else:
            shape = self.patch_embed.compute_output_shape(video.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            patch_size=self.patch_size,
            tubelet_size=self.tubelet_size,
            num_channels=self.num_channels,
            qv_bias=self.qv_bias,
            init_values=self.init_values,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            drop_path_rate=self.drop_path_rate,
            **({"remat": True} if self.remat else {}),
            layer_norm_epsilon=self.layer_norm_epsilon,
            use_final_norm=self.use_final_norm,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            patch_kernel_initializer=keras.initializers.serialize(
                self.patch_kernel_initializer
            ),
        )
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEDecoder(keras.layers.Layer):
    """The pretraining decoder: [visible + pos, mask_token + pos] -> blocks -> last K tokens ->
    norm -> head, predicting 3 * tubelet * patch * patch pixel values per target token.

    `call(x_visible, visible_index, target_index)`: x_visible (B, V, D_dec) are the encoded
    visible tokens at positions visible_index (B, V); mask tokens go at target_index (B, K)
    (the masked tokens in VideoMAE; the decoded set in VideoMAE V2) and the output is
    (B, K, output_dim) in the order of target_index. Tokens are never unshuffled; the
    position rows of the `num_tokens`-row table are gathered to match, as in the reference.
    """

    def __init__(
        self,
        num_tokens,
        hidden_dim=384,
        depth=4,
        num_heads=6,
        mlp_dim=1536,
        output_dim=1536,
        qv_bias=True,
        init_values=0.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        remat=False,
        layer_norm_epsilon=1e-6,
        norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        mask_token_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)
        self.hidden_dim = int(hidden_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.output_dim = int(output_dim)
        self.qv_bias = bool(qv_bias)
        self.init_values = float(init_values or 0.0)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.remat = bool(remat)  # recompute each block in the backward pass
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm_epsilon = float(norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # official: trunc_normal_(std=0.02) with bounds +-std
        self.mask_token_initializer = keras.initializers.get(
            mask_token_initializer or BoundedTruncatedNormal(0.0, 0.02, -0.02, 0.02)
        )
        policy = self.dtype_policy
        self.pos_embed = SinusoidPositionEmbedding(dtype=policy, name="pos_embed")
        self.blocks = _transformer_blocks(
            self, self.hidden_dim, self.num_heads, self.mlp_dim, self.layer_norm_epsilon
        )
        self.norm = layer_norm(self.norm_epsilon, "norm", policy)
        self.head = dense(self.output_dim, self.kernel_initializer, "head", policy)

    def build(self, input_shape):
        self.pos_embed.prepare(self.num_tokens, self.hidden_dim)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.hidden_dim),
            initializer=for_weight(self.mask_token_initializer, "mask_token"),
            name="mask_token",
        )
        token_shape = (None, None, self.hidden_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.head.build(token_shape)

    def call(self, x_visible, visible_index, target_index, training=None):
        num_tokens = self.num_tokens
        visible = self.pos_embed(x_visible, positions=visible_index, num_tokens=num_tokens)
        # mask_token (1, 1, D) + position rows (B, K, D) broadcasts to (B, K, D).
        targets = self.pos_embed(
            ops.cast(self.mask_token, visible.dtype),
            positions=target_index,
            num_tokens=num_tokens,
        )
        x = ops.concatenate([visible, targets], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        x = x[:, -target_index.shape[1] :]
        return self.head(self.norm(x))

    def compute_output_spec(self, x_visible, visible_index, target_index, training=None):
        shape = (x_visible.shape[0], target_index.shape[1], self.output_dim)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tokens=self.num_tokens,
            hidden_dim=self.hidden_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            output_dim=self.output_dim,
            qv_bias=self.qv_bias,
            init_values=self.init_values,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            drop_path_rate=self.drop_path_rate,
            **({"remat": True} if self.remat else {}),
            layer_norm_epsilon=self.layer_norm_epsilon,
            norm_epsilon=self.norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            mask_token_initializer=keras.initializers.serialize(self.mask_token_initializer),
        )
        return config
