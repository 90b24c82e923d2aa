"""Progress of long work, counted in steps: a bar on a terminal; elsewhere (a file, a notebook's
captured output, CI) a log line every `interval` seconds, since a bar's redraws would pile onto one
line there."""

from __future__ import annotations

import logging
import sys
import time

import jax
from tqdm import tqdm

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
  """`42s`, `3m05s`, `2h14m`."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """`advance(n)` after n steps; `note(**fields)` sets what is shown beside the count (epoch, loss,
  a validation metric); instances/s and the time left come from the steps since the start."""

  def __init__(
    self,
    label: str,
    total: int,
    *,
    done: int = 0,
    instances_per_step: int = 1,
    interval: float = 10.0,
    stream=None,
  ):
    self.label, self.total, self.done = label, total, done
    self.instances_per_step, self.interval = instances_per_step, interval
    self.fields: dict[str, str] = {}
    self._start_done, self._start = done, time.perf_counter()
    self._measured_from_first = False
    self._last_line = None  # no line yet: the first comes with the first steps
    stream = stream or sys.stderr
    self._silent = jax.process_index() > 0  # one report for a multi-process run
    self._bar = None
    if stream.isatty() and not self._silent:
      self._bar = tqdm(total=total, initial=done, desc=label, unit="step", file=stream)

  def _rate(self) -> float:
    elapsed = time.perf_counter() - self._start
    return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

  def advance(self, steps: int) -> None:
    self.done += steps
    rate = self._rate()
    if not self._measured_from_first:
      # The first steps' time includes compiling them: later rates start after them.
      self._measured_from_first = True
      self._start_done, self._start = self.done, time.perf_counter()
    self.fields["inst/s"] = f"{rate * self.instances_per_step:,.0f}"
    if self._bar is not None:
      self._bar.set_postfix(self.fields, refresh=False)
      self._bar.update(steps)
    elif not self._silent:
      now = time.perf_counter()
      if (
        self._last_line is None or now - self._last_line >= self.interval or self.done >= self.total
      ):
        self._last_line = now
        left = f", {duration((self.total - self.done) / rate)} left" if rate > 0 else ""
        details = ", ".join(f"{k} {v}" for k, v in self.fields.items())
        log.info(
          "%s: step %d/%d (%.0f%%)%s, %s",
          self.label,
          self.done,
          self.total,
          100 * self.done / max(self.total, 1),
          left,
          details,
        )

  def note(self, **fields) -> None:
    self.fields.update({k: str(v) for k, v in fields.items()})
    if self._bar is not None:
      self._bar.set_postfix(self.fields)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
