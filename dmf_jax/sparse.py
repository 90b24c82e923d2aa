"""The interaction matrix Y in compressed sparse row form, O(nnz) memory.

Y follows Eq. 2 of the paper (Y_ij = R_ij where observed, else 0), or Eq. 1 (1 where observed) when
`data.implicit` is set. Rows are users; `transpose()` gives the item-by-user form whose rows are the
columns Y_*j that the item tower reads.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class CSR:
  """A sparse matrix by rows: row r holds columns `indices[indptr[r]:indptr[r+1]]` (sorted)."""

  indptr: np.ndarray  # int64[rows + 1]
  indices: np.ndarray  # int32[nnz]
  values: np.ndarray  # float32[nnz]
  shape: tuple[int, int]

  @classmethod
  def from_coo(cls, rows, cols, values, shape: tuple[int, int]) -> CSR:
    order = np.lexsort((cols, rows))
    counts = np.bincount(rows, minlength=shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return cls(
      indptr=indptr,
      indices=np.asarray(cols, np.int32)[order],
      values=np.asarray(values, np.float32)[order],
      shape=shape,
    )

  @property
  def nnz(self) -> int:
    return len(self.indices)

  def row_lengths(self, rows: np.ndarray | None = None) -> np.ndarray:
    """The number of entries of every row, or of `rows` (read for those rows only)."""
    if rows is None:
      return np.diff(self.indptr)
    rows = np.asarray(rows)
    return self.indptr[rows + 1] - self.indptr[rows]

  def row_ids(self) -> np.ndarray:
    """The row index of every stored entry, int32[nnz]."""
    return np.repeat(np.arange(self.shape[0], dtype=np.int32), self.row_lengths())

  def binary(self) -> CSR:
    """The same entries with every value 1: Y of Eq. 1."""
    return dataclasses.replace(self, values=np.ones_like(self.values))

  def transpose(self) -> CSR:
    return CSR.from_coo(self.indices, self.row_ids(), self.values, self.shape[::-1])

  def padded(self, rows: np.ndarray | None = None, width: int | None = None):
    """Rows as fixed-width arrays for gathers on device.

    Args:
      rows: which rows (default all).
      width: the padded width (default the longest selected row).

    Returns:
      (indices int32[R, width], values float32[R, width]); padding has index `shape[1]` (one past
      the last column, so scatters with mode="drop" ignore it) and value 0.
    """
    rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows)
    lengths = self.row_lengths(rows)
    width = int(lengths.max(initial=0)) if width is None else width
    indices = np.full((len(rows), width), self.shape[1], np.int32)
    values = np.zeros((len(rows), width), np.float32)
    slot = np.arange(width)[None, :]
    mask = slot < lengths[:, None]
    source = (self.indptr[rows][:, None] + slot)[mask]
    indices[mask] = self.indices[source]
    values[mask] = self.values[source]
    return indices, values

  def take_rows(self, rows: np.ndarray) -> CSR:
    """The selected rows, in the given order, as a new matrix."""
    indices, values = self.padded(rows)
    keep = indices < self.shape[1]
    owners = np.repeat(np.arange(len(rows)), keep.sum(1))
    return CSR.from_coo(owners, indices[keep], values[keep], (len(rows), self.shape[1]))

  def to_dense(self) -> np.ndarray:
    dense = np.zeros(self.shape, np.float32)
    dense[self.row_ids(), self.indices] = self.values
    return dense
