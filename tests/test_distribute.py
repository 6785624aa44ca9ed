"""Data-parallel training on two CPU devices gives the single-device result (JAX:
keras.distribution.DataParallel; TensorFlow: MirroredStrategy)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(BACKEND == "torch", reason="Keras has no data parallelism for torch")
def test_two_devices_match_one():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.run([sys.executable, os.path.join(HERE, "distributed_check.py"),
                              BACKEND], capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert len(result["devices"]) == 2
    np.testing.assert_allclose(result["loss_parallel"], result["loss_single"], rtol=1e-5)
    # Adam moves each weight by about lr (1e-3) per step whatever the gradient's size, so
    # summation-order noise in a near-zero gradient can shift a weight by a small fraction of a
    # step (1.2e-5 seen on jax); a replica training on its own half batch differs by whole steps.
    assert result["max_weight_diff"] <= 1e-4


def test_torch_says_it_is_not_supported():
    if BACKEND != "torch":
        pytest.skip("torch only")
    from videomae_keras.training.distribute import data_parallel

    with pytest.raises(NotImplementedError, match="torch"):
        with data_parallel():
            pass
