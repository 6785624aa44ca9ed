"""bench/gpu.py without a GPU: its --smoke run (the same code paths on the CPU, tiny models),
the rows of missing and overrunning variants, the no-GPU exit and the README block. The GPU
figures themselves come from `python bench/gpu.py` on a GPU, never from tests."""

import argparse
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import _common  # noqa: E402
import gpu  # noqa: E402

pytestmark = pytest.mark.backend_independent
SCRIPT = os.path.join(ROOT, "bench", "gpu.py")


def _args(**more):
    return argparse.Namespace(**dict(dict(repeats=1, warmup=0, smoke=True, budget=60), **more))


@pytest.mark.slow
def test_smoke_run_measures_each_variant_in_its_own_process(tmp_path):
    """transformers and our eager torch (the cheapest of ours on a CPU) through the real
    child processes: one row per case and variant, ratios, the attention kernel, no README."""
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, SCRIPT, "--smoke", "--variants", "transformers,torch",
                           "--cases", "ft-B-b1,train-B-b2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["smoke"] is True
    rows = {(row["backend"], row["case"]): row for row in payload["rows"]}
    assert set(rows) == {(v, c) for v in ("transformers", "torch")
                         for c in ("ft-B-b1", "train-B-b2")}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["seconds"] > 0 and row["runs"] == 2 and row["attention"]
        assert row["clips_per_s"] == pytest.approx(gpu.parse_case(row["case"])[2]
                                                   / row["seconds"])
    assert rows["transformers", "ft-B-b1"]["attn_implementation"] == "sdpa"
    assert rows["torch", "train-B-b2"]["dtype"] == "mixed_bfloat16"
    assert rows["torch", "ft-B-b1"]["ratio"] == pytest.approx(
        rows["torch", "ft-B-b1"]["seconds"] / rows["transformers", "ft-B-b1"]["seconds"])
    assert "| ft-B-b1 | torch |" in done.stdout and "flash used" in done.stdout
    assert "[torch] train-B-b2:" in done.stderr  # progress, as each case ends
    assert "README" not in done.stdout + done.stderr


def test_a_missing_backend_gives_skipped_rows_and_its_share_to_the_others(monkeypatch):
    shares = []

    def fake_variant(variant, cases, args, deadline):
        shares.append(deadline - time.time())
        return [{"case": c, "backend": variant, "status": "ok", "seconds": 0.5} for c in cases]

    monkeypatch.setattr(gpu, "missing_module",
                        lambda v: "tensorflow is not installed" if v == "tensorflow" else None)
    monkeypatch.setattr(gpu, "run_variant", fake_variant)
    rows = gpu.run(["transformers", "tensorflow", "torch"], ["ft-B-b8"], _args(budget=100))
    skipped = [row for row in rows if row["backend"] == "tensorflow"]
    assert skipped == [{"case": "ft-B-b8", "backend": "tensorflow", "status": "skipped",
                        "note": "skipped: tensorflow is not installed"}]
    assert shares[0] == pytest.approx(50, abs=1)  # half each, not a third
    assert rows[0]["ms"] == 500 and rows[0]["clips_per_s"] == 16 and rows[0]["ratio"] == 1


def test_missing_module_names_the_package(monkeypatch):
    monkeypatch.setattr(gpu.importlib.util, "find_spec",
                        lambda name: None if name == "tensorflow" else object())
    assert gpu.missing_module("tensorflow") == "tensorflow is not installed"
    assert gpu.missing_module("jax") is None


def test_a_variant_past_its_share_is_stopped_and_keeps_what_it_finished(tmp_path, monkeypatch):
    worker = tmp_path / "worker.py"
    answer = {"case": "ft-B-b8", "status": "ok", "seconds": 0.01, "attention": "flash"}
    worker.write_text("import json, time\n"
                      f"print({gpu.MARK!r} + json.dumps({answer!r}), flush=True)\n"
                      "time.sleep(120)\n")
    monkeypatch.setattr(gpu, "__file__", str(worker))
    monkeypatch.setattr(gpu, "GRACE_S", 0)
    start = time.time()
    rows = gpu.run_variant("torch", ["ft-B-b8", "ft-B-b32"], _args(), time.time() + 3)
    assert time.time() - start < 30
    assert rows[0] == {"backend": "torch", **answer}
    assert rows[1]["status"] == "skipped"
    assert rows[1]["note"].startswith("skipped: stopped at the end of its")


def test_without_a_gpu_it_says_so_in_one_line():
    if gpu.gpu_name() is not None:
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("No GPU found") and "\n" not in done.stderr.strip()


def test_cudnn_attention_counts_as_flash_on_every_backend():
    # torch's SDPA picks cuDNN's fused attention for bfloat16 on Hopper, jax asks for it
    assert gpu.is_flash("cudnn") and gpu.is_flash("flash") and gpu.is_flash("cudnn+flash")
    assert not gpu.is_flash("efficient") and not gpu.is_flash("cudnn+math")
    assert gpu.flash_cell({"attention": "cudnn", "flash": False}) == "yes (cudnn)"


def test_the_table_and_the_readme_block(tmp_path, monkeypatch):
    payload = {"machine": {"gpu": "NVIDIA H200", "jax": "0.1", "torch": "2.0"}, "smoke": False,
               "frames": 16, "image_size": 224, "mask_ratio": 0.9, "repeats": 10, "warmup": 2,
               "elapsed_s": 400.0, "command": "python bench/gpu.py",
               "rows": [{"case": "ft-B-b8", "backend": "jax", "status": "ok", "ms": 12.5,
                         "clips_per_s": 640.0, "ratio": 0.9, "attention": "cudnn",
                         "flash": True},
                        {"case": "ft-B-b8", "backend": "tensorflow", "status": "skipped",
                         "note": "skipped: tensorflow is not installed"}]}
    text = gpu.render(payload)
    assert "on NVIDIA H200 (jax 0.1, torch 2.0)" in text
    assert "| ft-B-b8 | jax | 12.5 | 640 | 0.9 | yes (cudnn) |  |" in text
    assert "| ft-B-b8 | tensorflow |  |  |  |  | skipped: tensorflow is not installed |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{gpu.BEGIN}\n{gpu.NO_FIGURE}{gpu.END}\ntail\n")
    monkeypatch.setattr(_common, "ROOT", str(tmp_path))
    with pytest.raises(SystemExit):
        gpu.update_readme(dict(payload, smoke=True))
    assert gpu.NO_FIGURE in readme.read_text()
    gpu.update_readme(payload)
    assert gpu.NO_FIGURE not in readme.read_text() and "yes (cudnn)" in readme.read_text()


def test_the_repository_readme_has_the_block_and_the_command():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert gpu.BEGIN in text and gpu.END in text and "python bench/gpu.py" in text


def test_errors_become_one_line():
    error = RuntimeError("Exception encountered when calling MultiHeadSelfAttention.call()."
                         "\n\n\x1b[1mcuDNN is not detected.\x1b[0m\n\nArguments: ...")
    assert gpu.one_line(error) == "RuntimeError: cuDNN is not detected."


def test_it_explains_itself():
    done = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--smoke" in done.stdout
