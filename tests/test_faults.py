"""Runs that meet faults: a crash between writes, SIGTERM, two processes on one workdir or sweep,
damaged or replaced files, and input refused in one line (by the Python API as by the CLI)."""

import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.serialization import jax_array_handlers

import dmf_jax
from dmf_jax import checkpoints, experiment, files, protocol, sweep
from dmf_jax.errors import UserError
from dmf_jax.workdir import Workdir, WorkdirBusy, where_to_resume
from tests.conftest import REPO, assert_one_line_error, launch
from tests.test_training import data_root, tiny_config  # noqa: F401 (fixture)

TINY_FLAGS = (
  "--config=configs/default.py",
  "--config.model.user_layers=(16,8)",
  "--config.model.item_layers=(16,8)",
  "--config.train.batch_size=32",
  "--config.train.neg_ratio=3",
  "--config.train.lr=3e-3",
  "--config.eval.num_negatives=10",
)


def _epochs(workdir):
  return [
    json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]


def _crash_on_save(monkeypatch, epoch):
  """Ends the process's run (as kill -9 would) after `epoch` is evaluated, before its checkpoint."""
  save = checkpoints.Checkpoints.save

  def save_or_crash(self, step, *args, **kwargs):
    if step == epoch:
      raise KeyboardInterrupt
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoints.Checkpoints, "save", save_or_crash)


def test_a_crash_before_the_checkpoint_leaves_each_epoch_once(tmp_path, data_root, monkeypatch):  # noqa: F811
  config = tiny_config(data_root, **{"train.epochs": 3})
  experiment.train_and_evaluate(config, tmp_path / "whole")
  for epoch in (1, 2):  # a fresh start (nothing saved yet), then a resumed run
    _crash_on_save(monkeypatch, epoch)
    with pytest.raises(KeyboardInterrupt):
      experiment.train_and_evaluate(config, tmp_path / "run")
    monkeypatch.undo()
  assert _epochs(tmp_path / "run") == [1, 2]  # epoch 2 evaluated, not saved: dropped on resume
  resumed = experiment.train_and_evaluate(config, tmp_path / "run")
  assert _epochs(tmp_path / "run") == [1, 2, 3]
  kept = {p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()}
  assert kept == {"3", str(resumed["best_epoch"])}  # the first process's checkpoints pruned too
  _assert_same_run(tmp_path / "run", tmp_path / "whole")


def test_a_busy_workdir_is_refused_naming_its_holder(tmp_path, data_root):  # noqa: F811
  workdir = tmp_path / "run"
  with Workdir(workdir).locked():
    with pytest.raises(WorkdirBusy, match=f"{workdir} is in use by pid {os.getpid()} on"):
      experiment.train_and_evaluate(tiny_config(data_root), workdir)
    proc = launch(*TINY_FLAGS, f"--workdir={workdir}", data_root=data_root)
    assert_one_line_error(proc, f"{workdir} is in use by pid {os.getpid()}")
  assert not workdir.exists()  # the lock's folder, created for it and left empty, is gone


def test_a_killed_holders_lock_goes_with_it(tmp_path):
  workdir = tmp_path / "run"
  code = (
    "import time\nfrom dmf_jax.workdir import Workdir\n"
    f"with Workdir({str(workdir)!r}).locked():\n  print('held', flush=True)\n  time.sleep(60)"
  )
  with subprocess.Popen(
    [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
  ) as holder:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirBusy):
      with Workdir(workdir).locked():
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with Workdir(workdir).locked():
    assert (workdir / ".lock").is_file()


@pytest.mark.parametrize("damage", ["delete metrics", "truncate metrics", "damage results"])
def test_damaged_records_give_one_line_and_overwrite_starts_over(
  tmp_path,
  data_root,  # noqa: F811
  monkeypatch,
  damage,
):
  workdir = tmp_path / "run"
  config = tiny_config(data_root, **{"train.epochs": 3})
  _crash_on_save(monkeypatch, 3)
  with pytest.raises(KeyboardInterrupt):
    experiment.train_and_evaluate(config, workdir)
  monkeypatch.undo()
  metrics = workdir / "metrics.jsonl"
  if damage == "delete metrics":
    metrics.unlink()
    expected = f"{metrics} lacks the records of epochs [1, 2]"
  elif damage == "truncate metrics":
    metrics.write_bytes(metrics.read_bytes()[:-40])
    expected = f"{metrics}: damaged (line 3 is not a JSON record"
  else:
    experiment.train_and_evaluate(config, workdir)
    (workdir / "results.json").write_text('{"best_epoch": ')
    expected = f"{workdir / 'results.json'}: damaged (not JSON"
  flags = (
    *TINY_FLAGS,
    "--config.train.epochs=3",
    f"--config.data.root={data_root}",
    f"--workdir={workdir}",
  )
  assert_one_line_error(launch(*flags, data_root=data_root), expected, "--overwrite")
  again = launch(*flags, "--overwrite", data_root=data_root)
  assert again.returncode == 0, again.stderr
  assert _epochs(workdir) == [1, 2, 3]


