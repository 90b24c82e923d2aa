"""Orbax checkpoints of a training state, one per epoch; the trainer keeps the latest and the best.

Each checkpoint holds three items: `params`, `opt_state` (the optimizer's state, Adam's moments),
and `meta`, a JSON item with the step and what scoring needs (the model's config and the data file's
path and sha256), so that scoring restores the parameters alone. Which epochs stay is the trainer's
call (`prune`), from the same records that choose the reported epoch, so a resumed run prunes the
checkpoints of its earlier process too. All orbax use sits in this module so that an API move
touches one file.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import threading
import time

import orbax.checkpoint as ocp

from dmf_jax.errors import UserError

FOLDER = "checkpoints"  # The checkpoints' folder in a run's workdir.
ITEMS = ("params", "opt_state", "meta")
# The one item of checkpoints written before the Flax modules: the whole state, params and moments.
_OLD_ITEM = "state"
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


class Checkpoints:
  """Saves and restores params, optimizer state and meta by epoch under `directory`."""

  def __init__(self, directory: pathlib.Path):
    self.directory = pathlib.Path(directory).absolute()
    # Saved synchronously: an epoch's save that fails (disk full, read-only, file-size limit) then
    # stops the run at that epoch, in the main thread, instead of surfacing from orbax's threads an
    # epoch later; the save costs a few ms for the paper's models against seconds of training.
    options = ocp.CheckpointManagerOptions(
      enable_async_checkpointing=False, cleanup_tmp_directories=True
    )
    self._manager = ocp.CheckpointManager(self.directory, item_names=ITEMS, options=options)

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def epochs(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, epoch: int, params, opt_state, meta: dict) -> None:
    """Commits the checkpoint of `epoch`; a fault of the machine is an `OSError` naming its folder,
    with the partial checkpoint removed."""
    args = ocp.args.Composite(
      params=ocp.args.StandardSave(params),
      opt_state=ocp.args.StandardSave(opt_state),
      meta=ocp.args.JsonSave(meta),
    )
    running = set(threading.enumerate())
    try:
      self._manager.save(epoch, args=args)
    except Exception as e:
      # Tensorstore reports a failed write as a ValueError whose text holds the OS error's code.
      code = _OS_ERROR_CODE.search(str(e))
      errno = int(code.group(1)) if code else getattr(e, "errno", None)
      if errno is None:
        raise
      # Orbax writes each item in threads of its own (its commit futures) and raises at the first
      # that fails, while the others write on and would make the folder again after its removal:
      # it is removed once the threads this save started have ended (they end on their own; a
      # minute at most is waited, after which the next run's manager removes what is left).
      deadline = time.monotonic() + 60
      for thread in set(threading.enumerate()) - running:
        try:
          thread.join(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # orbax's threads raise their own failure (or a timeout) again on join
          pass
      self._remove_until_settled(epoch, deadline)
      raise OSError(errno, os.strerror(errno), str(self.directory / str(epoch))) from e

  def _remove_until_settled(self, epoch: int, deadline: float, quiet: float = 1.0) -> None:
    """Removes the partial folders of `epoch`'s failed save, and again whenever one comes back,
    until none has for `quiet` seconds: a tensorstore write still in flight in its own C++ threads,
    which no Python thread waits for, makes its file's folders again when it lands."""
    settled_since = time.monotonic()
    while time.monotonic() - settled_since < quiet and time.monotonic() < deadline:
      partial = list(self.directory.glob(f"{epoch}.*"))
      for folder in partial:
        shutil.rmtree(folder, ignore_errors=True)
      if partial:
        settled_since = time.monotonic()
      time.sleep(0.05)

  def prune(self, keep: set[int]) -> None:
    """Deletes every checkpoint but those of the epochs in `keep`."""
    for epoch in self._manager.all_steps():
      if epoch not in keep:
        self._manager.delete(epoch)

  def restore(self, epoch: int, abstract_params, abstract_opt_state):
    """(params, opt_state, meta) saved at `epoch`, restored onto the shapes, dtypes and shardings
    of the abstract trees (`jax.ShapeDtypeStruct`s), whatever mesh they were saved from."""
    restored = self._restore(
      epoch,
      params=ocp.args.StandardRestore(abstract_params),
      opt_state=ocp.args.StandardRestore(abstract_opt_state),
      meta=ocp.args.JsonRestore(),
    )
    return restored["params"], restored["opt_state"], restored["meta"]

  def restore_params(self, epoch: int, abstract_params):
    """The params saved at `epoch` alone (no optimizer state), onto `abstract_params`."""
    return self._restore(epoch, params=ocp.args.StandardRestore(abstract_params))["params"]

  def restore_params_as_saved(self, epoch: int):
    """The params saved at `epoch` with the shapes they were saved with, to check before use."""
    return self._restore(epoch, params=ocp.args.StandardRestore())["params"]

  def _restore(self, epoch: int, **items):
    self._manager.wait_until_finished()
    folder = self.directory / str(epoch)
    if (folder / _OLD_ITEM).is_dir() and not (folder / "params").is_dir():
      run = self.directory.parent
      raise UserError(
        f"{folder}: written by an older dmf_jax, whose checkpoints held one 'state' item (before "
        f"the Flax modules); retrain the run: remove {run} and run the command that trained it again"
      )
    if not (folder / "params").is_dir():
      raise UserError(
        f"{folder}: the checkpoint of epoch {epoch} is missing; retrain the run (its launch.py command with --overwrite)"
      )
    try:
      return self._manager.restore(epoch, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax and tensorstore raise many types for one unreadable file
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      # Tensorstore appends the repr of a bound method of its spec: not a thing to show a user.
      first_line = first_line.split(". See full TensorStore details")[0]
      raise UserError(
        f"{folder}: the checkpoint of epoch {epoch} cannot be read ({first_line}); retrain the run "
        "(its launch.py command with --overwrite)"
      ) from e

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
