"""The VideoMAE encoder and pretraining decoder: one transformer stack, two ends."""

import keras
from keras import ops

from videomae_keras.initializers import BoundedTruncatedNormal, for_weight, fresh
from videomae_keras.layers.common import dense, layer_norm
from videomae_keras.layers.embedding import (
    TORCH_DEFAULT_KERNEL_INIT,
    SinusoidPositionEmbedding,
    TubeletEmbedding,
)
from videomae_keras.layers.transformer import TransformerStack


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEEncoder(TransformerStack):
    """Video (B, T, H, W, C) -> tokens: tubelet embedding, + sinusoid positions, optionally
    only the visible tokens, the transformer blocks and, when `use_final_norm`, a LayerNorm.

    `call(video, visible_index=None)`: with visible_index (B, K) (ascending token indices)
    only those K tokens enter the blocks, as in masked pretraining. The block settings
    (hidden_dim, depth, num_heads, mlp_dim, ...) are `TransformerStack`'s.
    """

    def __init__(
        self,
        patch_size=16,
        tubelet_size=2,
        num_channels=3,
        use_final_norm=False,
        patch_kernel_initializer=TORCH_DEFAULT_KERNEL_INIT,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.tubelet_size = int(tubelet_size)
        self.num_channels = int(num_channels)
        self.use_final_norm = bool(use_final_norm)
        self.patch_kernel_initializer = keras.initializers.get(patch_kernel_initializer)
        policy = self.dtype_policy

        self.patch_embed = TubeletEmbedding(
            self.hidden_dim, patch_size=self.patch_size, tubelet_size=self.tubelet_size,
            num_channels=self.num_channels,
            kernel_initializer=fresh(self.patch_kernel_initializer, "patch_embed"),
            dtype=policy, name="patch_embed")
        self.pos_embed = SinusoidPositionEmbedding(dtype=policy, name="pos_embed")
        self.pos_drop = keras.layers.Dropout(self.dropout_rate, dtype=policy, name="pos_drop")
        self.blocks = self.make_blocks()
        self.norm = None
        if self.use_final_norm:
            self.norm = layer_norm(self.layer_norm_epsilon, "norm", policy)

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        num_tokens = self.patch_embed.compute_output_shape(input_shape)[1]
        if num_tokens is not None:
            self.pos_embed.prepare(num_tokens, self.hidden_dim)
        self.build_blocks()
        if self.norm is not None:
            self.norm.build((None, None, self.hidden_dim))

    def call(self, video, visible_index=None, training=None):
        x = self.call_blocks(self.embed(video, visible_index, training), training)
        return x if self.norm is None else self.norm(x)

    def embed(self, video, visible_index=None, training=None):
        """The tokens entering the first block: tubelets embedded plus their positions (only
        those at `visible_index` when given)."""
        if visible_index is None:
            x = self.pos_embed(self.patch_embed(video))
        else:
            num_tokens = self.patch_embed.compute_output_shape(video.shape)[1]
            x = self.patch_embed(video, token_index=visible_index)
            x = self.pos_embed(x, positions=visible_index, num_tokens=num_tokens)
        return self.pos_drop(x, training=training)

    def intermediates(self, video, visible_index=None, attentions=True):
        """(hidden_states, attentions) of an inference call: the embeddings and each
        block's output (depth + 1 tensors (B, N, D), before the final norm, as transformers'
        `output_hidden_states`), and each block's softmax weights (B, heads, N, N), or an
        empty list with `attentions=False` (then the blocks run their usual kernels)."""
        x = self.embed(video, visible_index)
        hidden_states, weights = [x], []
        for block in self.blocks:
            if attentions:
                x, block_weights = block.call_with_attention(x)
                weights.append(block_weights)
            else:
                x = block(x)
            hidden_states.append(x)
        return hidden_states, weights

    def compute_output_spec(self, video, visible_index=None, training=None):
        if visible_index is not None:
            shape = (video.shape[0], visible_index.shape[1], self.hidden_dim)
        else:
            shape = self.patch_embed.compute_output_shape(video.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            patch_size=self.patch_size, tubelet_size=self.tubelet_size,
            num_channels=self.num_channels, use_final_norm=self.use_final_norm,
            patch_kernel_initializer=keras.initializers.serialize(self.patch_kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEDecoder(TransformerStack):
    """The pretraining decoder: [visible + pos, mask_token + pos] -> blocks -> last K tokens ->
    norm -> head, predicting 3 * tubelet * patch * patch pixel values per target token.

    `call(x_visible, visible_index, target_index)`: x_visible (B, V, D_dec) are the encoded
    visible tokens at positions visible_index (B, V); mask tokens go at target_index (B, K)
    (the masked tokens in VideoMAE; the decoded set in VideoMAE V2) and the output is
    (B, K, output_dim) in the order of target_index. Tokens are never unshuffled; the
    position rows of the `num_tokens`-row table are gathered to match, as in the reference.
    The block settings are `TransformerStack`'s; `norm_epsilon` is the final norm's.
    """

    def __init__(
        self,
        num_tokens,
        output_dim=1536,
        norm_epsilon=1e-6,
        mask_token_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)
        self.output_dim = int(output_dim)
        self.norm_epsilon = float(norm_epsilon)
        # official: trunc_normal_(std=0.02) with bounds +-std
        self.mask_token_initializer = keras.initializers.get(
            mask_token_initializer or BoundedTruncatedNormal(0.0, 0.02, -0.02, 0.02)
        )
        policy = self.dtype_policy
        self.pos_embed = SinusoidPositionEmbedding(dtype=policy, name="pos_embed")
        self.blocks = self.make_blocks()
        self.norm = layer_norm(self.norm_epsilon, "norm", policy)
        self.head = dense(self.output_dim, self.kernel_initializer, "head", policy)

    def build(self, input_shape):
        self.pos_embed.prepare(self.num_tokens, self.hidden_dim)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.hidden_dim),
            initializer=for_weight(self.mask_token_initializer, "mask_token"),
            name="mask_token",
        )
        self.build_blocks()
        token_shape = (None, None, self.hidden_dim)
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
        x = self.call_blocks(ops.concatenate([visible, targets], axis=1), training)
        x = x[:, -target_index.shape[1] :]
        return self.head(self.norm(x))

    def compute_output_spec(self, x_visible, visible_index, target_index, training=None):
        shape = (x_visible.shape[0], target_index.shape[1], self.output_dim)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tokens=self.num_tokens, output_dim=self.output_dim, norm_epsilon=self.norm_epsilon,
            mask_token_initializer=keras.initializers.serialize(self.mask_token_initializer))
        return config
