"""docs/notebook.ipynb on a real Jupyter kernel (this interpreter's): the Python API as a notebook
user meets it. Figures appear inline, the notebook's own pyplot figures still do afterwards, the
reprs are short, the progress bar warns of nothing, and no cell errs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"
REPR_LINES = 12  # a repr is a summary: `s` once printed every array, a report every histogram bin


def kernel_manager(tmp_path: Path) -> Any:
    """A kernel of this very interpreter, from a kernelspec in tmp_path: nothing installed or
    registered outside the test, whatever kernels the machine has."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = tmp_path / "kernels" / "this-python"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "this python", "language": "python"})
    )
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(
        kernel_name="this-python",
        kernel_spec_manager=specs,
        connection_file=str(tmp_path / "connection.json"),
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The notebook run top to bottom; each tagged cell's outputs by tag."""
    tmp_path = tmp_path_factory.mktemp("notebook")
    mp = pytest.MonkeyPatch()
    # a kernel's backend is inline unless MPLBACKEND names another (a CI may set Agg)
    mp.delenv("MPLBACKEND", raising=False)
    mp.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    mp.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(
            nb,
            km=kernel_manager(tmp_path),
            timeout=300,
            allow_errors=True,  # every cell runs: each test below judges its own
            resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
        )
        client.execute()
    finally:
        mp.undo()
    return {tag: cell.outputs for cell in nb.cells for tag in cell.metadata.get("tags", [])}


def texts(outputs: list[dict[str, Any]], mime: str = "text/plain") -> str:
    """Every stream's text and every ``mime`` representation of a cell's outputs."""
    parts = [o.get("text", "") for o in outputs if o["output_type"] == "stream"]
    parts += [o["data"][mime] for o in outputs if mime in o.get("data", {})]
    return "\n".join(parts)


def images(outputs: list[dict[str, Any]]) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_the_committed_notebook_holds_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_notebook_runs_on_this_interpreter(executed: dict) -> None:
    every = [o for outputs in executed.values() for o in outputs]
    errors = [f"{o['ename']}: {o['evalue']}" for o in every if o["output_type"] == "error"]
    assert not errors
    assert f"python {sys.executable}" in texts(executed["train"])


@pytest.mark.slow
def test_plot_shows_every_figure_inline_and_switches_no_backend(executed: dict) -> None:
    # every figure of `landscape plot`: the loss 4 kinds x 2 scales, its persistence barcode and
    # merge tree, the accuracy 2 kinds
    assert images(executed["plot"]) == 12
    assert images(executed["one-figure"]) == 1  # the loss; accuracies have no 3-D surface
    # the notebook's own pyplot figure, after s.plot(): still inline
    assert "backend module://matplotlib_inline.backend_inline" in texts(executed["pyplot"])
    assert images(executed["pyplot"]) == 1


@pytest.mark.slow
def test_reprs_are_short_summaries(executed: dict) -> None:
    surface = texts(executed["surface"])
    assert len(surface.splitlines()) <= REPR_LINES and "array(" not in surface
    assert "grid:        2-D 11 x 11" in surface and "train_loss:" in surface
    html = texts(executed["surface"], "text/html")
    assert "done:        121 of 121 points" in html and 'src="data:image/png;base64,' in html
    report = texts(executed["inspect"])
    assert len(report.splitlines()) <= REPR_LINES and "Histogram(" not in report
    assert "findings:" in report or "no findings" in report
    assert "<th>severity</th>" in texts(executed["inspect"], "text/html") or "no findings" in report


@pytest.mark.slow
def test_the_progress_bar_warns_of_nothing(executed: dict) -> None:
    stderr = texts(executed["compute"])
    assert "IProgress" not in stderr and "Warning" not in stderr
    assert "121/121" in stderr  # tqdm's text bar, drawn to the end