def test_leftover_temporary_files_go_on_the_rerun(tmp_path, data_root):  # noqa: F811
  workdir = tmp_path / "run"
  config = tiny_config(data_root, **{"train.epochs": 1})
  experiment.train_and_evaluate(config, workdir)
  (workdir / ".metrics.jsonl.12345.tmp").write_text('{"epoch": 1, "lo')
  experiment.train_and_evaluate(config, workdir)
  assert not list(workdir.glob(".*.tmp"))


def test_a_replaced_or_damaged_split_is_refused_when_serving(tmp_path, data_root):  # noqa: F811
  config = tiny_config(data_root, **{"train.epochs": 1})
  experiment.train_and_evaluate(config, tmp_path / "run")
  experiment.train_and_evaluate(
    tiny_config(data_root, **{"train.epochs": 1, "data.split_seed": 1}), tmp_path / "other"
  )
  split = tmp_path / "run" / protocol.SPLIT_FILE
  split.write_bytes((tmp_path / "other" / protocol.SPLIT_FILE).read_bytes())
  with pytest.raises(
    UserError, match=f"{split} holds split .*, not the split .* the run was trained on"
  ):
    dmf_jax.load(tmp_path / "run")
  split.write_bytes(split.read_bytes()[:100])
  proc = launch(
    f"--workdir={tmp_path / 'run'}", "--mode=recommend", "--user=3", data_root=data_root
  )
  assert_one_line_error(proc, f"{split}: not a whole split file")


def test_a_damaged_cached_split_is_rebuilt(tmp_path, data_root, caplog):  # noqa: F811
  config = tiny_config(data_root, **{"train.epochs": 1})
  first = experiment.train_and_evaluate(config, tmp_path / "a")
  (cached,) = protocol.split_cache_dir().glob("*.npz")
  cached.write_bytes(cached.read_bytes()[:50])
  second = experiment.train_and_evaluate(config, tmp_path / "b")
  assert second["test"] == first["test"]
  assert f"{cached}: not a whole split file" in caplog.text and "it is rebuilt" in caplog.text
  assert protocol.Split.load(cached).key == first["split"]


def test_the_python_api_refuses_what_the_cli_refuses(tmp_path, data_root):  # noqa: F811
  experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 1}), tmp_path / "run")
  model = dmf_jax.load(tmp_path / "run")
  for k in (0, -1):
    with pytest.raises(UserError, match=f"k={k}: ask for at least 1 item"):
      model.recommend("1", k=k)
    with pytest.raises(UserError, match=f"k={k}"):
      model.recommend_for_ratings({"1": 5.0}, k=k)
  with pytest.raises(UserError, match=r"must be in \(0, 5\]"):
    model.recommend_for_ratings({"1": 1e9})
  with pytest.raises(UserError, match="unknown item 'nope'"):
    model.recommend_for_ratings({"nope": 3.0})
  proc = launch(
    f"--workdir={tmp_path / 'run'}", "--mode=recommend", "--ratings=1:5,1:4", data_root=data_root
  )
  assert_one_line_error(proc, "item '1' is rated twice")


def _assert_same_run(workdir, expected):
  """The run in `workdir` finished with `expected`'s results (less timing and code) and ranks."""
  timing = ("train_seconds", "wall_seconds", "code", "finished")
  results, expected_results = (
    {k: v for k, v in json.loads((d / "results.json").read_text()).items() if k not in timing}
    for d in (workdir, expected)
  )
  assert results == expected_results
  with np.load(workdir / "ranks.npz") as a, np.load(expected / "ranks.npz") as b:
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
      np.testing.assert_array_equal(a[name], b[name])


def test_a_file_size_limit_ends_the_run_in_one_line_and_the_rerun_finishes(tmp_path, data_root):  # noqa: F811
  """A fault of the machine (here a file-size limit, which a full disk meets the same way: a write
  fails) stops the run at the file it hit, leaves no partial file, and the rerun's results are an
  uninterrupted run's. The limits fall on the split (9.5 KB) and on the first checkpoint (0.7 MB)."""
  flags = [f for f in TINY_FLAGS if "user_layers" not in f]
  flags += ["--config.model.user_layers=(4096,8)", "--config.train.epochs=2"]
  whole = launch(*flags, f"--workdir={tmp_path / 'whole'}", data_root=data_root)
  assert whole.returncode == 0, whole.stderr
  workdir = tmp_path / "run"
  for limit, failing in ((4_000, "split.npz"), (100_000, "checkpoints/1")):
    proc = launch(*flags, f"--workdir={workdir}", data_root=data_root, file_size_limit=limit)
    assert_one_line_error(proc, f"error: {workdir / failing}: File too large")
    assert not [p for p in workdir.rglob("*") if "tmp" in p.name], "a partial file was left"
  assert not list((workdir / "checkpoints").iterdir())
  rerun = launch(*flags, f"--workdir={workdir}", data_root=data_root)
  assert rerun.returncode == 0, rerun.stderr
  assert _epochs(workdir) == [1, 2]
  _assert_same_run(workdir, tmp_path / "whole")


