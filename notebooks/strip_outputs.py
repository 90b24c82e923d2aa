"""Clears outputs, execution counts and run metadata from notebooks before they are committed.

python notebooks/strip_outputs.py [NOTEBOOK ...]   # default: every notebooks/*.ipynb
"""

import pathlib
import sys

import nbformat


def strip(path: pathlib.Path) -> bool:
  """Strips `path` in place; returns whether it changed."""
  notebook = nbformat.read(path, as_version=4)
  before = nbformat.writes(notebook)
  for cell in notebook.cells:
    if cell.cell_type == "code":
      cell.outputs = []
      cell.execution_count = None
    cell.metadata.pop("execution", None)
  notebook.metadata.pop("widgets", None)
  after = nbformat.writes(notebook)
  if after != before:
    path.write_text(after + "\n")
  return after != before


if __name__ == "__main__":
  paths = [pathlib.Path(p) for p in sys.argv[1:]] or sorted(
    pathlib.Path(__file__).parent.glob("*.ipynb")
  )
  for path in paths:
    if strip(path):
      print(f"stripped {path}")
