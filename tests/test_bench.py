"""The benchmark scripts' bookkeeping (ratios, tables, README block); the timings themselves
come from `python bench/run_all.py`, never from tests."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import _common  # noqa: E402
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


@pytest.mark.parametrize("script", ["run_all.py", "speed.py", "quantize.py",
                                    "preprocess.py"])
def test_scripts_explain_themselves(script):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
