"""Multi-head self-attention with a bias on q and v but not on k (BEiT / VideoMAE style)."""

import keras
from keras import ops

from videomae_keras.initializers import for_weight
from videomae_keras.layers.common import dense
from videomae_keras.utils import (
    dropout_if_active,
    fused_attention_is_fast,
    resolve_flash_attention,
    tracing_for_onnx,
)

# Score rows per block in `chunked_attention`, over batch x heads x queries: 12 heads x 256
# queries, the fastest for ViT-B at batch 1 on CPU. Larger batches get fewer queries per
# block (ViT-S at batch 4: 128), since a block's scores are best kept about this size.
ATTENTION_BLOCK_ROWS = 3072


def attention_chunk_size(batch, num_heads):
    """Queries per `chunked_attention` block for a (static or None) batch size."""
    return max(1, ATTENTION_BLOCK_ROWS // ((batch or 1) * num_heads))


def chunked_attention(query, key, value, scale, chunk_size):
    """Softmax attention over (B, N, heads, head_dim) inputs, a block of queries at a time.

    Heads-major matmuls and a float32 softmax per block of `chunk_size` queries: the same
    result as `keras.ops.dot_product_attention` without its full score matrix. Static slices,
    so it traces under jit/XLA. In float32 the softmax divides after the value matmul, on
    (chunk, head_dim) rather than (chunk, N): one pass over the scores fewer, about a tenth
    off the gradient on jax and tensorflow (2-core CPU). Half precision normalises first, so
    its value matmul stays in half precision without overflowing.
    """
    num_queries = query.shape[1]
    query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(scale, query.dtype)
    key_t = ops.transpose(key, (0, 2, 3, 1))
    value = ops.transpose(value, (0, 2, 1, 3))
    deferred = keras.backend.standardize_dtype(value.dtype) == "float32"
    blocks = []
    for start in range(0, num_queries, chunk_size):
        logits = ops.cast(ops.matmul(query[:, :, start : start + chunk_size], key_t), "float32")
        peak = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
        weights = ops.exp(logits - peak)
        total = ops.sum(weights, axis=-1, keepdims=True)
        if deferred:
            blocks.append(ops.matmul(weights, value) / total)
        else:
            blocks.append(ops.matmul(ops.cast(weights / total, value.dtype), value))
    out = blocks[0] if len(blocks) == 1 else ops.concatenate(blocks, axis=2)
    return ops.transpose(out, (0, 2, 1, 3))


def softmax_attention(query, key, value, scale):
    """Softmax attention over (B, N, heads, head_dim) inputs in its textbook form: scaled
    queries times transposed keys, one softmax (in float32), times values, heads-major.
    What the ONNX export writes (`utils.onnx_attention()`): one Softmax per block between two MatMuls,
    with the scale on the queries, the pattern runtimes fuse into their attention kernels."""
    query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(scale, query.dtype)
    logits = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
    out = ops.matmul(weights, ops.transpose(value, (0, 2, 1, 3)))
    return ops.transpose(out, (0, 2, 1, 3))


@keras.saving.register_keras_serializable(package="videomae_keras")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Self-attention over (B, N, D) tokens through `keras.ops.dot_product_attention`.

    One fused `qkv` projection without bias, then `q_bias` and `v_bias` weights added to the q
    and v parts: the reference has no k bias (it would cancel in the softmax anyway). Scale is
    head_dim ** -0.5. Where no fused kernel runs (jax and tensorflow on CPU) attention takes
    `chunked_attention`; attention dropout, when training with a rate > 0, takes an explicit
    softmax path because the fused op has no dropout; traced for an ONNX file it takes
    `softmax_attention`, the form ONNX runtimes fuse. `flash_attention`: None (automatic),
    True (require it) or False, as in `keras.ops.dot_product_attention`.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        qv_bias=True,
        attention_dropout_rate=0.0,
        dropout_rate=0.0,
        kernel_initializer="glorot_uniform",
        flash_attention=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.hidden_dim // self.num_heads
        self.qv_bias = bool(qv_bias)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.dropout_rate = float(dropout_rate)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.flash_attention = flash_attention
        self.qkv = dense(3 * self.hidden_dim, self.kernel_initializer, "qkv", self.dtype_policy,
                         use_bias=False)
        self.proj = dense(self.hidden_dim, self.kernel_initializer, "proj", self.dtype_policy)
        self.attention_dropout = keras.layers.Dropout(
            self.attention_dropout_rate, dtype=self.dtype_policy
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.qkv.build(input_shape)
        if self.qv_bias:
            self.q_bias = self.add_weight(
                shape=(self.hidden_dim,), initializer=for_weight("zeros"), name="q_bias"
            )
            self.v_bias = self.add_weight(
                shape=(self.hidden_dim,), initializer=for_weight("zeros"), name="v_bias"
            )
        self.proj.build(tuple(input_shape[:-1]) + (self.hidden_dim,))

    def _query_key_value(self, x):
        """q, k, v as (B, N, heads, head_dim): the layout keras.ops.dot_product_attention
        takes, with the q and v biases added."""
        qkv = self.qkv(x)
        if self.qv_bias:
            q_bias = ops.cast(self.q_bias, qkv.dtype)
            v_bias = ops.cast(self.v_bias, qkv.dtype)
            qkv = qkv + ops.concatenate([q_bias, ops.zeros_like(q_bias), v_bias])
        qkv = ops.reshape(qkv, (-1, x.shape[1], 3, self.num_heads, self.head_dim))
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def _probabilities(self, query, key):
        """The softmax weights (B, heads, N, N) in float32."""
        scale = ops.cast(self.head_dim**-0.5, query.dtype)
        logits = ops.einsum("bqhd,bkhd->bhqk", query, key) * scale
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)

    def call_with_weights(self, x):
        """(output, weights): the inference output and the softmax weights (B, heads, N,
        N, float32) it used, through an explicit softmax instead of the fused kernel, for
        looking inside the model (`videomae_keras.intermediates`); `call` never pays for it."""
        query, key, value = self._query_key_value(x)
        probs = self._probabilities(query, key)
        out = ops.einsum("bhqk,bkhd->bqhd", ops.cast(probs, value.dtype), value)
        return self.proj(ops.reshape(out, (-1, x.shape[1], self.hidden_dim))), probs

    def call(self, x, training=None):
        num_tokens = x.shape[1]
        query, key, value = self._query_key_value(x)
        scale = self.head_dim**-0.5
        if training and self.attention_dropout_rate > 0:
            probs = self._probabilities(query, key)
            probs = self.attention_dropout(ops.cast(probs, value.dtype), training=training)
            out = ops.einsum("bhqk,bkhd->bqhd", probs, value)
        elif tracing_for_onnx():
            out = softmax_attention(query, key, value, scale)
        elif self.flash_attention is not True and not fused_attention_is_fast():
            chunk_size = attention_chunk_size(query.shape[0], self.num_heads)
            out = chunked_attention(query, key, value, scale, chunk_size)
        else:
            out = ops.dot_product_attention(
                query,
                key,
                value,
                scale=scale,
                flash_attention=resolve_flash_attention(self.flash_attention),
            )
        out = self.proj(ops.reshape(out, (-1, num_tokens, self.hidden_dim)))
        return dropout_if_active(self.dropout, out, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            qv_bias=self.qv_bias,
            attention_dropout_rate=self.attention_dropout_rate,
            dropout_rate=self.dropout_rate,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            flash_attention=self.flash_attention,
        )
        return config
