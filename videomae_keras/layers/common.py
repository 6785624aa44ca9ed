"""The Keras sub-layers every VideoMAE layer makes, each weight with its own initialiser draw
(see `videomae_keras.initializers`)."""

import keras

from videomae_keras.initializers import for_weight


def dense(units, kernel_initializer, name, dtype, use_bias=True, bias_initializer="zeros"):
    """A Dense layer whose kernel and bias get draws of their own."""
    return keras.layers.Dense(
        units,
        use_bias=use_bias,
        kernel_initializer=for_weight(kernel_initializer, f"{name}/kernel"),
        bias_initializer=for_weight(bias_initializer, f"{name}/bias"),
        dtype=dtype,
        name=name,
    )


def layer_norm(epsilon, name, dtype):
    """A LayerNormalization with an explicit epsilon (Keras' default 1e-3 matches neither
    source) and gamma 1, beta 0."""
    return keras.layers.LayerNormalization(
        epsilon=epsilon,
        gamma_initializer=for_weight("ones"),
        beta_initializer=for_weight("zeros"),
        dtype=dtype,
        name=name,
    )
