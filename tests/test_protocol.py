import numpy as np
import pytest

from dmf_jax import data, protocol
from dmf_jax.errors import DataError
from tests.conftest import data_config, synthetic_rows, write_ml100k


def _load(tmp_path, rows):
  write_ml100k(tmp_path, rows)
  return data.load(data_config("ml100k", tmp_path))


def _split(loaded, seed=0, validation="random", negatives=5):
  return protocol.make_split(
    loaded, split_seed=seed, validation=validation, num_negatives=negatives
  )


def _raw(loaded, users, items):
  return {(loaded.user_ids[u], loaded.item_ids[i]) for u, i in zip(users, items, strict=True)}


def test_test_item_is_latest_and_file_order_breaks_ties(tmp_path):
  rows = [(1, i, 3, 100 + i) for i in range(1, 9)]  # user 1: item 8 is latest
  rows += [(2, 1, 3, 50), (2, 2, 3, 90), (2, 3, 3, 90), (2, 4, 3, 90), (2, 5, 3, 10)]
  rows += [(3, i, 3, 7) for i in range(1, 9)]  # one timestamp: the last row (item 8) wins
  loaded = _load(tmp_path, rows + [(i, 20 + i, 1, 1) for i in range(4, 30)])
  split = _split(loaded, validation="latest")
  held = {
    loaded.user_ids[u]: loaded.item_ids[t]
    for u, t in zip(split.eval_users, split.test_items, strict=True)
  }
  valid = {
    loaded.user_ids[u]: loaded.item_ids[v]
    for u, v in zip(split.eval_users, split.valid_items, strict=True)
  }
  assert held == {"1": "8", "2": "4", "3": "8"}
  assert valid == {"1": "7", "2": "3", "3": "7"}


@pytest.mark.parametrize("validation", ["random", "latest"])
def test_split_invariants(tmp_path, validation):
  loaded = _load(tmp_path, synthetic_rows())
  split = _split(loaded, validation=validation, negatives=10)
  train = _raw(loaded, split.train_users, split.train_items)
  valid = _raw(loaded, split.eval_users, split.valid_items)
  test = _raw(loaded, split.eval_users, split.test_items)
  assert not train & valid and not train & test and not valid & test
  assert len(train) + len(valid) + len(test) == loaded.num_ratings
  np.testing.assert_array_equal(split.valid_candidates[:, 0], split.valid_items)
  np.testing.assert_array_equal(split.test_candidates[:, 0], split.test_items)
  rated = _raw(loaded, loaded.users, loaded.items)
  for candidates in (split.valid_candidates, split.test_candidates):
    for user, row in zip(split.eval_users, candidates, strict=True):
      negatives = row[1:]
      assert len(set(negatives)) == len(negatives)
      assert not _raw(loaded, [user] * len(negatives), negatives) & rated


def test_same_seed_same_split_other_seed_other_candidates(tmp_path):
  loaded = _load(tmp_path, synthetic_rows())
  a, b, c = _split(loaded, seed=3), _split(loaded, seed=3), _split(loaded, seed=4)
  for field in ("train_items", "valid_items", "valid_candidates", "test_candidates"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert a.key == b.key != c.key
  assert not np.array_equal(a.test_candidates, c.test_candidates)


def test_negatives_are_uniform_over_unrated_items(tmp_path):
  rows = [(1, i, 1, i) for i in range(1, 11)] + [(2, 1, 1, 1), (2, 2, 1, 2), (2, 3, 1, 3)]
  rows += [(3, i, 1, 1) for i in range(11, 41)]
  loaded = _load(tmp_path, rows)
  counts = np.zeros(loaded.num_items)
  for seed in range(300):
    split = _split(loaded, seed=seed, negatives=5)
    np.add.at(counts, split.test_candidates[0, 1:], 1)  # user 1 never rated items 11..40
  unrated = np.flatnonzero(counts)
  assert list(loaded.item_ids[unrated]) == [str(i) for i in range(11, 41)]
  expected = 300 * 5 / 30
  assert np.all(np.abs(counts[unrated] - expected) < 5 * np.sqrt(expected))


def test_users_with_fewer_than_three_are_trained_not_evaluated(tmp_path):
  rows = synthetic_rows(num_users=5) + [(99, 1, 4, 1), (99, 2, 4, 2)]
  loaded = _load(tmp_path, rows)
  split = _split(loaded)
  user = list(loaded.user_ids).index("99")
  assert user not in split.eval_users
  assert np.sum(split.train_users == user) == 2


def test_no_evaluable_user_is_an_error(tmp_path):
  loaded = _load(tmp_path, [(1, 1, 4, 1), (1, 2, 4, 2), (2, 1, 3, 1)])
  with pytest.raises(DataError, match="no user has the 3 interactions"):
    _split(loaded)


def test_split_saved_and_reused(tmp_path):
  loaded = _load(tmp_path, synthetic_rows())
  kwargs = dict(split_seed=1, validation="random", num_negatives=7)
  first = protocol.get_split(loaded, workdir=tmp_path / "run", **kwargs)
  assert (tmp_path / "run" / protocol.SPLIT_FILE).is_file()
  reloaded = protocol.Split.load(tmp_path / "run" / protocol.SPLIT_FILE)
  np.testing.assert_array_equal(first.test_candidates, reloaded.test_candidates)
  cached = protocol.get_split(loaded, workdir=None, **kwargs)
  np.testing.assert_array_equal(first.valid_candidates, cached.valid_candidates)
  assert list(protocol.split_cache_dir().glob(f"*{first.key}.npz"))


def test_real_ml100k_ties_and_held_out_items(real_data_root):
  loaded = data.load(data_config("ml100k", real_data_root))
  latest = {}
  for u, t in zip(loaded.users, loaded.timestamps, strict=True):
    latest[u] = max(latest.get(u, 0), t)
  at_latest = np.bincount(
    [u for u, t in zip(loaded.users, loaded.timestamps, strict=True) if t == latest[u]]
  )
  assert np.sum(at_latest >= 2) == 415
  split = _split(loaded, negatives=100)
  assert split.test_candidates.shape == (943, 101)
  assert len(split.train_items) == 100_000 - 2 * 943
