"""Weight initialisers: the official VideoMAE draws, one independent draw per weight, and a
scope that skips drawing for weights that loading overwrites.

The official code initialises the two models differently (`_init_weights` in
MCG-NJU/VideoMAE `modeling_finetune.py` and `modeling_pretrain.py`):

- fine-tuning model: Linear weights timm `trunc_normal_(std=0.02)` (absolute bounds +-2, so
  in effect N(0, 0.02)), the head's then scaled by `init_scale` (0.001); biases 0;
- pretraining model: Linear weights `xavier_uniform_` (Keras `glorot_uniform`), biases 0;
  `encoder_to_decoder` keeps torch's default Linear init; the mask token is
  `trunc_normal_(std=0.02, a=-0.02, b=0.02)`, truncated at one standard deviation;
- both: the Conv3d patch embedding keeps torch's default (kernel and bias
  U(+-1/sqrt(fan_in))); LayerNorms 1 and 0; q and v biases 0.

A Keras initialiser created without a seed draws its seed once, when it is created, and gives
the same values at every call: one instance shared by several weights makes them identical.
`fresh` gives each weight its own instance.
"""

import contextlib
import contextvars
import math
import random
import zlib

import numpy as np

import keras
from keras import ops

from videomae_keras.memory import FreedMemory

# torch.nn.Linear / Conv3d default kernel init, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
TORCH_DEFAULT_KERNEL = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}


@keras.saving.register_keras_serializable(package="videomae_keras")
class BoundedTruncatedNormal(keras.initializers.Initializer):
    """N(mean, stddev) truncated to the absolute interval [minval, maxval], like torch's and
    timm's `trunc_normal_(tensor, mean, std, a, b)` (Keras' TruncatedNormal always cuts at two
    standard deviations). Drawn by inverse CDF, as torch does.

    Args:
        mean, stddev: of the normal distribution before truncation.
        minval, maxval: absolute bounds (timm's default +-2 leaves N(0, 0.02) untouched; the
            official mask token uses +-0.02, one standard deviation).
        seed: an int for reproducible values, or None to draw one now.
    """

    def __init__(self, mean=0.0, stddev=0.02, minval=-2.0, maxval=2.0, seed=None):
        if not stddev > 0:
            raise ValueError(f"stddev must be positive; got {stddev}.")
        if not minval < maxval:
            raise ValueError(f"minval must be below maxval; got {minval} and {maxval}.")
        self.mean, self.stddev = float(mean), float(stddev)
        self.minval, self.maxval = float(minval), float(maxval)
        self._init_seed = seed
        self.seed = seed if seed is not None else random.randint(1, int(1e9))

    def __call__(self, shape, dtype=None):
        def cdf(x):
            return 0.5 * (1.0 + math.erf((x - self.mean) / self.stddev / math.sqrt(2.0)))

        low, high = 2.0 * cdf(self.minval) - 1.0, 2.0 * cdf(self.maxval) - 1.0
        u = keras.random.uniform(shape, minval=low, maxval=high, dtype="float32", seed=self.seed)
        x = ops.erfinv(u) * (self.stddev * math.sqrt(2.0)) + self.mean
        return ops.cast(ops.clip(x, self.minval, self.maxval), dtype or "float32")

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "minval": self.minval,
                "maxval": self.maxval, "seed": self._init_seed}


def torch_default_bias(fan_in):
    """torch's default Linear / Conv bias init, U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def official_trunc_normal(stddev=0.02, scale=1.0):
    """timm's `trunc_normal_(std=stddev)` (bounds +-2), the result multiplied by `scale`."""
    return BoundedTruncatedNormal(0.0, stddev * scale, -2.0 * scale, 2.0 * scale)


# --- one draw per weight -----------------------------------------------------------------------

def fresh(initializer, salt=""):
    """A new instance of `initializer` for one weight or one sub-layer, so that no two weights
    share a draw.

    An unseeded initialiser gets a new seed (from Python's `random`, which
    `keras.utils.set_random_seed` seeds, so builds stay reproducible). A seeded one gets a seed
    derived from its own and `salt` (the sub-layer's name), so a seeded model is reproducible
    and its blocks still differ.
    """
    init = keras.initializers.get(initializer)
    if isinstance(init, _Deferred):
        init = init.initializer
    config = init.get_config()
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and salt:
        config["seed"] = zlib.crc32(f"{seed}/{salt}".encode()) % (2**31 - 1) + 1
    return type(init).from_config(config)


def for_weight(initializer, salt=""):
    """The initialiser to hand a weight (a Dense kernel, a LayerNorm gamma, an `add_weight`):
    a fresh draw, or inside `skip_initialization()` a placeholder that draws nothing."""
    init = fresh(initializer, salt)
    return _Deferred(init) if _SKIPPING.get() else init


# --- building without drawing weights that loading replaces --------------------------------

_SKIPPING = contextvars.ContextVar("videomae_keras_skip_initialization", default=False)


_PLACEHOLDERS = FreedMemory()


class _Deferred(keras.initializers.Initializer):
    """Stands in for `initializer` while a model is built to be loaded: NaN (zeros for
    integers), so no random kernel is compiled or run, and a weight that loading misses
    shows up as NaN instead of passing for a trained one. The NaN tensor is made by the
    backend: the variable takes it as its storage, where a numpy placeholder is copied on
    torch (that second pass over fresh memory made a ViT-L load 4.4 s instead of 1.9 s)."""

    def __init__(self, initializer):
        self.initializer = initializer

    def __call__(self, shape, dtype=None):
        name = keras.backend.standardize_dtype(dtype or "float32")
        if "float" in name:
            _PLACEHOLDERS.count(4 * math.prod(shape))  # the temporaries handed back as we go
            return keras.ops.full(shape, np.nan, dtype="float32")  # the variable casts
        return np.zeros(shape, bool if name == "bool" else np.int64)

    def get_config(self):
        return self.initializer.get_config()


@contextlib.contextmanager
def skip_initialization():
    """Inside, VideoMAE layers create their weights without drawing random values (NaN
    placeholders): for models whose every weight is about to be loaded. About 5 of the 6.5 s
    of loading a tiny model on jax were spent compiling random initialisers. Call
    `restore_initializers(model)` on the result (`build_for_loading` does both)."""
    token = _SKIPPING.set(True)
    try:
        yield
    finally:
        _SKIPPING.reset(token)


def restore_initializers(layer):
    """Puts the real initialisers back on every (sub-)layer built in `skip_initialization()`,
    so configs and later re-initialisation see them, not the placeholders."""
    seen = set()

    def visit(obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for name, value in list(vars(obj).items()):
            if isinstance(value, _Deferred):
                object.__setattr__(obj, name, value.initializer)
            elif isinstance(value, keras.layers.Layer):
                visit(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, keras.layers.Layer):
                        visit(item)
        if isinstance(obj, keras.Model):  # functional models hold layers outside attributes
            for item in obj.layers:
                visit(item)

    visit(layer)
    return layer


def build_for_loading(build, *args, **kwargs):
    """`build(*args, **kwargs)` (a model constructor, `from_config` or a Keras loader) with
    weight drawing skipped; the caller must assign every weight afterwards."""
    with skip_initialization():
        model = build(*args, **kwargs)
    return restore_initializers(model)
