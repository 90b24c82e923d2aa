import numpy as np

from dmf_jax import baselines, sparse


def _matrix(dense):
  rows, cols = np.nonzero(dense)
  return sparse.CSR.from_coo(rows, cols, dense[rows, cols], dense.shape)


def test_itempop_counts_training_interactions():
  dense = np.array([[5, 0, 1], [3, 0, 0], [0, 0, 2]], np.float32)
  np.testing.assert_array_equal(baselines.itempop_scores(_matrix(dense)), [2, 0, 2])


def test_itemknn_against_direct_computation():
  rng = np.random.default_rng(1)
  dense = (rng.random((12, 9)) < 0.35) * rng.integers(1, 6, (12, 9)).astype(np.float32)
  k = 3
  binary = (dense > 0).astype(np.float64)
  norms = np.linalg.norm(binary, axis=0)
  cosine = binary.T @ binary / np.maximum(np.outer(norms, norms), 1e-12)
  np.fill_diagonal(cosine, -np.inf)
  weights = np.zeros_like(cosine)
  for j in range(9):
    top = np.argsort(-cosine[j], kind="stable")[:k]
    weights[top, j] = np.maximum(cosine[j, top], 0)
  expected = binary @ weights
  matrix = _matrix(dense)
  got = baselines.itemknn_scores(matrix, baselines.itemknn_weights(matrix, k), max_terms=10)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_csr_padded_rows_and_transpose():
  dense = np.array([[0, 2, 0, 1], [0, 0, 0, 0], [3, 0, 4, 0]], np.float32)
  m = _matrix(dense)
  indices, values = m.padded()
  np.testing.assert_array_equal(indices, [[1, 3], [4, 4], [0, 2]])
  np.testing.assert_array_equal(values, [[2, 1], [0, 0], [3, 4]])
  np.testing.assert_array_equal(m.transpose().to_dense(), dense.T)
