"""The command line's start: help without Keras, a quiet start that names the backend, one
line per problem (TensorFlow's and the decoders' own chatter kept out), arguments checked
before any work; and `import videomae_keras` changing nothing else in the process."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from videomae_keras.demo import demo_files

pytestmark = pytest.mark.backend_independent
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("port", "predict", "features", "reconstruct", "explain", "demo", "pretrain", "finetune",
            "make-synthetic", "probe")


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT, **env))


def test_help_answers_without_loading_keras():
    """`--help` took 6-8 s when it imported Keras; the entry point now leaves it unloaded."""
    run = _python(f"""
        import sys, io, contextlib
        import videomae_keras_cli
        for argv in [["--help"]] + [[c, "--help"] for c in {list(COMMANDS)!r}]:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    videomae_keras_cli.main(argv)
                except SystemExit as e:
                    assert e.code == 0, argv
            assert "usage:" in out.getvalue(), argv
        heavy = [m for m in ("keras", "tensorflow", "torch", "jax", "cv2") if m in sys.modules]
        print("loaded:", heavy)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "loaded: []"


def test_the_console_command_lists_checkpoints_without_keras():
    command = shutil.which("videomae-keras", path=os.path.dirname(sys.executable))
    run = subprocess.run([command, "port", "--list"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "sha256" in run.stdout and run.stderr == ""


def test_importing_the_package_changes_nothing_in_the_process():
    """It used to set TF_CPP_MIN_LOG_LEVEL and redirect file descriptor 2. (Its
    dependencies are imported first: OpenCV, for one, edits LD_LIBRARY_PATH itself.)"""
    run = _python("""
        import os
        import cv2, keras, numpy  # noqa: F401
        environ, stderr = dict(os.environ), os.fstat(2)
        import videomae_keras
        videomae_keras.VideoMAEClassifier  # everything imported
        after = os.fstat(2)
        assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
        assert (after.st_dev, after.st_ino) == (stderr.st_dev, stderr.st_ino)
        print("unchanged")
    """)
    assert run.returncode == 0 and run.stdout.strip() == "unchanged", run.stderr


def test_a_broken_video_is_one_line_on_a_quiet_tensorflow_start(tmp_path):
    """On the TensorFlow backend, a garbage file among good ones: stderr holds the backend
    line, progress, and exactly one line for the broken video: no 'moov atom not found',
    decord or OpenCV warnings, no TensorFlow start-up lines."""
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    command = shutil.which("videomae-keras", path=os.path.dirname(sys.executable))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run(
        [command, "predict", str(garbage), demo_files()["clip"], "--weights",
         demo_files()["classifier"], "--views", "1x1", "--top-k", "1", "--decoder", "auto"],
        capture_output=True, text=True, timeout=300, env=dict(env, KERAS_BACKEND="tensorflow"))
    assert run.returncode == 2
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "warn" in line.lower()]
    assert errors == [f"videomae-keras predict: error: {garbage}: cannot read this video "
                      "(Invalid data found when processing input)."], run.stderr
    assert lines[0] == "videomae-keras predict: Keras " + lines[0].split("Keras ")[1]
    assert "tensorflow backend" in lines[0]
    noise = ("cuda", "absl", "cpu_feature_guard", "oneDNN", "moov", "XLA", "I0000", "E0000")
    assert not [line for line in lines if any(n in line for n in noise)], run.stderr
    assert "1. moving right" in run.stdout  # the good video is still classified, by name


def test_arguments_are_checked_before_any_work(capsys):
    from videomae_keras import cli

    for argv, message in [
        (["predict", "x.mp4", "--top-k", "0"], "--top-k: must be at least 1, got 0"),
        (["predict", "x.mp4", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["features", "x.mp4", "--out", "o", "--views", "0x3"], "at least one clip"),
        (["pretrain", "l.txt", "--out", "o", "--mask-ratio", "1.2"], "must lie in (0, 1)"),
        (["finetune", "l.txt", "--out", "o", "--pretrained", "p", "--epochs", "0"],
         "--epochs: must be at least 1"),
        (["port", "x", "--out", "o", "--image-size", "0"], "sizes must be positive"),
        (["pretrain", "l.txt", "--out", "o", "--accumulate", "0"],
         "--accumulate: must be at least 1"),
        (["pretrain", "l.txt", "--out", "o", "--data-parallel", "--distribution", "fsdp"],
         "--data-parallel is --distribution data"),
        (["finetune", "l.txt", "--out", "o", "--pretrained", "p", "--mesh", "2x4"],
         "--mesh goes with --distribution fsdp"),
        (["pretrain", "l.txt", "--out", "o", "--distribution", "fsdp", "--mesh", "2x"],
         "mesh must look like 2x4"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
