"""The notebooks: committed without outputs, and each runs top to bottom headless in small mode
(`DMF_NOTEBOOK_SMALL=1`), writing only under the test's folder (`DMF_NOTEBOOK_WORKDIR`)."""

import os
import pathlib
import time

import nbformat
import pytest
from nbclient import NotebookClient

from dmf_jax import sweep
from tests.conftest import REPO
from tests.test_training import data_root, tiny_config  # noqa: F401 (fixture)

NOTEBOOKS = REPO / "notebooks"
# Per-cell limit, seconds: each notebook has one slow cell (training), about a minute on 2 cores.
TIMEOUTS = {"quickstart": 600, "restore_and_score": 600, "paper_results": 300}


def test_notebooks_are_committed_without_outputs():
  assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TIMEOUTS)
  for path in sorted(NOTEBOOKS.glob("*.ipynb")):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
      carries = cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
      assert not carries and "execution" not in cell.metadata, (
        f"{path.name}, cell {index}: outputs are committed; run python notebooks/strip_outputs.py"
      )


def _tiny_sweeps(runs: pathlib.Path, data_root: pathlib.Path) -> None:  # noqa: F811
  """Sweep folders as `launch.py` writes them, on tiny data: Table 2's baselines and one member of
  Table 4's sweep (so the notebook has our numbers, metrics.png and curves.png to draw)."""
  base = tiny_config(data_root)
  base.sweep.num_seeds = 1

  def baselines(add):
    add(**{"model.name": "itempop"})
    add(**{"model.name": "itemknn", "model.knn_neighbours": 10})

  sweep.run(base, baselines, runs / "table2_ml100k", overwrite=False)
  sweep.run(
    base, lambda add: add(**{"train.neg_ratio": 2}), runs / "sweep_neg_ml100k", overwrite=False
  )


def _text(notebook) -> str:
  return "".join(
    output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
    for cell in notebook.cells
    if cell.cell_type == "code"
    for output in cell.outputs
  )


@pytest.mark.parametrize("name", list(TIMEOUTS))
def test_notebook_runs_in_small_mode(name, tmp_path, real_data_root, request, record_property):
  runs = tmp_path / "runs"
  if name == "paper_results":
    _tiny_sweeps(runs, request.getfixturevalue("data_root"))
  env = {
    **os.environ,
    "DMF_NOTEBOOK_SMALL": "1",
    "DMF_NOTEBOOK_WORKDIR": str(runs),
    "DMF_DATA_DIR": str(real_data_root),
    # The kernel imports this checkout's dmf_jax, whatever else is installed.
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
  }
  env.pop("PYTHONWARNINGS", None)
  notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  client = NotebookClient(
    notebook,
    timeout=TIMEOUTS[name],
    startup_timeout=120,
    kernel_name="python3",
    resources={"metadata": {"path": str(NOTEBOOKS)}},
  )
  start = time.perf_counter()
  client.execute(env=env)  # raises CellExecutionError, with the cell and traceback, on an error
  record_property("notebook_seconds", round(time.perf_counter() - start, 1))

  text = _text(notebook)
  assert f"from {REPO / 'dmf_jax'}" in text, "the kernel imported another dmf_jax"
  if name == "quickstart":
    assert "test HR@10 = " in text
    assert (runs / "notebook_quick" / "results.json").is_file()
  elif name == "restore_and_score":
    assert "Training the quick model" in text  # a fresh machine has no run to restore
    assert (runs / "notebook_quick" / "results.json").is_file()
  else:
    assert "configs/table3.py" in text and "0.406" in text  # a command; the paper's ItemPop
  images = sum(
    "image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", [])
  )
  assert images >= 1
