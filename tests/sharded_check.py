"""Run by test_training_distribute.py in a fresh process with 8 virtual CPU devices (they must exist
before JAX starts): trains a tiny pretrainer and a tiny classifier on one device and fully
sharded on several meshes, same data and start, and prints weights' differences and the
variables' shardings as JSON."""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import numpy as np  # noqa: E402

import keras  # noqa: E402

from videomae_keras.models import VideoMAEClassifier, VideoMAEPretrainer  # noqa: E402
from videomae_keras.training.distribute import fully_sharded  # noqa: E402

MESHES = [m for m in sys.argv[1:]] or ["2x4"]
rng = np.random.default_rng(0)
video = rng.standard_normal((8, 4, 32, 32, 3)).astype("float32")
masks = np.stack([np.tile(rng.permutation([True, True, False, False]), 2)
                  for _ in range(8)]).astype("uint8")
labels = rng.integers(0, 12, size=8)
ENCODER = dict(num_frames=4, image_size=32, patch_size=16, hidden_dim=32, depth=2,
               num_heads=4, mlp_dim=64)


def build(kind):
    if kind == "pretrainer":
        return VideoMAEPretrainer.from_arguments(**ENCODER, decoder_hidden_dim=16, decoder_depth=1,
                                  decoder_num_heads=2, decoder_mlp_dim=24, mask_ratio=0.5)
    return VideoMAEClassifier.from_arguments(**ENCODER, num_classes=12)


def train(kind, start, mesh=None):
    """Three SGD-with-momentum steps of batch 8 from the weights `start`."""
    def fit():
        model = build(kind)
        model.set_weights(start)
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        if kind == "pretrainer":
            model.compile(optimizer=optimizer)
            model.fit([video, masks], batch_size=8, epochs=3, shuffle=False, verbose=0)
        else:
            model.compile(optimizer=optimizer,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(video, labels, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return model

    if mesh is None:
        return fit()
    with fully_sharded(mesh):
        return fit()


def sharding(variable):
    value = variable.value
    return {"spec": [a if a is None else str(a) for a in value.sharding.spec],
            "shape": list(value.shape),
            "shard": list(value.addressable_shards[0].data.shape)}


result = {}
for kind in ("pretrainer", "classifier"):
    keras.utils.set_random_seed(0)
    start = build(kind).get_weights()
    single = train(kind, start)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), start))
    for mesh in MESHES:
        sharded = train(kind, start, mesh)
        diff = max(float(np.abs(a - b).max())
                   for a, b in zip(single.get_weights(), sharded.get_weights()))
        result[f"{kind} {mesh}"] = {
            "moved": moved,
            "max_weight_diff": diff,
            "weights": {v.path: sharding(v) for v in sharded.weights},
            "optimizer": {v.path: sharding(v) for v in sharded.optimizer.variables
                          if len(v.shape) >= 2},
        }
print(json.dumps(result))
