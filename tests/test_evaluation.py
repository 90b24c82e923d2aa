import jax.numpy as jnp
import numpy as np
import pytest

from dmf_jax import evaluation, sparse


def test_metrics_from_ranks_by_hand():
  ranks = np.array([0, 1, 9, 10, 50])
  got = evaluation.metrics_from_ranks(ranks, ks=(1, 10))
  assert got["hr@1"] == pytest.approx(1 / 5)
  assert got["hr@10"] == pytest.approx(3 / 5)
  assert got["ndcg@1"] == pytest.approx(1 / 5)
  assert got["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def _eval_set(candidates, train_items, other_held_out, num_items, full_rows=None):
  """Users 0..E-1 with `candidates` (held-out item first), training items `train_items` (one
  list per user) and their other held-out item."""
  candidates = np.asarray(candidates, np.int32)
  users = np.arange(len(candidates), dtype=np.int32)
  rows = np.repeat(users, [len(items) for items in train_items])
  columns = np.concatenate([np.asarray(items, int) for items in train_items])
  train = sparse.CSR.from_coo(rows, columns, np.ones(len(rows)), (len(users), num_items))
  full_rows = users if full_rows is None else np.asarray(full_rows)
  other = np.asarray(other_held_out, np.int32)
  return evaluation.EvalSet("test", users, candidates, other, train, full_rows)


def test_ties_count_against_the_held_out_item_and_exclusions_apply():
  # 6 items; item 5 is the padding index.
  scores = jnp.asarray(
    [
      [0.9, 0.5, 0.5, 0.1, 0.7, 0.0],  # user 0: held-out 1 (0.5) ties with item 2
      [0.2, 0.3, 0.9, 0.8, 0.1, 0.0],  # user 1: held-out 0 (0.2), negatives 1, 4
    ]
  )
  eval_set = _eval_set(
    candidates=[[1, 2, 3], [0, 1, 4]],
    # User 0: item 0 (a training item) and 4 (the other held-out item) are left out of the
    # full ranking. User 1: items 2 (training) and 5 (held out) are left out.
    train_items=[[0], [2]],
    other_held_out=[4, 5],
    num_items=6,
  )
  metrics, ranks = evaluation.evaluate(lambda u: scores[u], eval_set, ks=(1, 2), batch_size=4)
  np.testing.assert_array_equal(ranks["sampled"], [1, 1])  # the tie ranks above; 0.3 > 0.2
  # Full: user 0 ranks below item 2 (tie); user 1 below items 1 and 3 (item 2 excluded).
  np.testing.assert_array_equal(ranks["full"], [1, 2])
  assert metrics["hr@1"] == 0.0 and metrics["hr@2"] == 1.0
  assert metrics["full_hr@2"] == pytest.approx(0.5)
  assert metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))


def test_batches_pad_without_changing_results():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.normal(size=(7, 30)).astype(np.float32))
  candidates = np.stack([rng.choice(30, 6, replace=False) for _ in range(7)])
  eval_set = _eval_set(candidates, [[] for _ in range(7)], candidates[:, 1], 30)
  by_one = evaluation.evaluate(lambda u: scores[u], eval_set, ks=(3,), batch_size=1)
  by_four = evaluation.evaluate(lambda u: scores[u], eval_set, ks=(3,), batch_size=4)
  for kind in ("sampled", "full"):
    np.testing.assert_array_equal(by_one[1][kind], by_four[1][kind])
  assert by_one[0] == by_four[0]
  # The direct definition: how many candidates score at least the held-out item.
  s = np.asarray(scores)
  expected = [(s[u, c[1:]] >= s[u, c[0]]).sum() for u, c in enumerate(candidates)]
  np.testing.assert_array_equal(by_four[1]["sampled"], expected)
  # Full: every item scoring at least the held-out one, but the other held-out item (c[1]).
  expected_full = [
    (np.delete(s[u], [c[0], c[1]]) >= s[u, c[0]]).sum() for u, c in enumerate(candidates)
  ]
  np.testing.assert_array_equal(by_four[1]["full"], expected_full)


def test_full_rankings_for_a_sample_of_users_and_candidates_scored_apart():
  rng = np.random.default_rng(1)
  scores = rng.normal(size=(9, 40)).astype(np.float32)
  candidates = np.stack([rng.choice(np.arange(5, 40), 6, replace=False) for _ in range(9)])
  train_items = [rng.choice(5, rng.integers(0, 5), replace=False) for _ in range(9)]
  everyone = _eval_set(candidates, train_items, candidates[:, 2], 40)
  rows = evaluation.full_ranking_rows(9, 4, seed=3)
  assert len(rows) == 4 and np.all(np.diff(rows) > 0)
  np.testing.assert_array_equal(rows, evaluation.full_ranking_rows(9, 4, seed=3))
  np.testing.assert_array_equal(evaluation.full_ranking_rows(9, 20, seed=3), np.arange(9))
  sample = _eval_set(candidates, train_items, candidates[:, 2], 40, full_rows=rows)
  score_all = lambda u: jnp.asarray(scores)[u]  # noqa: E731
  seen = []

  def score_candidates(users_B, items_BxC):
    seen.append(items_BxC.shape)
    return jnp.take_along_axis(jnp.asarray(scores)[users_B], items_BxC, axis=1)

  all_metrics, all_ranks = evaluation.evaluate(score_all, everyone, ks=(5,), batch_size=4)
  metrics, ranks = evaluation.evaluate(
    score_all, sample, ks=(5,), batch_size=4, score_candidates=score_candidates
  )
  assert seen and all(shape == (4, 6) for shape in seen)
  np.testing.assert_array_equal(ranks["sampled"], all_ranks["sampled"])
  np.testing.assert_array_equal(ranks["full"], all_ranks["full"][rows])
  np.testing.assert_array_equal(ranks["full_rows"], rows)
  assert metrics["ndcg@5"] == all_metrics["ndcg@5"]
  assert (
    metrics["full_hr@5"] == evaluation.metrics_from_ranks(all_ranks["full"][rows], (5,))["hr@5"]
  )
