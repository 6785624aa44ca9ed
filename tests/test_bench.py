"""The benchmark scripts' bookkeeping (ratios, tables, README block); the timings themselves
come from `python bench/run_all.py`, never from tests."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import _common  # noqa: E402
import dispatch  # noqa: E402
import onnx_runtime  # noqa: E402
import predict_e2e  # noqa: E402
import run_all as bench_all  # noqa: E402
import speed  # noqa: E402

pytestmark = pytest.mark.backend_independent


def test_ratios_compare_with_transformers_in_the_same_case():
    rows = [{"case": "ft-B-b1", "backend": "transformers", "seconds": 2.0},
            {"case": "ft-B-b1", "backend": "jax", "seconds": 3.0},
            {"case": "ft-B-b4", "backend": "transformers", "seconds": 8.0},
            {"case": "ft-B-b4", "backend": "torch", "seconds": 6.0},
            {"case": "ft-S-b1", "backend": "torch", "error": "boom"}]
    _common.add_ratios(rows)
    assert rows[1]["ratio"] == 1.5 and rows[3]["ratio"] == 0.75
    assert "ratio" not in rows[4]
    text = _common.table(rows, [("case", "case"), ("ratio", "x"), ("error", "error")])
    assert "| ft-B-b1 | 1.5 |" in text and "boom" in text


def test_cases_parse():
    assert speed.parse_case("train-B-b2") == ("train", "B", 2)
    assert set(speed.QUICK_CASES) <= set(speed.CASES)


def test_readme_block_is_replaced(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{bench_all.BEGIN}\nold\n{bench_all.END}\ntail\n")
    monkeypatch.setattr(_common, "ROOT", str(tmp_path))
    bench_all.update_readme("new table\n")
    text = readme.read_text()
    assert "old" not in text and "new table" in text and text.endswith("tail\n")


def test_the_repository_readme_has_the_block():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert bench_all.BEGIN in text and bench_all.END in text
    assert onnx_runtime.BEGIN in text and onnx_runtime.END in text


def test_rotating_timing_changes_who_goes_first():
    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    medians = _common.rotating_seconds(functions, repeats=3, warmup=0)
    assert set(medians) == set("abc") and all(m >= 0 for m in medians.values())
    assert calls == list("abc" "bca" "cab")


def test_onnx_table_shows_speedups_and_int8_agreement():
    payload = {"machine": {"machine": "x86_64", "cores": 2, "cpu": "EPYC (avx2)"},
               "onnxruntime": "1.0", "repeats": 5, "command": "python bench/onnx_runtime.py",
               "speed": _common.add_ratios([
                   {"case": "ft-B-b1", "backend": "transformers", "seconds": 2.0},
                   {"case": "ft-B-b1", "backend": "onnxruntime int8", "seconds": 1.0}]),
               "accuracy": [{"fixture": "demo classifier", "variant": "onnxruntime int8",
                             "clips": 256, "top1_agreement": 1.0, "relative_diff": 0.01}]}
    for row in payload["speed"]:
        row["speedup"] = 1 / row["ratio"]
    text = onnx_runtime.render(payload)
    assert "on EPYC (avx2), 2 cores (onnxruntime 1.0" in text
    assert "| ft-B-b1 | onnxruntime int8 | 1 |  | 2 |" in text
    assert "| demo classifier | onnxruntime int8 |  | 256 | 1 |" in text


@pytest.mark.parametrize("script", ["run_all.py", "speed.py", "quantize.py",
                                    "preprocess.py", "dispatch.py", "memory_plan.py",
                                    "data_loader.py", "load.py", "predict_e2e.py",
                                    "onnx_runtime.py", "export_memory.py"])
def test_scripts_explain_themselves(script):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_paired_timing_alternates_and_takes_per_pair_ratios(monkeypatch):
    clock, calls = [0.0], []

    def ticking(name, seconds):
        def function():
            calls.append(name)
            clock[0] += seconds.pop(0) if isinstance(seconds, list) else seconds
        return function

    monkeypatch.setattr(_common.time, "perf_counter", lambda: clock[0])
    # the machine slows down 2x after two pairs: both members of a pair see it
    first = ticking("a", [1.0, 1.0, 1.0, 2.0, 2.0])
    second = ticking("b", [1.5, 1.5, 1.5, 3.0, 3.0])
    a, b, ratio = _common.paired_seconds(first, second, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert (a, b) == (1.5, 2.25) and ratio == 1.5


def test_paired_rows_get_their_own_table():
    payload = {"rows": [{"case": "ft-B-b1", "backend": "torch", "seconds": 2.0,
                         "paired_ratio": 0.97, "paired_seconds": 1.9,
                         "paired_transformers_seconds": 1.96}],
               "pt_over_ft": [], "memory": []}
    text = speed.render(payload)
    assert "Same process, alternating calls" in text
    assert "| ft-B-b1 | torch | 1.9 | 1.96 | 0.97 |" in text


def test_dispatch_table_shows_the_extra_time_per_block():
    payload = {"rows": [{"tokens": 157, "seconds": 0.031, "transformers_seconds": 0.0255,
                         "extra_ms": 5.5, "ratio": 1.21, "pairs": 50}]}
    text = dispatch.render(payload)
    assert "| 157 | 0.031 | 0.0255 | 5.5 | 1.21 |" in text


def test_pt_over_ft_times_both_models_alternating_in_one_process(monkeypatch):
    clock, built = [0.0], []

    def fake_step(case):
        built.append(case)
        seconds = {"ft-B-b1": 4.0, "pt-B-b1": 1.0}[case]

        def step():
            clock[0] += seconds
        return step

    monkeypatch.setattr(_common.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(speed, "_transformers_step", fake_step)
    result = speed.worker("transformers", ["ptft-B-b1"], repeats=3)["ptft-B-b1"]
    assert built == ["ft-B-b1", "pt-B-b1"]
    assert (result["ft_seconds"], result["pt_seconds"], result["pt_over_ft"]) == (4.0, 1.0, 0.25)


def test_pt_over_ft_table_shows_the_same_process_ratio_beside_the_cases_one():
    payload = {"rows": [], "memory": [],
               "pt_over_ft": [{"backend": "torch", "batch": 1, "same_process": 0.231,
                               "pt_over_ft": 0.344}]}
    assert "| torch | 1 | 0.231 | 0.344 |" in speed.render(payload)


@pytest.mark.parametrize("length", [1, 7, 64, 65, 300, 1001])
@pytest.mark.parametrize("clips", [1, 2, 5])
def test_predict_e2e_gives_transformers_the_frames_our_sampler_picks(length, clips):
    from videomae_keras.video.sampling import DenseSampler

    ours = DenseSampler(16, predict_e2e.SAMPLING_RATE).test(length, clips)
    assert predict_e2e.dense_test_indices(length, clips, 16).tolist() == ours.tolist()


def test_predict_e2e_smoke_run_times_both_sides_on_the_same_work(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "predict_e2e.py"),
                           "--smoke", "--fixtures", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("@@RESULT@@")][-1]
    rows = {row["backend"]: row for row in json.loads(line[len("@@RESULT@@"):])["rows"]}
    assert set(rows) == {"transformers", "torch"}
    theirs, ours = rows["transformers"], rows["torch"]
    assert "error" not in theirs and "error" not in ours, (theirs, ours)
    assert theirs["ratio"] == 1 and ours["ratio"] == ours["seconds"] / theirs["seconds"]
    for row in (theirs, ours):  # the work after imports lies inside the whole process
        assert 0 <= row["load_seconds"] <= row["work_seconds"] < row["seconds"]
    assert theirs["frames_decoded"] == 8  # 30 frames at stride 4
    assert ours["top5_agrees"] and ours["max_prob_diff"] < 0.01
    assert "| torch |" in done.stdout


def test_predict_e2e_table_says_what_ran_and_shows_the_ratios():
    runs = {"transformers": [{"seconds": 40.0, "work_seconds": 30.0, "load_seconds": 2.0,
                              "probabilities": [0.1, 0.2, 0.3, 0.15, 0.05, 0.2]}],
            "jax": [{"seconds": 50.0, "work_seconds": 24.0, "load_seconds": 1.5,
                     "probabilities": [0.1, 0.2, 0.3, 0.15, 0.06, 0.19]},
                    {"error": "exit 2: boom"}]}
    rows = predict_e2e.summarize(runs, "clip", (5, 3))
    theirs, ours = rows
    assert (ours["ratio"], ours["work_ratio"], ours["runs"]) == (1.25, 0.8, 1)
    assert ours["top5_agrees"] and abs(ours["max_prob_diff"] - 0.01) < 1e-9
    assert ours["error"] == "exit 2: boom" and "top5_agrees" not in theirs
    setting = {"clip": "10 s 1280x720 at 30 fps (mp4v)", "views": "5x3", "repeats": 3,
               "model": "ViT-B/16, 400 classes"}
    text = predict_e2e.render({"setting": setting, "rows": rows})
    assert "5x3 views" in text and "median of 3 run(s)" in text
    assert "| jax | 50 | 1.25 | 24 | 0.8 | 1.5 |" in text


def test_results_record_the_command_without_this_machines_paths(monkeypatch):
    monkeypatch.setattr(sys, "argv", [os.path.join(_common.ROOT, "bench", "load.py"),
                                      "--sizes", "B", "--fixtures", "/somewhere/fx",
                                      "--out=/else/where.json"])
    assert _common.command() == "python bench/load.py --sizes B --fixtures DIR --out=DIR"
    monkeypatch.setattr(sys, "argv", [os.path.join(_common.ROOT, "bench", "speed.py"),
                                      "--out", "int8_avx2"])  # a results name is no path
    assert _common.command() == "python bench/speed.py --out int8_avx2"


def test_call_overhead_table_shows_milliseconds_and_ratios():
    import call_overhead

    payload = {"rows": [
        {"case": "12 blocks", "blocks": 12, "variant": "transformers", "backend": "transformers",
         "seconds": 0.004},
        {"case": "12 blocks", "blocks": 12, "variant": "jax", "backend": "jax",
         "seconds": 0.003},
        {"case": "12 blocks", "blocks": 12, "variant": "torch", "backend": "torch",
         "error": "exit 1: boom"}]}
    _common.add_ratios(payload["rows"])
    text = call_overhead.render(payload)
    assert "| 12 | jax | 3 | 0.75 |" in text and "exit 1: boom" in text
