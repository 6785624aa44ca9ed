"""The README's Python examples run as written: every ```python block is extracted and run
in a fresh process, offline, in an empty folder. Blocks that need a download are marked
`<!-- readme-test: needs a download -->` on the line before them and skipped."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "<!-- readme-test: needs a download -->"


def python_blocks():
    """[(line number, code, needs a download)] of the README's ```python blocks."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        blocks.append((line, match.group(1), before == MARK))
    return blocks


def test_the_readme_has_runnable_examples():
    blocks = python_blocks()
    assert sum(not needs for _, _, needs in blocks) >= 2
    for line, code, needs in blocks:
        if not needs:  # a block that names a file it does not make must be marked
            assert "checkpoint.pth" not in code and "my_video.mp4\")" not in code, line


RUNNABLE = [(line, code) for line, code, needs in python_blocks() if not needs]


@pytest.mark.backend_independent
@pytest.mark.parametrize("line,code", RUNNABLE, ids=[f"line{line}" for line, _ in RUNNABLE])
def test_readme_example_runs(line, code, tmp_path):
    env = dict(os.environ, VIDEOMAE_KERAS_OFFLINE="1", HF_HUB_OFFLINE="1",
               VIDEOMAE_KERAS_CACHE=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    env.setdefault("KERAS_BACKEND", "torch")  # a block may choose its own
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"README.md line {line}:\n{run.stderr[-3000:]}"


def test_the_install_section_gives_the_ci_command_and_the_cpu_wheel():
    """CI installs with the README's one line; a machine without a GPU is told where the
    CPU-only torch wheel is (the default index brings several GB of CUDA packages)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        install = [line for line in f if line.startswith("pip install")]
    assert install and all(line.strip() in readme for line in install)
    assert 'pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu' in readme


def test_every_picture_the_readme_shows_is_in_the_repository():
    text = open(os.path.join(ROOT, "README.md")).read()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert pictures
    for path in pictures:
        assert os.path.isfile(os.path.join(ROOT, path)), path
