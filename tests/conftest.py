"""Shared fixtures and helpers: small data files written by the tests, launch.py as a user runs
it, and the real data when available."""

import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from configs import default

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
  """Keeps the split cache out of the user's home."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def real_data_root():
  root = os.environ.get("DMF_DATA_DIR")
  if not root or not (pathlib.Path(root) / "ml-100k" / "u.data").is_file():
    pytest.skip("DMF_DATA_DIR does not point at the shared data (ml-100k/u.data)")
  return pathlib.Path(root)


def write_ml100k(root: pathlib.Path, rows, titles=None) -> pathlib.Path:
  """Writes `rows` of (user, item, rating, timestamp) in ML-100k's u.data format under root."""
  folder = root / "ml-100k"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
  if titles:
    lines = [f"{item}|{title}|01-Jan-1995||http://x|0|1\n" for item, title in titles.items()]
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
  return folder / "u.data"


def data_config(name: str, root: pathlib.Path | None = None, **fields) -> ml_collections.ConfigDict:
  """The default `config.data` for data set `name` under `root`, with `fields` overridden."""
  config = default.get_config().data
  config.name = name
  config.root = str(root) if root is not None else None
  config.update(fields)
  return config


def synthetic_rows(num_users=30, num_items=40, per_user=12, seed=0):
  """Rows (user, item, rating, timestamp) with raw ids 1-based, distinct items per user."""
  import numpy as np

  rng = np.random.default_rng(seed)
  rows = []
  for u in range(1, num_users + 1):
    # Users prefer items near their own id, so neighbours and popularity carry signal.
    weights = np.exp(-np.abs(np.arange(num_items) - (u * num_items) // num_users) / 6.0)
    items = rng.choice(num_items, size=per_user, replace=False, p=weights / weights.sum()) + 1
    for t, item in enumerate(items):
      rows.append((u, int(item), int(rng.integers(1, 6)), 1000 + 10 * t + int(rng.integers(0, 3))))
  return rows


def launch(*args, data_root=None, timeout=300):
  """Runs launch.py as a user would; returns the finished process."""
  env = dict(os.environ)
  if data_root is not None:
    env["DMF_DATA_DIR"] = str(data_root)
  return subprocess.run(
    [sys.executable, str(REPO / "launch.py"), *map(str, args)],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=timeout,
  )


def assert_one_line_error(proc, *fragments):
  """The process failed with one `error:` line holding every fragment, and no traceback."""
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
