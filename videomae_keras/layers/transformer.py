"""The pre-norm transformer of VideoMAE: MLP, stochastic depth, layer scale, the block and
the stack of blocks that the encoder and the decoder share."""

import numpy as np

import keras
from keras import ops

from videomae_keras.initializers import for_weight, fresh
from videomae_keras.layers.attention import MultiHeadSelfAttention
from videomae_keras.layers.common import dense, layer_norm
from videomae_keras.utils import dropout_if_active


def check_remat(remat, dropout_rate, attention_dropout_rate):
    """ValueError for remat with dropout inside the blocks (see TransformerBlock)."""
    if remat and (dropout_rate or attention_dropout_rate):
        raise ValueError(
            "remat=True (--remat) cannot recompute dropout inside the blocks "
            f"(dropout_rate={dropout_rate}, attention_dropout_rate={attention_dropout_rate}); "
            "set both to 0 (as every released recipe does; drop_path_rate works with remat) "
            "or train without remat."
        )


@keras.saving.register_keras_serializable(package="videomae_keras")
class MLP(keras.layers.Layer):
    """fc1 -> exact (erf) GELU -> fc2 -> dropout, as in timm / the official code."""

    def __init__(
        self,
        hidden_dim,
        mlp_dim,
        dropout_rate=0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.mlp_dim = int(mlp_dim)
        self.dropout_rate = float(dropout_rate)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.fc1 = dense(self.mlp_dim, self.kernel_initializer, "fc1", self.dtype_policy)
        self.fc2 = dense(self.hidden_dim, self.kernel_initializer, "fc2", self.dtype_policy)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def call(self, x, training=None):
        # No dropout between the activation and fc2, as in the official Mlp.
        # exact (erf) GELU as the reference; TensorFlow's kernel uses erfc, which
        # export.export_onnx maps to 1 - erf for ONNX
        x = ops.gelu(self.fc1(x), approximate=False)
        return dropout_if_active(self.dropout, self.fc2(x), training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, mlp_dim=self.mlp_dim,
                      dropout_rate=self.dropout_rate,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # no weights: built from the start (model.quantize needs that)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        return self.apply_mask(x, self.draw_mask(x))

    def draw_mask(self, x):
        """The 0/1 keep mask of one call on `x`, (B, 1, ...): drawn apart from its use so
        that a rematerialised block can take it as an input (draws inside a recomputed
        function break on JAX)."""
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        return ops.floor(1.0 - self.rate + noise)

    def apply_mask(self, x, mask):
        """`x` with the samples `mask` drops zeroed and the rest scaled by 1 / keep."""
        return x / (1.0 - self.rate) * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class LayerScale(keras.layers.Layer):
    """x * gamma, one learned scale per channel, starting at `init_values` (CaiT's layer
    scale; the official `gamma_1`/`gamma_2`, used when init_values > 0)."""

    def __init__(self, init_values, **kwargs):
        super().__init__(**kwargs)
        self.init_values = float(init_values)

    def build(self, input_shape):
        init = keras.initializers.Constant(self.init_values)
        self.gamma = self.add_weight(
            shape=(input_shape[-1],), initializer=for_weight(init), name="gamma"
        )

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def load_own_variables(self, store):
        # A `.keras` file of release 0.1 keeps the scales on the block; the block's
        # load_own_variables has filled this one already and left its own path empty here.
        if getattr(self, "_filled_by_block", False) and not len(store.keys()):
            return
        super().load_own_variables(store)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(init_values=self.init_values)
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class TransformerBlock(keras.layers.Layer):
    """x + DropPath(LayerScale(Attn(LN(x)))), then x + DropPath(LayerScale(MLP(LN(x)))).

    The layer scales (`layer_scale_1`, `layer_scale_2`: the official gamma_1, gamma_2) exist
    only when init_values > 0; no released checkpoint uses them. The LayerNorm epsilon must
    be set explicitly (official 1e-6, transformers 1e-12).

    `remat=True` recomputes the block in the backward pass instead of keeping its
    activations (`keras.remat`: jax.checkpoint, tf.recompute_grad or torch's checkpoint).
    The stochastic-depth masks are drawn before the recomputed function and handed to it,
    in the order and from the seed generator a plain call uses, so training draws the
    same masks and computes the same values with or without it. Dropout inside the block
    (dropout_rate, attention_dropout_rate: 0 in every released recipe) would draw inside the
    recomputed function, which fails on JAX, so remat refuses it.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        qv_bias=True,
        init_values=0.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.qv_bias = bool(qv_bias)
        self.init_values = float(init_values or 0.0)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.remat = bool(remat)
        check_remat(self.remat, self.dropout_rate, self.attention_dropout_rate)
        policy = self.dtype_policy
        # Made first so that their scales lead the block's weights, as release 0.1's did.
        self.layer_scale_1 = self.layer_scale_2 = None
        if self.init_values > 0:
            self.layer_scale_1 = LayerScale(self.init_values, dtype=policy, name="gamma_1")
            self.layer_scale_2 = LayerScale(self.init_values, dtype=policy, name="gamma_2")
        self.norm1 = layer_norm(self.layer_norm_epsilon, "norm1", policy)
        self.attn = MultiHeadSelfAttention(
            self.hidden_dim, self.num_heads, qv_bias=self.qv_bias,
            attention_dropout_rate=self.attention_dropout_rate, dropout_rate=self.dropout_rate,
            kernel_initializer=fresh(self.kernel_initializer, "attn"), dtype=policy, name="attn")
        self.norm2 = layer_norm(self.layer_norm_epsilon, "norm2", policy)
        self.mlp = MLP(self.hidden_dim, self.mlp_dim, dropout_rate=self.dropout_rate,
                       kernel_initializer=fresh(self.kernel_initializer, "mlp"), dtype=policy,
                       name="mlp")
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy, name="drop_path")

    def build(self, input_shape):
        for layer in (self.layer_scale_1, self.layer_scale_2, self.norm1, self.attn,
                      self.norm2, self.mlp):
            if layer is not None:
                layer.build(input_shape)

    def load_own_variables(self, store):
        """Release 0.1 saved the layer scales as the block's own two weights; they go to
        the LayerScale layers now (which then skip their own, empty, entries)."""
        if self.layer_scale_1 is not None and len(store.keys()) == 2:
            for index, layer in enumerate((self.layer_scale_1, self.layer_scale_2)):
                layer.gamma.assign(store[str(index)])
                layer._filled_by_block = True
            return
        super().load_own_variables(store)

    def call(self, x, training=None):
        if not (self.remat and training):
            return self._forward(x, training)
        if self.drop_path.rate > 0:  # the two masks a plain call would draw, in its order
            masks = ops.stack([self.drop_path.draw_mask(x), self.drop_path.draw_mask(x)])
            return keras.remat(lambda x, masks: self._forward(x, True, masks))(x, masks)
        return keras.remat(lambda x: self._forward(x, True))(x)

    def call_with_attention(self, x):
        """(output, attention weights (B, heads, N, N)) of an inference call."""
        kept = []
        return self._forward(x, False, keep_attention=kept), kept[0]

    def call_with_attention_input(self, x, attention_input):
        """The inference output with `attention_input` standing in for `norm1(x)` (the
        residual still carries `x`): gradients at the attention's input, Grad-CAM's usual
        layer in a ViT, go through this."""
        return self._forward(x, False, attention_input=attention_input)

    def _forward(self, x, training, masks=None, keep_attention=None, attention_input=None):
        """The block; `masks` (2, B, 1, 1): stochastic-depth masks drawn beforehand;
        `keep_attention`: a list that gets the softmax weights (the explicit path);
        `attention_input`: what the attention takes instead of norm1(x)."""
        normed = self.norm1(x) if attention_input is None else attention_input
        if keep_attention is None:
            y = self.attn(normed, training=training)
        else:
            y, weights = self.attn.call_with_weights(normed)
            keep_attention.append(weights)
        if self.layer_scale_1 is not None:
            y = self.layer_scale_1(y)
        x = x + self._drop_path(y, training, masks, 0)
        y = self.mlp(self.norm2(x), training=training)
        if self.layer_scale_2 is not None:
            y = self.layer_scale_2(y)
        return x + self._drop_path(y, training, masks, 1)

    def _drop_path(self, y, training, masks, index):
        if masks is None:
            return dropout_if_active(self.drop_path, y, training)
        return self.drop_path.apply_mask(y, masks[index])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        names = ("hidden_dim", "num_heads", "mlp_dim", "qv_bias", "init_values", "dropout_rate",
                 "attention_dropout_rate", "drop_path_rate", "layer_norm_epsilon")
        config.update({name: getattr(self, name) for name in names},
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        if self.remat:
            config["remat"] = True
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class TransformerStack(keras.layers.Layer):
    """`depth` pre-norm transformer blocks of one width: what the encoder and the decoder
    share (they subclass it and add their embeddings, norms and heads).

    Every block gets the same bias, layer-scale, dropout, remat and initialiser settings
    (its own initialiser draws); stochastic depth grows linearly from 0 at the first block
    to `drop_path_rate` at the last (timm). Subclasses call `make_blocks()` where the
    blocks belong among their layers (that order is the order of the weights), then
    `build_blocks` and `call_blocks`.

    Args:
        hidden_dim, depth, num_heads, mlp_dim: width, blocks, heads and MLP size.
        qv_bias: q and v biases (no k bias).
        init_values: layer scale when above 0.
        dropout_rate, attention_dropout_rate, drop_path_rate: as in `TransformerBlock`.
        remat: recompute each block in the backward pass.
        layer_norm_epsilon: the blocks' norms.
        kernel_initializer: the Dense kernels' initialiser.
    """

    # the settings a pretrainer's decoder takes from its encoder
    SHARED_WITH_DECODER = ("qv_bias", "init_values", "dropout_rate", "attention_dropout_rate",
                           "drop_path_rate", "remat")

    def __init__(
        self,
        hidden_dim,
        depth,
        num_heads,
        mlp_dim,
        qv_bias=True,
        init_values=0.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        remat=False,
        layer_norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.qv_bias = bool(qv_bias)
        self.init_values = float(init_values or 0.0)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.remat = bool(remat)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def make_blocks(self):
        """The blocks, named blocks_0, blocks_1, ... (the names the weight files use)."""
        rates = np.linspace(0.0, self.drop_path_rate, self.depth) if self.depth else []
        return [TransformerBlock(self.hidden_dim, self.num_heads, self.mlp_dim,
                                 **self._block_settings(), drop_path_rate=float(rate),
                                 kernel_initializer=fresh(self.kernel_initializer, f"blocks_{i}"),
                                 remat=self.remat, dtype=self.dtype_policy, name=f"blocks_{i}")
                for i, rate in enumerate(rates)]

    def build_blocks(self):
        for block in self.blocks:
            block.build((None, None, self.hidden_dim))

    def call_blocks(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, depth=self.depth, num_heads=self.num_heads,
                      mlp_dim=self.mlp_dim, **self._block_settings(),
                      drop_path_rate=self.drop_path_rate,
                      **({"remat": True} if self.remat else {}),
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

    def _block_settings(self):
        """The settings every block gets as they are (the blocks' arguments and the config)."""
        return {name: getattr(self, name) for name in (
            "qv_bias", "init_values", "dropout_rate", "attention_dropout_rate",
            "layer_norm_epsilon")}
