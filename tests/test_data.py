import logging

import numpy as np
import pytest

from dmf_jax import data, protocol
from dmf_jax.errors import ConfigError, DataError
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
  with pytest.raises(DataError, match=r"r.csv: file not found"):
    data.load(data_config("csv", path=str(tmp_path / "r.csv")))
  with pytest.raises(DataError, match=r"is a folder, not a ratings file"):
    data.load(data_config("csv", path=str(tmp_path)))


def test_unknown_data_set():
  with pytest.raises(ConfigError, match="not a known data set"):
    data.load(data_config("ml10m", "/nonexistent"))


def test_bad_rating_names_the_line(tmp_path):
  write_ml100k(tmp_path, [(1, 1, 5, 10), (1, 2, "x", 11)])
  with pytest.raises(DataError, match=r"u.data, line 2: rating 'x'"):
    data.load(data_config("ml100k", tmp_path))
  write_ml100k(tmp_path, [(1, 1, 5, 10), (1, 2, 0, 11)])
  with pytest.raises(DataError, match=r"line 2: rating '0' is not positive"):
    data.load(data_config("ml100k", tmp_path))


def test_ml1m_format_with_latin1_titles(tmp_path):
  folder = tmp_path / "ml-1m"
  folder.mkdir()
  (folder / "ratings.dat").write_text(
    "1::1193::5::978300760\n1::661::3::978302109\n2::2000::4::978298413\n1::661::4::978302200\n"
  )
  (folder / "movies.dat").write_bytes(
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    "2000::Léon: The Professional (1994)::Crime|Drama\n".encode("latin-1")
  )
  loaded = data.load(data_config("ml1m", tmp_path))
  assert (loaded.num_users, loaded.num_items, loaded.num_ratings) == (2, 3, 3)
  assert loaded.duplicates_dropped == 1
  assert list(loaded.item_ids) == ["661", "1193", "2000"]
  assert list(loaded.item_titles) == [
    "James and the Giant Peach (1996)",
    "One Flew Over the Cuckoo's Nest (1975)",
    "Léon: The Professional (1994)",
  ]
  np.testing.assert_array_equal(loaded.ratings, [5, 4, 4])
  np.testing.assert_array_equal(loaded.timestamps, [978300760, 978298413, 978302200])


def _amazon(tmp_path, rows):
  path = tmp_path / "ratings_Movies_and_TV.csv"
  path.write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows))
  return path


def test_amazon_csv_filter_repeats_until_stable(tmp_path, caplog):
  # With >= 3 per user and >= 2 per item, by hand:
  #   pass 1 drops user U4 (2 ratings) and items Bd, Be, Bf, Bg (1 each): 5 ratings;
  #   pass 2 drops U3 and U5, now at 2 ratings each: 4 ratings; pass 3 drops nothing.
  # U3's repeated Be counts once: had it counted twice, Be and then U3 would survive.
  rated = {
    "U1": ["Ba", "Bb", "Bc", "Bd"],
    "U2": ["Ba", "Bb", "Bc"],
    "U3": ["Ba", "Bb", "Be", "Be"],
    "U4": ["Ba", "Bf"],
    "U5": ["Bb", "Bc", "Bg"],
  }
  rows = [(u, i, 4.0, 1000 + t) for u, items in rated.items() for t, i in enumerate(items)]
  path = _amazon(tmp_path, rows)
  config = data_config("amazon_csv", path=str(path), min_user_ratings=3, min_item_ratings=2)
  with caplog.at_level(logging.INFO, logger="dmf_jax.data"):
    loaded = data.load(config)
  assert list(loaded.user_ids) == ["U1", "U2"]
  assert list(loaded.item_ids) == ["Ba", "Bb", "Bc"]
  pairs = {
    (loaded.user_ids[u], loaded.item_ids[i])
    for u, i in zip(loaded.users, loaded.items, strict=True)
  }
  assert pairs == {(u, i) for u in ("U1", "U2") for i in ("Ba", "Bb", "Bc")}
  assert loaded.duplicates_dropped == 1 and loaded.num_ratings == 6
  passes = [r.getMessage() for r in caplog.records if "filter pass" in r.getMessage()]
  assert len(passes) == 3
  assert passes[0].endswith(
    "pass 1 (>= 3 ratings per user, >= 2 per item) removed 1 users, 4 items, 5 ratings"
  )
  assert passes[1].endswith(
    "pass 2 (>= 3 ratings per user, >= 2 per item) removed 2 users, 0 items, 4 ratings"
  )
  assert passes[2].endswith(
    "pass 3 (>= 3 ratings per user, >= 2 per item) removed 0 users, 0 items, 0 ratings"
  )


