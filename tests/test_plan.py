"""`plan` (videomae_keras/plan.py): XLA's per-device memory of the compiled training step on
eight virtual CPU devices. It runs in a JAX child process whatever the backend, so these
tests run once per CI (backend_independent)."""

import json
import subprocess
import sys

import pytest

from videomae_keras.plan import CHIPS, format_plan, plan

pytestmark = pytest.mark.backend_independent

TINY = dict(devices=8, num_frames=8, image_size=64, progress=False, check_fits=False)


@pytest.fixture(scope="module")
def plans():
    """Fine-tuning the tiny model: data parallel, fsdp 8x1 and 2x4, and fsdp with remat (at
    1 and 4 clips per replica, and with each chip's largest batch compiled)."""
    return {
        "data": plan("tinyFT", distribution="data", batch_size=8, **TINY),
        "fsdp": plan("tinyFT", distribution="fsdp", mesh="8x1", batch_size=8, **TINY),
        "fsdp 2x4": plan("tinyFT", distribution="fsdp", mesh="2x4", batch_size=2, **TINY),
        "remat": plan("tinyFT", distribution="fsdp", mesh="8x1", batch_size=8, remat=True,
                      **TINY),
        "remat at 4": plan("tinyFT", distribution="fsdp", mesh="8x1", batch_size=32,
                           remat=True, **TINY),
        "remat checked": plan("tinyFT", distribution="fsdp", mesh="8x1", batch_size=8,
                              remat=True, **dict(TINY, check_fits=True)),
    }


def test_fsdp_divides_the_model_state(plans):
    """Per device, fsdp holds at most 1/8 of data parallel's weights and optimizer state
    plus what it leaves replicated (vectors)."""
    data, fsdp = plans["data"]["per_device_bytes"], plans["fsdp"]["per_device_bytes"]
    assert data["replicated_state"] == data["model_state"]  # data parallel copies it all
    assert fsdp["replicated_state"] < fsdp["model_state"] / 4
    assert fsdp["model_state"] <= data["model_state"] / 8 + fsdp["replicated_state"]
    assert fsdp["arguments"] < data["arguments"]
    for figures in (data, fsdp):
        assert figures["total"] == (figures["arguments"] + figures["outputs"]
                                    + figures["temporaries"] - figures["aliased"])
    mesh = plans["fsdp 2x4"]
    assert (mesh["mesh"], mesh["replicas"], mesh["batch_per_replica"]) == ("2x4", 2, 1)
    assert mesh["per_device_bytes"]["model_state"] <= (
        data["model_state"] / 8 + mesh["per_device_bytes"]["replicated_state"])


def test_remat_shows_its_saving(plans):
    """The recomputation survives XLA's CPU pipeline (see plan.CPU_FLAGS): fewer
    temporaries per clip with remat, and so a larger batch per chip."""
    plain, remat = plans["fsdp"], plans["remat"]
    assert remat["per_device_bytes"]["temporaries"] < 0.8 * plain["per_device_bytes"][
        "temporaries"]
    assert remat["per_clip_bytes"] < plain["per_clip_bytes"]
    for chip, fits in plain["max_batch_per_replica"].items():
        assert remat["max_batch_per_replica"][chip] >= fits > 0
    # the largest batch follows from the fixed part and the cost of one clip
    v5e = remat["max_batch_per_replica"]["TPU v5e"]
    limit = 16 * 1024 ** 3
    assert remat["fixed_bytes"] + v5e * remat["per_clip_bytes"] <= limit
    assert remat["fixed_bytes"] + (v5e + 1) * remat["per_clip_bytes"] > limit


def test_one_more_clip_costs_the_same_at_any_batch(plans):
    """The step's program does not change with the batch (attention is traced as the fused
    op, not the CPU's query chunks, which shrink as the batch grows): on the tiny model, the
    cost of one more clip at 1 clip per replica holds at 4 within 10%. Measured: 7.74 MB per
    clip at 1 per replica, 8.25 MB at 4 and at 8; with the chunks 4.79, 6.95 and 9.96 MB."""
    one, four = plans["remat"], plans["remat at 4"]
    assert four["batch_per_replica"] == 4
    assert abs(four["per_clip_bytes"] - one["per_clip_bytes"]) <= 0.1 * one["per_clip_bytes"]
    predicted = one["fixed_bytes"] + 4 * one["per_clip_bytes"]
    assert abs(four["per_device_bytes"]["total"] - predicted) <= 0.1 * predicted


def test_each_chips_largest_batch_is_compiled_and_fits(plans):
    """check_fits compiles every chip's answer: its measured total fits the chip, larger
    chips take larger batches, and none takes more than the straight line from one and two
    clips allows (the slope only grows as activations take over)."""
    checked, quick = plans["remat checked"], plans["remat"]
    totals = {int(n): total for n, total in checked["compiled_totals"].items()}
    assert checked["fits_checked"] and not quick["fits_checked"]
    assert len(totals) > 2 and {1, 2} <= set(totals)
    previous = 0
    for chip, size in CHIPS.items():
        fits = checked["max_batch_per_replica"][chip]
        assert fits in totals and totals[fits] <= size * 1024 ** 3, chip
        assert previous < fits <= quick["max_batch_per_replica"][chip], chip
        previous = fits
    assert checked["per_device_bytes"] == quick["per_device_bytes"]
    assert "each compiled and measured" in "\n".join(format_plan(checked))
    assert "unchecked (--quick)" in "\n".join(format_plan(quick))


def test_the_printed_plan_names_every_figure(plans):
    text = "\n".join(format_plan(plans["remat"]))
    for words in ("tinyFT fine-tuning, 8x64 clips, fsdp on mesh 8x1 (8 devices), batch 8",
                  "remat", "arguments", "temporaries", "total", "TPU v5e", "H200"):
        assert words in text


def test_the_command_prints_json_and_refuses_bad_arguments():
    command = [sys.executable, "-m", "videomae_keras_cli", "plan"]
    done = subprocess.run(command + ["--arch", "tinyPT", "--devices", "2", "--num-frames", "4",
                                     "--image-size", "32", "--json", "--quiet", "--quick"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["task"], result["distribution"], result["devices"]) == ("pretraining",
                                                                           "fsdp", 2)
    assert result["per_device_bytes"]["total"] > result["per_device_bytes"]["model_state"] > 0
    for argv, message in [(["--arch", "S16FT", "--mesh", "3x3"], "mesh 3x3 needs 9 devices"),
                          (["--arch", "S16XX", "--devices", "1"], "must end in FT"),
                          (["--arch", "S16FT", "--batch-size", "3"], "does not split over")]:
        done = subprocess.run(command + argv + ["--quiet"], capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (argv, done.stderr)
