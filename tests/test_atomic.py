"""Atomic outputs: single files and sets of outputs that appear together, under errors,
interrupts and a real SIGKILL in the middle of the move into place."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from videomae_keras import atomic

pytestmark = pytest.mark.backend_independent
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _visible(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def test_atomic_output_replaces_only_when_allowed_and_clears_dead_writers_temporaries(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(atomic.OutputExistsError, match="pass --overwrite"):
        with atomic.atomic_output(str(target)):
            pass
    stale = tmp_path / f".out.txt.{_dead_pid()}-abc.tmp"
    stale.write_text("half")
    alive = tmp_path / f".out.txt.{os.getpid()}-def.tmp"  # a writer still at work
    alive.write_text("busy")
    with pytest.raises(RuntimeError, match="simulated"):
        with atomic.atomic_output(str(target), overwrite=True) as temp:
            with open(temp, "w") as f:
                f.write("new")
            raise RuntimeError("simulated")
    assert target.read_text() == "old" and not stale.exists() and alive.exists()
    with atomic.atomic_output(str(target), overwrite=True) as temp:
        with open(temp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"


def test_an_output_set_appears_whole_or_not_at_all(tmp_path):
    (tmp_path / "a.keras").write_text("old a")
    names = ["a.keras", "b.h5", "b.h5.data"]
    with pytest.raises(atomic.OutputExistsError):
        atomic.OutputSet(str(tmp_path), names).__enter__()
    for error in (RuntimeError("simulated"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with atomic.OutputSet(str(tmp_path), names, overwrite=True) as outputs:
                for name in names[:2]:
                    with open(outputs.path(name), "w") as f:
                        f.write("new")
                raise error
        assert _visible(tmp_path) == ["a.keras"] and (tmp_path / "a.keras").read_text() == "old a"
        assert os.listdir(tmp_path) == ["a.keras"]  # no staging left either
    (tmp_path / "b.h5.data").write_text("left by an earlier, larger set")
    with atomic.OutputSet(str(tmp_path), names, overwrite=True) as outputs:
        for name in names[:2]:
            with open(outputs.path(name), "w") as f:
                f.write(f"new {name}")
        with open(os.path.join(outputs.scratch(), "intermediate"), "w") as f:
            f.write("scratch")
        assert (tmp_path / "a.keras").read_text() == "old a"  # until the commit
        written = outputs.commit()
    assert sorted(written) == ["a.keras", "b.h5"]
    assert sorted(os.listdir(tmp_path)) == ["a.keras", "b.h5"]  # old .data gone, no staging
    assert (tmp_path / "a.keras").read_text() == "new a.keras"


def test_a_set_killed_while_moving_into_place_is_completed_by_the_next_writer(tmp_path):
    """A real SIGKILL after the first of two renames: the next OutputSet in the folder
    finishes the commit (every file was complete), and a set killed before its commit is
    simply removed."""
    folder = str(tmp_path / "out")
    script = textwrap.dedent(f"""
        import os, signal
        from videomae_keras import atomic
        moves = []
        rename = os.rename

        def rename_then_die(src, dst):
            rename(src, dst)
            moves.append(dst)
            if dst.endswith("a.keras"):
                os.kill(os.getpid(), signal.SIGKILL)

        with atomic.OutputSet({folder!r}, ["a.keras", "b.h5"]) as outputs:
            for name in ("a.keras", "b.h5"):
                with open(outputs.path(name), "w") as f:
                    f.write("complete " + name)
            os.rename = rename_then_die
            outputs.commit()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert _visible(folder) == ["a.keras"]  # half moved: b.h5 still in the staging folder
    abandoned = os.path.join(folder, f".c.keras.{_dead_pid()}-x.outputs.tmp")
    os.makedirs(abandoned)  # a set killed before its commit: no journal
    with atomic.OutputSet(folder, ["c.keras"]) as outputs:
        assert outputs.recovered == ["b.h5"]
        with open(outputs.path("c.keras"), "w") as f:
            f.write("c")
        outputs.commit()
    assert sorted(os.listdir(folder)) == ["a.keras", "b.h5", "c.keras"]
    assert open(os.path.join(folder, "b.h5")).read() == "complete b.h5"
