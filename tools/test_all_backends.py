#!/usr/bin/env python
"""Runs the test suite once per Keras backend (jax, tensorflow, torch) and summarises.

Usage: python tools/test_all_backends.py [--backends jax,torch] [--serial] [pytest arguments]

Keras picks its backend once per process, so each backend gets its own pytest run. The runs
go side by side (each backend's output is shown when it finishes) unless --serial. The exit
status is non-zero if any backend fails. Each run's pytest temporary files (about 2 GB of
checkpoints for the full-size parity tests) go to a scratch folder removed at the end, unless
--basetemp is given.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BACKENDS = ("jax", "tensorflow", "torch")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated backends to test (default: all three)",
    )
    parser.add_argument(
        "--serial", action="store_true", help="one backend after another, output as it comes"
    )
    args, pytest_args = parser.parse_known_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scratch = tempfile.mkdtemp(prefix="videomae-tests-")  # parity reports, pytest's temp files
    try:
        results = _run(args, backends, pytest_args, root, scratch)
        print_parity_table(scratch, backends)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n===== summary =====")
    for backend, code, seconds in results:
        status = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"{backend:<11} {status:<18} {seconds / 60:5.1f} min")
    return 0 if all(code == 0 for _, code, _ in results) else 1


def _run(args, backends, pytest_args, root, scratch):
    """Runs pytest per backend, serially or side by side; returns (backend, exit code, seconds)."""
    results = []
    if args.serial:
        for backend in backends:
            print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
            start = time.time()
            code = subprocess.call(_command(pytest_args, scratch, backend), cwd=root,
                                   env=_env(backend, scratch, backends))
            results.append((backend, code, time.time() - start))
    else:
        running = []
        for backend in backends:
            log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
            process = subprocess.Popen(_command(pytest_args, scratch, backend), cwd=root,
                                       env=_env(backend, scratch, backends),
                                       stdout=log, stderr=subprocess.STDOUT)
            running.append((backend, process, log, time.time()))
        finished = {}
        while len(finished) < len(running):
            for backend, process, _, start in running:
                if backend not in finished and process.poll() is not None:
                    finished[backend] = time.time() - start
            time.sleep(0.5)
        for backend, process, log, start in running:
            code, seconds = process.returncode, finished[backend]
            log.seek(0)
            print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
            sys.stdout.write(log.read())
            sys.stdout.flush()
            results.append((backend, code, seconds))
    return results


def _command(pytest_args, scratch, backend):
    """pytest's command line; its temporary files go under `scratch` (removed at the end)."""
    own_basetemp = any(a == "--basetemp" or a.startswith("--basetemp=") for a in pytest_args)
    basetemp = [] if own_basetemp else ["--basetemp", os.path.join(scratch, f"tmp-{backend}")]
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=20",
            *basetemp, *pytest_args]


def _env(backend, scratch, backends):
    """Each run's environment; backend-independent tests (decoding, sampling) run in one."""
    independent = "torch" if "torch" in backends else backends[0]
    return dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                VIDEOMAE_KERAS_INDEPENDENT_BACKEND=independent,
                VIDEOMAE_PARITY_REPORT=os.path.join(scratch, f"{backend}.jsonl"))


def print_parity_table(folder, backends):
    """Max |diff| to the PyTorch reference per test and backend, as the tests measured it."""
    rows = []
    for backend in backends:
        path = os.path.join(folder, f"{backend}.jsonl")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                rows += [json.loads(line) for line in f if line.strip()]
    if not rows:
        return
    table = {}
    for row in rows:
        name = f"{row['test']} [{row['output']}]"
        table.setdefault(name, {})[row["backend"]] = row["max_abs_diff"]
    width = max(len(name) for name in table)
    print("\n===== parity with the PyTorch reference: max |diff| =====")
    print(f"{'':<{width}}  " + "  ".join(f"{b:>10}" for b in backends))
    for name in sorted(table):
        cells = [table[name].get(b) for b in backends]
        print(f"{name:<{width}}  " + "  ".join(
            f"{c:>10.2e}" if c is not None else f"{'-':>10}" for c in cells))
    worst = [max((v.get(b, 0.0) for v in table.values()), default=0.0) for b in backends]
    print(f"{'largest':<{width}}  " + "  ".join(f"{w:>10.2e}" for w in worst))


if __name__ == "__main__":
    sys.exit(main())
