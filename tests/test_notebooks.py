"""The walkthroughs in notebooks/ run top to bottom (small settings: tiny models, no
download). Each kernel starts afresh, so the all-backends runner runs them once (in its
torch run); a plain pytest run executes them on its own backend."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from conftest import BACKEND  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ["inference.ipynb", "reconstruction.ipynb", "finetuning.ipynb", "explain.ipynb"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_KERAS_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert f"on {BACKEND}" in outputs
    if name == "inference.ipynb":
        assert "(5x3 views, dense)" in outputs and "pooled (1, 64)" in outputs
    elif name == "finetuning.ipynb":
        assert "validation top-1:" in outputs and "true class:" in outputs
    elif name == "explain.ipynb":
        for picture in ("gradcam.png", "gradcam.gif", "rollout.png", "timeline.png"):
            assert (tmp_path / picture).exists(), picture
        shown = [out for cell in notebook.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
        assert len(shown) == 3
        assert "rows sum to 1: True" in outputs and "fine-tuned encoder: linear probe" in outputs
        assert "pretrained encoder: linear probe" in outputs
    else:
        assert (tmp_path / "reconstruction.png").exists()
        assert (tmp_path / "reconstruction.gif").exists()
        assert "same pattern in every slice: True" in outputs