def _save_over_a_file_size_limit(saved: checkpoints.Checkpoints) -> None:
  """Epoch 1's save, whose optimizer state meets a file-size limit (128 KiB against 100 KB)."""
  too_big = jax.random.normal(jax.random.key(0), (4096, 8))
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
  try:
    with pytest.raises(OSError, match="File too large"):
      saved.save(1, {"w": jnp.ones((64, 8))}, {"mu": too_big, "nu": too_big}, {"step": 1})
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# Orbax closes the event loop of the write that failed with that array's other fragment writes
# still pending; Python reports them as unraisable when they are collected.
pending_writes_of_a_failed_save = pytest.mark.filterwarnings(
  "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pending_writes_of_a_failed_save
def test_a_failed_save_removes_its_folder_after_the_other_items_writes_end(tmp_path, monkeypatch):
  """Orbax writes each item of a checkpoint in threads of its own and raises at the first that
  fails: the params' write, held back here as on a loaded machine, must not make the removed
  folder again after the opt_state's write met the file-size limit."""
  held_back = 1.0
  write = jax_array_handlers._async_serialize_replica_slices  # orbax's write of one array

  async def late_for_params(values, infos, *args, **kwargs):
    if "params" in str(infos[0].parent_dir):
      await asyncio.sleep(held_back)
    return await write(values, infos, *args, **kwargs)

  monkeypatch.setattr(jax_array_handlers, "_async_serialize_replica_slices", late_for_params)
  saved = checkpoints.Checkpoints(tmp_path / "checkpoints")
  _save_over_a_file_size_limit(saved)
  time.sleep(held_back + 1.0)  # the held-back write has landed by now, had it gone on
  assert not list((tmp_path / "checkpoints").iterdir())
  saved.close()


@pending_writes_of_a_failed_save
def test_a_failed_save_removes_its_folder_again_when_a_late_write_makes_it_again(tmp_path):
  """A write no Python thread of the save waits for (tensorstore's own threads) lands after the
  removal and makes the params' folder again: it is removed again before the save raises. The
  late writer is a thread started before the save, which the save's joins do not wait for."""
  directory = tmp_path / "checkpoints"
  params_folder = directory / "1.orbax-checkpoint-tmp" / "params.orbax-checkpoint-tmp"
  seen, remade = threading.Event(), threading.Event()

  def late_write():
    while not params_folder.parent.exists():  # the save has begun
      time.sleep(0.001)
    seen.set()
    while params_folder.parent.exists():  # the failed save's first removal
      time.sleep(0.001)
    time.sleep(0.2)
    params_folder.mkdir(parents=True)
    (params_folder / "chunk").write_bytes(b"late")
    remade.set()

  saved = checkpoints.Checkpoints(directory)
  writer = threading.Thread(target=late_write, daemon=True)
  writer.start()
  _save_over_a_file_size_limit(saved)
  assert seen.is_set() and remade.is_set(), "the late write did not land before the save raised"
  assert not list(directory.iterdir())
  saved.close()


def test_sigterm_stops_in_one_line_and_the_rerun_resumes(tmp_path, data_root):  # noqa: F811
  workdir = tmp_path / "run"
  flags = (*TINY_FLAGS, "--config.train.epochs=30", f"--workdir={workdir}")
  env = dict(os.environ, DMF_DATA_DIR=str(data_root))
  with subprocess.Popen(
    [sys.executable, "launch.py", *flags], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
  ) as proc:
    deadline = time.monotonic() + 120
    # A committed checkpoint: orbax writes `<epoch>.orbax-checkpoint-tmp/meta` first, then renames.
    while time.monotonic() < deadline and not [
      p for p in workdir.glob("checkpoints/*/meta") if p.parent.name.isdigit()
    ]:
      time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130
  assert "Traceback" not in stderr
  lines = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "interrupted; the same command resumes" in lines[0], stderr
  assert not (workdir / "results.json").exists()
  done = _epochs(workdir)
  rerun = launch(*flags, data_root=data_root)
  assert rerun.returncode == 0, rerun.stderr
  assert "resuming from the checkpoint of epoch" in rerun.stderr
  assert _epochs(workdir) == list(range(1, 31)) and len(done) < 30


def test_an_interrupted_sweep_names_its_unfinished_runs_epochs(tmp_path):
  """Finished runs' checkpoints (here epoch 20) are not where the sweep resumes from."""
  for run, epochs, finished in (
    ("a/seed0", (12, 20), True),
    ("b/seed0", (8, 14), False),
    ("b/seed1", (4, 8), False),
    ("b/seed2", (), False),
  ):
    for epoch in epochs:
      (tmp_path / run / "checkpoints" / str(epoch) / "meta").mkdir(parents=True)
    (tmp_path / run / "checkpoints" / "16.orbax-checkpoint-tmp-1" / "meta").mkdir(parents=True)
    if finished:
      (tmp_path / run / "results.json").write_text("{}")
  assert where_to_resume(tmp_path) == (
    f"the same command resumes {tmp_path} from its checkpoints (its 2 unfinished runs: epochs 14, 8)"
  )
  assert where_to_resume(tmp_path / "b" / "seed0").endswith("(its unfinished run: epoch 14)")
  assert where_to_resume(tmp_path / "a") == (
    f"the same command starts the unfinished runs in {tmp_path / 'a'} again"
  )


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--config.eval.ks=abc", "eval.ks=('abc',): give one or more positive whole cut-offs"),
    ("--config.data.split_seed=-1", "data.split_seed=-1: must be a whole number >= 0"),
    ("--config.train.lr=nan", "train.lr=nan: must be a finite number > 0"),
  ],
)
def test_bad_values_fail_in_one_line_before_any_file(tmp_path, data_root, flag, message):  # noqa: F811
  proc = launch(*TINY_FLAGS, flag, f"--workdir={tmp_path / 'run'}", data_root=data_root)
  assert_one_line_error(proc, message)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_damaged_best_checkpoint_is_one_line(tmp_path, data_root, damage):  # noqa: F811
  workdir = tmp_path / "run"
  results = experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 1}), workdir)
  best = workdir / "checkpoints" / str(results["best_epoch"])
  if damage == "missing":
    shutil.rmtree(best)
    expected = f"{best}: the checkpoint of epoch 1 is missing"
  else:
    for chunk in (best / "params").glob("ocdbt.process_*/d/*"):
      chunk.write_bytes(chunk.read_bytes()[:10])
    expected = f"{best}: the checkpoint of epoch 1 cannot be read"
  proc = launch(f"--workdir={workdir}", "--mode=recommend", "--user=3", data_root=data_root)
  assert_one_line_error(proc, expected, "--overwrite")


