"""Downloads of missing MovieLens sets, from a local server on 127.0.0.1, never the internet."""

import hashlib
import logging

import pytest

from dmf_jax import data
from dmf_jax.errors import DataError
from tests.conftest import data_config, zip_of

U_DATA = b"1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n"
U_ITEM = "10|Amélie (2001)|01-Jan-2001||http://x|0\n11|Heat (1995)|01-Jan-1995||http://x|0\n"


def _sha(contents: bytes) -> str:
  return hashlib.sha256(contents).hexdigest()


def _cache_entries():
  root = data.cache_root()
  return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_ml100k_round_trip_then_reused_from_the_cache(tmp_path, local_server):
  local_server.files["/ml-100k.zip"] = zip_of(
    {"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM.encode("latin-1")}
  )
  config = data_config(
    "ml100k",
    tmp_path / "empty",
    download_url=local_server.url("/ml-100k.zip"),
    download_sha256=_sha(U_DATA),
  )
  loaded = data.load(config)
  assert (loaded.num_users, loaded.num_items, loaded.num_ratings) == (2, 2, 3)
  assert list(loaded.item_titles) == ["Amélie (2001)", "Heat (1995)"]
  assert loaded.path == data.cache_root() / "ml-100k" / "u.data"
  assert loaded.sha256 == _sha(U_DATA)
  assert _cache_entries() == ["ml-100k"]
  assert not (tmp_path / "empty").exists()

  again = data.load(config)
  assert again.statistics() == loaded.statistics()
  assert local_server.requests == ["/ml-100k.zip"]


def test_ml1m_without_a_recorded_checksum_reports_the_computed_one(tmp_path, local_server, caplog):
  assert data.MOVIELENS["ml1m"].sha256 is None
  ratings = b"1::1193::5::978300760\n2::1193::4::978300761\n"
  local_server.files["/ml-1m.zip"] = zip_of({"ml-1m/ratings.dat": ratings})
  config = data_config("ml1m", tmp_path, download_url=local_server.url("/ml-1m.zip"))
  with caplog.at_level(logging.INFO, logger="dmf_jax.data"):
    loaded = data.load(config)
  assert loaded.num_ratings == 2 and loaded.item_titles is None
  warning = [r for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warning) == 1 and f"unverified; its sha256 is {_sha(ratings)}" in warning[0].message


@pytest.mark.parametrize(
  "served, message",
  [
    ({"ml-100k/u.data": U_DATA}, "sha256 of ml-100k/u.data is {actual}, expected {expected}"),
    ({"ml-100k/u.item": b"10|x\n"}, "the archive has no ml-100k/u.data"),
    (None, "not a zip archive"),
  ],
)
def test_bad_download_is_deleted_and_named(tmp_path, local_server, served, message):
  local_server.files["/a.zip"] = zip_of(served) if served else b"<html>moved</html>"
  url = local_server.url("/a.zip")
  expected = "0" * 64
  config = data_config("ml100k", tmp_path, download_url=url, download_sha256=expected)
  with pytest.raises(DataError) as failure:
    data.load(config)
  details = message.format(actual=_sha(U_DATA), expected=expected)
  assert str(failure.value) == f"{url}: {details}; the download was deleted"
  assert _cache_entries() == []


def test_unreachable_archive_names_the_missing_file_and_url(tmp_path, local_server):
  url = local_server.url("/missing.zip")
  with pytest.raises(DataError) as failure:
    data.load(data_config("ml100k", tmp_path, download_url=url))
  assert str(failure.value) == (
    f"{tmp_path / 'ml-100k' / 'u.data'}: file not found, and downloading {url} failed: "
    "HTTP Error 404: Not Found"
  )
  assert _cache_entries() == []
