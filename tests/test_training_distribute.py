"""Training on several CPU devices gives the single-device result: data parallel on two
(JAX: keras.distribution.DataParallel; TensorFlow: MirroredStrategy), and fully sharded
(JAX: keras.distribution.ModelParallel over a batch x model mesh) on eight."""

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


def _run_check(script, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                             capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution shards variables on jax only")
def test_fully_sharded_training_matches_one_device_and_shards_every_matrix():
    """Three SGD-momentum steps of a pretrainer and a classifier on meshes 2x4 and 8x1 end at
    the single-device weights; every weight matrix and its momentum hold 1/8 per device."""
    result = _run_check("sharded_check.py", "2x4", "8x1")
    assert len(result) == 4
    for name, run in result.items():
        assert run["moved"] > 1e-3, name
        assert run["max_weight_diff"] <= 1e-5, (name, run["max_weight_diff"])
        matrices = {path: s for path, s in run["weights"].items()
                    if sum(d > 1 for d in s["shape"]) >= 2}  # not decoder/mask_token (1, 1, D)
        assert any("qkv" in p for p in matrices) and any("fc2" in p for p in matrices)
        slots = {path: s for path, s in run["optimizer"].items()
                 if sum(d > 1 for d in s["shape"]) >= 2}
        assert len(slots) == len(matrices)  # one momentum per matrix, sharded like it
        for path, s in list(matrices.items()) + list(slots.items()):
            assert np.prod(s["shard"]) * 8 == np.prod(s["shape"]), (name, path, s)
            if name.endswith("2x4"):
                assert set(s["spec"]) - {None} == {"batch", "model"}, (name, path, s)
        for path, s in run["weights"].items():
            if len(s["shape"]) == 1:
                assert s["shard"] == s["shape"], (name, path)  # vectors stay replicated


def test_mesh_and_distribution_arguments_are_checked():
    from videomae_keras.training.distribute import distribution_scope, parse_mesh, shard_axes

    assert parse_mesh("2x4") == (2, 4) and parse_mesh("8X1", 8) == (8, 1)
    for bad in ("2", "2x", "0x8", "axb", "2x2x2"):
        with pytest.raises(ValueError, match="2x4"):
            parse_mesh(bad)
    with pytest.raises(ValueError, match="needs 8 devices; there are 4"):
        parse_mesh("2x4", 4)
    assert shard_axes((768, 2304), {"batch": 2, "model": 4}) == ("batch", "model")
    assert shard_axes((174, 768), {"batch": 1, "model": 4}) == (None, "model")
    assert shard_axes((768,), {"batch": 2, "model": 4}) == (None,)
    assert shard_axes((1117, 3), {"batch": 2, "model": 4}) == (None, None)
    with pytest.raises(ValueError, match="one of data, fsdp"):
        distribution_scope("tensor")
    with pytest.raises(ValueError, match="goes with distribution='fsdp'"):
        distribution_scope(None, "2x4")
    if BACKEND != "jax":
        with pytest.raises(NotImplementedError, match="KERAS_BACKEND=jax"):
            with distribution_scope("fsdp"):
                pass


def test_torch_says_it_is_not_supported():
    if BACKEND != "torch":
        pytest.skip("torch only")
    from videomae_keras.training.distribute import data_parallel

    with pytest.raises(NotImplementedError, match="torch"):
        with data_parallel():
            pass
