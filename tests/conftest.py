"""Shared test set-up. The Keras backend comes from KERAS_BACKEND (one backend per pytest run;
`python tools/test_all_backends.py` runs the suite once per backend)."""

import json
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))  # for `import reference`

import keras  # noqa: E402

BACKEND = keras.backend.backend()
_PARITY = []


@pytest.fixture
def record_parity(request):
    """record_parity(label, keras_out, reference_out) -> max |diff|; listed at the end of the run."""

    def record(label, ours, reference):
        ours = np.asarray(keras.ops.convert_to_numpy(ours), dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        assert ours.shape == reference.shape, (ours.shape, reference.shape)
        diff = float(np.max(np.abs(ours - reference)))
        scale = float(np.max(np.abs(reference)))
        _PARITY.append({"test": request.node.name, "output": label, "max_abs_diff": diff,
                        "max_abs_ref": scale, "backend": BACKEND})
        return diff

    return record


@pytest.fixture(autouse=True)
def _fresh_keras_state(request):
    if request.node.get_closest_marker("backend_independent"):
        yield  # no seed needed; a test that builds models clears the session itself
        # (clear_session costs about a second on torch)
        return
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def pytest_collection_modifyitems(config, items):
    """Tests marked backend_independent (decoding, sampling) run on one backend only when the
    all-backends runner says which (VIDEOMAE_KERAS_INDEPENDENT_BACKEND); a plain pytest
    run keeps them."""
    only_on = os.environ.get("VIDEOMAE_KERAS_INDEPENDENT_BACKEND")
    if not only_on or only_on == BACKEND:
        return
    skip = pytest.mark.skip(reason=f"backend-independent; runs in the {only_on} run")
    for item in items:
        if item.get_closest_marker("backend_independent"):
            item.add_marker(skip)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {BACKEND}"


def pytest_terminal_summary(terminalreporter):
    if not _PARITY:
        return
    terminalreporter.section(f"parity with the PyTorch reference ({BACKEND})")
    for row in _PARITY:
        terminalreporter.write_line(
            f"{row['max_abs_diff']:.2e} max |diff| (outputs up to {row['max_abs_ref']:.2f})  "
            f"{row['test']} [{row['output']}]"
        )
    path = os.environ.get("VIDEOMAE_PARITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for row in _PARITY:
                f.write(json.dumps(row) + "\n")
