"""The notebooks in notebooks/: committed without outputs, their links resolve, and each one runs
from top to bottom without an error in a fresh python3 kernel of this interpreter.

Each notebook runs with a temporary folder as its working directory (the notebooks write only
under the working directory), so nothing is written into the repository.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # one cell; each notebook takes well under a minute on 2 CPU cores
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links: [text](target)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_the_seven_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01-tokens.ipynb", "02-attention.ipynb", "03-model.ipynb",
                                           "04-training.ipynb", "05-sampling.ipynb", "06-your-language.ipynb",
                                           "07-fine-tuning.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    for n, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {n} stores outputs; clear them first"
            assert cell.get("execution_count") is None, f"{path.name} cell {n} stores an execution count"


@pytest.mark.parametrize("path", [*NOTEBOOKS, ROOT / "docs" / "learn.md"], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    if path.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "markdown")
    else:
        text = path.read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if "://" not in t and not t.startswith("#")]
    assert targets, f"{path.name} links to no source file"
    missing = [t for t in targets if not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"{path.name}: links to missing files {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(path, as_version=4)
    # The kernel must be this interpreter (the venv with the package installed), not some other
    # python3 on the machine: check it before anything else runs.
    check = f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.executable"
    notebook.cells.insert(0, nbformat.v4.new_code_cell(check))
    before = sorted(p.relative_to(ROOT) for p in (ROOT / "notebooks").rglob("*"))
    started = time.perf_counter()
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    print(f"{path.name}: {time.perf_counter() - started:.1f} s")
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no figure"
    assert sorted(p.relative_to(ROOT) for p in (ROOT / "notebooks").rglob("*")) == before, \
        f"{path.name} wrote into the repository"
