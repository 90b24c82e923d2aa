"""Bad input through launch.py: one `error:` line naming the file (and line or column), a non-zero
exit, no traceback, and nothing of the run written to the workdir."""

import hashlib

import pytest

from tests.conftest import assert_one_line_error, launch, zip_of

HEADER = "user,item,rating,timestamp\n"
GOOD = "1,10,5,100\n1,11,4,101\n1,12,3,102\n2,10,2,103\n2,12,1,104\n2,13,5,105\n"
NO_HEADER = ["--config.data.header=False"] + [
  f"--config.data.{field}={position}"
  for position, field in enumerate(("user_col", "item_col", "rating_col", "time_col"))
]

# (id, file contents or None for no file, extra overrides, fragments of the error line)
CASES = [
  ("missing file", None, [], ["r.csv: file not found"]),
  ("wrong separator", HEADER + GOOD, ["--config.data.sep=semicolon"], ["r.csv: no column named 'user'", "only one column with separator ';'"]),
  ("too few columns", "1,10\n1,11\n", NO_HEADER, ["r.csv: rating is column 2 but lines have 2 column(s)"]),
  ("extra field", HEADER + GOOD + "3,10,4,106,x\n", [], ["r.csv, line 8: 5 fields where the lines before have 4"]),
  ("missing field", HEADER + "1,10,5,100\n1,11,4\n", [], ["r.csv, line 3: no timestamp"]),
  ("missing named column", HEADER.replace("rating", "stars") + GOOD, [], ["r.csv: no column named 'rating' for rating", "columns: user, item, stars, timestamp"]),
  ("non-numeric rating", HEADER + GOOD + "3,10,good,106\n", [], ["r.csv, line 8: rating 'good' is not a finite number"]),
  ("NaN rating", HEADER + "1,10,NaN,100\n" + GOOD, [], ["r.csv, line 2: rating 'NaN' is not a finite number"]),
  ("zero rating", HEADER + GOOD + "3,10,0,106\n", [], ["r.csv, line 8: rating '0' is not positive"]),
  ("negative rating", "1,10,-2,100\n", NO_HEADER, ["r.csv, line 1: rating '-2' is not positive"]),
  ("non-numeric timestamp", HEADER + GOOD + "3,10,4,2020-01-01\n", [], ["r.csv, line 8: timestamp '2020-01-01' is not a finite number"]),
  ("empty file", "", [], ["r.csv: the file is empty"]),
  ("header only", HEADER, [], ["r.csv: no ratings found"]),
  ("no user with 3", HEADER + "1,10,5,1\n1,11,5,2\n2,10,5,3\n", [], ["r.csv: no user has the 3 interactions"]),
  ("amazon_csv filtered empty", GOOD, ["--config.data.name=amazon_csv"], ["r.csv: no ratings left after keeping users with >= 20 ratings and items with >= 5"]),
  ("unknown data.name", None, ["--config.data.name=ml10m"], ["data.name='ml10m' is not a known data set"]),
  ("backslash separator", HEADER + GOOD, ["--config.data.sep=\\t"], ["data.sep='\\\\t'", "tab"]),
  ("column name without a header", GOOD, ["--config.data.header=False"], ["data.user_col='user'", "0-based positions"]),
]  # fmt: skip


def _assert_nothing_written(workdir):
  for name in ("results.json", "config.json", "split.npz"):
    assert not (workdir / name).exists(), name


@pytest.mark.parametrize(
  "contents, overrides, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_csv_input(tmp_path, contents, overrides, fragments):
  path = tmp_path / "r.csv"
  if contents is not None:
    path.write_text(contents)
  workdir = tmp_path / "run"
  proc = launch(
    "--config=configs/default.py",
    "--config.data.name=csv",
    f"--config.data.path={path}",
    "--config.model.name=itempop",
    "--config.eval.num_negatives=1",
    *overrides,
    f"--workdir={workdir}",
  )
  assert_one_line_error(proc, *fragments)
  _assert_nothing_written(workdir)


def test_csv_without_path(tmp_path):
  proc = launch("--config=configs/default.py", "--config.data.name=csv", f"--workdir={tmp_path}")
  assert_one_line_error(proc, "data.name=csv reads the file data.path")
  _assert_nothing_written(tmp_path)


def test_download_failures_name_the_file_and_url(tmp_path, local_server):
  """A missing data set that cannot be fetched, or whose checksum differs, ends in one line."""
  ratings = b"1\t10\t5\t100\n"
  local_server.files["/ml-100k.zip"] = zip_of({"ml-100k/u.data": ratings})
  common = ["--config=configs/default.py", "--config.model.name=itempop"]
  workdir = tmp_path / "run"

  missing = launch(
    *common,
    f"--config.data.download_url={local_server.url('/nothing.zip')}",
    f"--workdir={workdir}",
    data_root=tmp_path / "data",
  )
  assert_one_line_error(
    missing,
    f"{tmp_path / 'data' / 'ml-100k' / 'u.data'}: file not found",
    f"downloading {local_server.url('/nothing.zip')} failed: HTTP Error 404",
  )
  _assert_nothing_written(workdir)

  url = local_server.url("/ml-100k.zip")
  mismatch = launch(
    *common,
    f"--config.data.download_url={url}",
    f"--workdir={workdir}",
    data_root=tmp_path / "data",
  )
  actual = hashlib.sha256(ratings).hexdigest()
  assert_one_line_error(
    mismatch,
    f"{url}: sha256 of ml-100k/u.data is {actual}, expected 06416e59",
    "the download was deleted",
  )
  _assert_nothing_written(workdir)
