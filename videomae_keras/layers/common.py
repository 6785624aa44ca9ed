"""The Keras sub-layers every VideoMAE layer makes, each weight with its own initialiser draw
(see `videomae_keras.initializers`)."""

import keras

from videomae_keras import kernels
from videomae_keras.initializers import for_weight


class Dense(keras.layers.Dense):
    """Keras' Dense, whose int8 inference takes the backend's fast int8 kernel where one
    exists (`videomae_keras.kernels.int8_linear`); everything else is Keras' own."""

    def quantize(self, mode=None, type_check=True, config=None):
        # Keras refuses subclasses of Dense; this one changes no weight or config
        return super().quantize(mode, type_check=False, config=config)

    def _int8_call(self, inputs, training=None):
        if not training and not self.lora_enabled and self.inputs_quantizer:
            x = kernels.int8_linear(self, inputs)
            if x is not None:
                return self.activation(x) if self.activation is not None else x
        return super()._int8_call(inputs, training=training)


def dense(units, kernel_initializer, name, dtype, use_bias=True, bias_initializer="zeros"):
    """A Dense layer whose kernel and bias get draws of their own."""
    return Dense(
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
