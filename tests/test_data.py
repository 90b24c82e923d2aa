import numpy as np
import pytest

from dmf_jax import data
from dmf_jax.errors import DataError
from tests.conftest import data_config, write_ml100k


def test_ml100k_format_with_titles_and_duplicates(tmp_path):
  rows = [
    (7, 10, 4, 100),
    (7, 12, 2, 200),
    (3, 10, 5, 150),
    (7, 10, 1, 300),  # repeats (7, 10) later: this rating wins
    (3, 12, 3, 150),
    (3, 12, 4, 120),  # repeats (3, 12) with an earlier timestamp: dropped
  ]
  write_ml100k(tmp_path, rows, titles={10: "Amélie (2001)", 12: "Heat (1995)"})
  loaded = data.load(data_config("ml100k", tmp_path))
  assert loaded.duplicates_dropped == 2
  assert list(loaded.user_ids) == ["3", "7"]
  assert list(loaded.item_ids) == ["10", "12"]
  assert list(loaded.item_titles) == ["Amélie (2001)", "Heat (1995)"]
  pairs = {
    (loaded.user_ids[u], loaded.item_ids[i]): r
    for u, i, r in zip(loaded.users, loaded.items, loaded.ratings, strict=True)
  }
  assert pairs == {("7", "12"): 2, ("3", "10"): 5, ("7", "10"): 1, ("3", "12"): 3}
  assert loaded.statistics()["ratings"] == 4
  assert loaded.max_rating == 5


def test_raw_ids_sort_numerically_and_stay_strings(tmp_path):
  write_ml100k(tmp_path, [(10, 2, 1, 1), (9, 1, 1, 1), (100, 1, 1, 1)])
  loaded = data.load(data_config("ml100k", tmp_path))
  assert list(loaded.user_ids) == ["9", "10", "100"]


def test_amusic_format(tmp_path):
  folder = tmp_path / "amazon-music"
  folder.mkdir()
  (folder / "Amazon_ratings_Digital_Music_pruned.txt").write_text(
    "0 0 5.0 1158019200\n1 0 4.5 1059523200\n0 3 1.0 959385600\n"
  )
  loaded = data.load(data_config("amusic", tmp_path))
  assert (loaded.num_users, loaded.num_items, loaded.num_ratings) == (2, 2, 3)
  assert loaded.item_titles is None
  np.testing.assert_allclose(sorted(loaded.ratings), [1.0, 4.5, 5.0])


def test_root_then_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
  assert data.data_root(None) == tmp_path / "env"
  assert data.data_root(str(tmp_path / "given")) == tmp_path / "given"
  monkeypatch.delenv(data.DATA_DIR_ENV)
  assert data.data_root(None).parts[-2:] == ("dmf_jax", "data")


def test_missing_file_names_it(tmp_path):
  with pytest.raises(DataError, match=r"ml-100k/u.data: file not found"):
    data.load(data_config("ml100k", tmp_path))


def test_unknown_data_set():
  with pytest.raises(DataError, match="not a known data set"):
    data.load(data_config("ml10m", "/nonexistent"))


def test_bad_rating_names_the_line(tmp_path):
  write_ml100k(tmp_path, [(1, 1, 5, 10), (1, 2, "x", 11)])
  with pytest.raises(DataError, match=r"u.data, line 2: rating 'x'"):
    data.load(data_config("ml100k", tmp_path))
  write_ml100k(tmp_path, [(1, 1, 5, 10), (1, 2, 0, 11)])
  with pytest.raises(DataError, match=r"line 2: rating '0' is not positive"):
    data.load(data_config("ml100k", tmp_path))


def test_real_ml100k_statistics(real_data_root):
  loaded = data.load(data_config("ml100k", real_data_root))
  assert loaded.statistics() == {
    "users": 943,
    "items": 1682,
    "ratings": 100_000,
    "density": 0.063047,
    "sha256": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
  }
  assert loaded.item_titles[0] == "Toy Story (1995)"


def test_real_amusic_statistics_match_table_1(real_data_root):
  loaded = data.load(data_config("amusic", real_data_root))
  assert (loaded.num_users, loaded.num_items, loaded.num_ratings) == (844, 18_813, 46_468)