def test_a_sweep_skips_a_member_another_process_holds(tmp_path, data_root, caplog):  # noqa: F811
  base = tiny_config(data_root, **{"train.epochs": 1})
  base.sweep.num_seeds = 1

  def members(add):
    for ratio in (2, 3):
      add(**{"train.neg_ratio": ratio})

  held = tmp_path / "neg_ratio=3" / "seed0"
  with Workdir(held).locked():
    rows = sweep.run(base, members, tmp_path, overwrite=False)
  assert [row["member"] for row in rows] == ["neg_ratio=2"]
  assert f"skipped: {held} is in use by pid {os.getpid()}" in caplog.text
  assert "run the sweep again once they end" in caplog.text
  assert [row["member"] for row in sweep.run(base, members, tmp_path, overwrite=False)] == [
    "neg_ratio=2",
    "neg_ratio=3",
  ]


def test_data_path_with_a_named_data_set_is_refused(tmp_path, data_root):  # noqa: F811
  proc = launch(
    *TINY_FLAGS,
    f"--config.data.path={data_root}",
    f"--workdir={tmp_path / 'run'}",
    data_root=data_root,
  )
  assert_one_line_error(proc, "data.name=ml100k does not read data.path", "set data.root")
  assert not (tmp_path / "run").exists()


def test_a_repeated_tuple_override_is_refused(tmp_path, data_root):  # noqa: F811
  proc = launch(
    *TINY_FLAGS,
    "--config.model.user_layers=(32,8)",
    f"--workdir={tmp_path / 'run'}",
    data_root=data_root,
  )
  assert_one_line_error(proc, "--config.model.user_layers is given more than once")


def test_threads_writing_one_file_at_once_leave_one_whole_version(tmp_path):
  # A sweep's vmapped seeds, each in its own thread, save the same split cache at once.
  path = tmp_path / "split.npz"
  versions = [bytes([i]) * 2_000_000 for i in range(8)]
  failures = []

  def write(content):
    try:
      for _ in range(5):
        with files.atomic_write(path, "wb") as f:
          f.write(content)
    except Exception as e:
      failures.append(e)

  threads = [threading.Thread(target=write, args=(v,)) for v in versions]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert not failures
  assert path.read_bytes() in versions
  assert not list(tmp_path.glob(".*.tmp"))
