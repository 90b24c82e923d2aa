"""Orbax checkpoints of a training state, one per epoch, keeping the latest and the best.

The best is the highest validation selection metric, the earliest epoch among equals (the same rule
as `results.json`). All orbax use sits in this module so that an API move touches one file.
"""

from __future__ import annotations

import pathlib

import orbax.checkpoint as ocp

FOLDER = "checkpoints"  # The checkpoints' folder in a run's workdir.


def _rank(metrics: dict) -> tuple[float, int]:
  # Sorted ascending and the last kept: a higher value wins, then the earlier epoch.
  return (metrics["value"], -metrics["epoch"])


class Checkpoints:
  """Saves and restores `{"params", "opt_state"}` pytrees by epoch under `directory`."""

  def __init__(self, directory: pathlib.Path):
    options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(
        [
          ocp.checkpoint_managers.LatestN(n=1),
          ocp.checkpoint_managers.BestN(get_metric_fn=_rank, n=1),
        ]
      ),
    )
    self._manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def epochs(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, epoch: int, state, selection_value: float) -> None:
    self._manager.save(
      epoch,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
      metrics={"value": float(selection_value), "epoch": epoch},
    )

  def restore(self, epoch: int, abstract_state):
    """The state saved at `epoch`, restored onto the shapes, dtypes and shardings of
    `abstract_state` (`jax.ShapeDtypeStruct`s), whatever mesh it was saved from."""
    self._manager.wait_until_finished()
    restored = self._manager.restore(
      epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"]

  def restore_as_saved(self, epoch: int):
    """The state saved at `epoch` with the shapes it was saved with, to check before use."""
    self._manager.wait_until_finished()
    restored = self._manager.restore(
      epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
    return restored["state"]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
