"""examples/notebook.ipynb runs from top to bottom in a real Jupyter kernel, and is kept without outputs."""

from __future__ import annotations

import shutil

import nbformat

from tests.conftest import ROOT

NOTEBOOK = ROOT / "examples" / "notebook.ipynb"


def test_the_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_notebook_executes(tmp_path):
    from nbclient import NotebookClient

    # A copy beside a copy of the bundled data: the notebook writes its database and runs where it lies.
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    notebook = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    # Two of the notebook's four trials: every cell still runs (the search, its table and plot, the knee's export
    # and its reload), and the test does not pay for two more trainings that no cell depends on.
    [spec_cell] = [cell for cell in notebook.cells if '"trials": 4' in cell.source]
    spec_cell.source = spec_cell.source.replace('"trials": 4', '"trials": 2')
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: cell.outputs for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for cell in outputs.values() for o in cell)
    assert "Search('notebook" in text and "finished, 2/2 trials" in text
    assert "nothing learned: False" in text  # the notebook's settings learn the task above chance
    assert "label 'label': 2 classes" in text and "text column 'sentence'" in text  # the spec drafted from the data
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for cell in outputs.values() for o in cell)
    assert (tmp_path / "exported" / "summary.md").is_file()
    assert "'a warm , funny and moving film': 1" in text  # the exported adapter, loaded back, classifies
    [predicted] = [cell.outputs for cell in notebook.cells if "search.predict(" in cell.source]
    table = predicted[0]["data"]["text/plain"].splitlines()  # each label's probability, a row per sentence
    assert table[0].split() == ["0", "1"] and len(table) == 3
