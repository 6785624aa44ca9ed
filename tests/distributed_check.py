"""Run by test_training_distribute.py in a fresh process (devices must be set up before the backend
starts): trains a tiny pretrainer on one device and data-parallel on two, same data and
seed, and prints the figures as JSON."""

import contextlib
import json
import os
import sys

backend = sys.argv[1]
os.environ["KERAS_BACKEND"] = backend
if backend == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
if backend == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

import keras  # noqa: E402

from videomae_keras.models import VideoMAEPretrainer  # noqa: E402
from videomae_keras.training import VideoMAEAdamW  # noqa: E402
from videomae_keras.training.distribute import data_parallel, local_devices  # noqa: E402

rng = np.random.default_rng(0)
video = rng.standard_normal((8, 4, 32, 32, 3)).astype("float32")
masks = np.zeros((8, 8), bool)
for row in masks:
    spatial = np.zeros(4, bool)
    spatial[rng.permutation(4)[:2]] = True
    row[:] = np.tile(spatial, 2)


def run(distributed):
    keras.utils.set_random_seed(0)
    scope = data_parallel() if distributed else contextlib.nullcontext()
    with scope:
        model = VideoMAEPretrainer.from_arguments(num_frames=4, image_size=32, patch_size=16, hidden_dim=32,
                                   depth=1, num_heads=2, mlp_dim=48, decoder_hidden_dim=16,
                                   decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=24,
                                   mask_ratio=0.5)
        model.compile(optimizer=VideoMAEAdamW(1e-3))
        history = model.fit([video, masks.astype("uint8")], batch_size=4, epochs=3,
                            shuffle=False, verbose=0)
    return [keras.ops.convert_to_numpy(w) for w in model.weights], history.history["loss"]


single, single_loss = run(False)
parallel, parallel_loss = run(True)
print(json.dumps({
    "devices": local_devices(),
    "loss_single": single_loss,
    "loss_parallel": parallel_loss,
    "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(single, parallel)),
    "weights_moved": max(float(np.abs(a).max()) for a in single) > 0,
}))
