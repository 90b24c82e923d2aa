import jax.numpy as jnp
import numpy as np
import pytest

from dmf_jax import evaluation


def test_metrics_from_ranks_by_hand():
  ranks = np.array([0, 1, 9, 10, 50])
  got = evaluation.metrics_from_ranks(ranks, ks=(1, 10))
  assert got["hr@1"] == pytest.approx(1 / 5)
  assert got["hr@10"] == pytest.approx(3 / 5)
  assert got["ndcg@1"] == pytest.approx(1 / 5)
  assert got["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def _eval_set(candidates, excluded, users=None):
  candidates = np.asarray(candidates, np.int32)
  users = np.arange(len(candidates), dtype=np.int32) if users is None else users
  return evaluation.EvalSet("test", users, candidates, np.asarray(excluded, np.int32))


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
    # full ranking. User 1: item 2 is left out; padding 6 is ignored.
    excluded=[[0, 4], [2, 6]],
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
  eval_set = _eval_set(candidates, np.full((7, 1), 30))
  by_one = evaluation.evaluate(lambda u: scores[u], eval_set, ks=(3,), batch_size=1)
  by_four = evaluation.evaluate(lambda u: scores[u], eval_set, ks=(3,), batch_size=4)
  for kind in ("sampled", "full"):
    np.testing.assert_array_equal(by_one[1][kind], by_four[1][kind])
  assert by_one[0] == by_four[0]
  # The direct definition: how many candidates score at least the held-out item.
  s = np.asarray(scores)
  expected = [(s[u, c[1:]] >= s[u, c[0]]).sum() for u, c in enumerate(candidates)]
  np.testing.assert_array_equal(by_four[1]["sampled"], expected)
