"""Multi-process training on 127.0.0.1 (jax.distributed through keras.distribution.initialize):
two processes of four virtual CPU devices each, fully sharded over a 2x4 mesh whose batch
axis spans the processes, end at the weights of one process with eight devices; a run with
one process killed resumes when the same command is started again on both.

The runs start their own JAX processes whatever backend the suite runs, so this runs once
per CI (backend_independent)."""

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.backend_independent

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCHS = 6


def _command(train, out, *extra):
    return [sys.executable, "-m", "videomae_keras_cli", "pretrain", train, "--out", str(out),
            "--arch", "tiny", "--epochs", str(EPOCHS), "--batch-size", "8", "--num-frames", "8",
            "--image-size", "32", "--sampling-rate", "2", "--mask-ratio", "0.75",
            "--workers", "1", "--distribution", "fsdp", "--mesh", "2x4", *extra]


def _env(devices):
    return dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                PYTHONPATH=os.pathsep.join([os.path.dirname(HERE),
                                            os.environ.get("PYTHONPATH", "")]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_pair(train, out, logs, *extra):
    port = _free_port()
    processes = []
    for rank in range(2):
        log = open(logs / f"{out.name}-{rank}.log", "w")  # noqa: SIM115 (closed by the caller)
        processes.append((subprocess.Popen(
            _command(train, out, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                     "--process-id", str(rank), *extra),
            env=_env(4), stdout=log, stderr=subprocess.STDOUT), log))
    return processes


def _wait(processes, timeout=600):
    deadline = time.monotonic() + timeout
    codes = []
    for process, log in processes:
        try:
            codes.append(process.wait(max(1, deadline - time.monotonic())))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    return codes


def _weights(path):
    """Every tensor of a `.keras` file, by its path in the weights file."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    values = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, item: values.__setitem__(name, np.asarray(item))
                     if isinstance(item, h5py.Dataset) else None)
    return values


@pytest.mark.slow
def test_two_processes_resume_after_a_kill_and_match_one_process(tmp_path):
    from videomae_keras.data import make_synthetic_dataset

    lists = make_synthetic_dataset(tmp_path / "data", train_per_class=4, val_per_class=0,
                                   frames=24, seed=3)
    logs = tmp_path
    single = subprocess.run(_command(lists["train"], tmp_path / "single", "--quiet"),
                            env=_env(8), capture_output=True, text=True, timeout=600,
                            check=False)
    assert single.returncode == 0, single.stderr[-3000:]

    # two processes; process 1 is killed once an epoch's backup exists
    out = tmp_path / "multi"
    pair = _start_pair(lists["train"], out, logs, "--quiet")
    deadline = time.monotonic() + 600
    while not (out / "backup").is_dir() or not any(
            name.startswith("epoch-") for name in os.listdir(out / "backup")):
        assert time.monotonic() < deadline and all(p.poll() is None for p, _ in pair), \
            (logs / "multi-0.log").read_text()[-3000:]
        time.sleep(0.05)
    pair[1][0].send_signal(signal.SIGKILL)
    time.sleep(1)
    pair[0][0].send_signal(signal.SIGKILL)  # what a job scheduler does to the survivors
    _wait(pair)
    assert not (out / "pretrained.keras").exists()

    # the same command on both again: it resumes and finishes
    pair = _start_pair(lists["train"], out, logs)
    codes = _wait(pair)
    first = (logs / "multi-0.log").read_text()
    assert codes == [0, 0], (first[-3000:], (logs / "multi-1.log").read_text()[-3000:])
    assert "resuming at epoch" in first
    assert "resuming" not in (logs / "multi-1.log").read_text()  # process 0 speaks for all
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == [str(e) for e in range(EPOCHS)]

    ours, theirs = _weights(out / "pretrained.keras"), _weights(tmp_path / "single" /
                                                                "pretrained.keras")
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, atol=1e-5, err_msg=name)