def test_amazon_csv_paper_defaults_keep_a_dense_core(tmp_path):
  # 5 users rate the same 20 items: exactly the bounds, so all stay. User Z's 19 ratings, and the
  # items only Z rated, go in one pass.
  rows = [(f"A{u}", f"B{i}", 5, u * 100 + i) for u in range(5) for i in range(20)]
  rows += [("Z", f"B{i}", 3, 9) for i in range(10)] + [("Z", f"C{i}", 3, 9) for i in range(9)]
  loaded = data.load(data_config("amazon_csv", path=str(_amazon(tmp_path, rows))))
  assert (loaded.num_users, loaded.num_items, loaded.num_ratings) == (5, 20, 100)
  assert "Z" not in loaded.user_ids


def _csv(tmp_path, text, **fields):
  path = tmp_path / "ratings.txt"
  path.write_text(text)
  return data.load(data_config("csv", path=str(path), **fields))


def test_csv_named_columns_in_any_order_and_half_stars(tmp_path):
  loaded = _csv(
    tmp_path,
    "when;stars;who;what;note\n5;4.5;u1;i1;x\n6;0.5;u2;i1;y\n7;3;u1;i2;z\n",
    sep="semicolon",
    user_col="who",
    item_col="what",
    rating_col="stars",
    time_col="when",
  )
  assert (loaded.num_users, loaded.num_items, loaded.num_ratings) == (2, 2, 3)
  assert loaded.max_rating == 4.5
  np.testing.assert_array_equal(loaded.ratings, [4.5, 0.5, 3])
  np.testing.assert_array_equal(loaded.timestamps, [5, 6, 7])
  assert loaded.name == "csv" and loaded.item_titles is None


@pytest.mark.parametrize(
  "sep, written", [("tab", "\t"), ("space", " "), ("::", "::"), ("||", "||"), ("|", "|")]
)
def test_csv_positions_without_header(tmp_path, sep, written):
  lines = ["7", "a", "2", "100"], ["8", "b", "3", "200"]
  loaded = _csv(
    tmp_path,
    "".join(written.join(line) + "\n" for line in lines),
    sep=sep,
    header=False,
    user_col="2",
    item_col="1",
    rating_col="0",
    time_col="3",
  )
  assert list(loaded.user_ids) == ["2", "3"] and list(loaded.item_ids) == ["a", "b"]
  np.testing.assert_array_equal(loaded.ratings, [7, 8])


def test_csv_without_rating_or_time_column(tmp_path, caplog):
  rows = [(u, i) for u in range(1, 6) for i in range(1, 9) if (u + i) % 3]
  text = "user,item\n" + "".join(f"{u},{i}\n" for u, i in rows)
  with caplog.at_level(logging.INFO, logger="dmf_jax.data"):
    loaded = _csv(tmp_path, text, rating_col="", time_col="")
  assert "every interaction counts as 1" in caplog.text
  assert "drawn at random with data.split_seed" in caplog.text
  assert loaded.timestamps is None
  np.testing.assert_array_equal(loaded.ratings, np.ones(len(rows)))

  def held_out(seed):
    split = protocol.make_split(loaded, split_seed=seed, validation="latest", num_negatives=1)
    return split.test_items, split.valid_items

  test, valid = held_out(0)
  assert np.all(test != valid)
  np.testing.assert_array_equal(held_out(0)[0], test)
  assert any(not np.array_equal(held_out(seed)[0], test) for seed in (1, 2, 3))


def test_csv_config_errors(tmp_path):
  with pytest.raises(ConfigError, match="data.path"):
    data.load(data_config("csv"))
  for fields, message in [
    ({"sep": "\\t"}, "a backslash escape is not interpreted"),
    ({"sep": ""}, "data.sep=''"),
    ({"user_col": ""}, "the user column is required"),
    ({"header": False, "item_col": "item"}, "data.user_col='user': without a header"),
  ]:
    with pytest.raises(ConfigError, match=message):
      _csv(tmp_path, "user,item\n1,2\n", **fields)


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


def test_tois2021_filter_is_items_then_users_one_pass_each(tmp_path):
  # Item 9 has 1 rating and goes first; user 3 then has 2 ratings left, below 3, and goes too.
  rows = [(1, i, 4, i) for i in (1, 2, 3)] + [(2, i, 4, i) for i in (1, 2, 3)]
  rows += [(3, 1, 4, 1), (3, 2, 4, 2), (3, 9, 4, 3)]
  write_ml100k(tmp_path, rows)
  loaded = data.load(data_config("ml100k", tmp_path))
  kept = data.filter_items_then_users(loaded, min_item=2, min_user=3)
  assert list(kept.user_ids) == ["1", "2"] and list(kept.item_ids) == ["1", "2", "3"]
  assert kept.num_ratings == 6
  with pytest.raises(DataError, match="no ratings left after the TOIS 2021 filter"):
    data.load(data_config("ml100k", tmp_path, filter="tois2021"))  # every item has < 5 ratings
