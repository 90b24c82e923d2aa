"""A sweep's figures: the swept number found for the x-axis, short labels, files for any run
length."""

import numpy as np
import pytest

from dmf_jax import paper, plots


def _rows(overrides_list, seeds=1):
  rows = []
  for index, overrides in enumerate(overrides_list):
    row = {"member": f"m{index}", "overrides": overrides, "seeds": seeds}
    for split in ("valid", "test"):
      for metric in ("hr@10", "ndcg@10"):
        row[f"{split}_{metric}"], row[f"{split}_{metric}_std"] = 0.5 + 0.01 * index, 0.01
    rows.append(row)
  return rows


def _towers(*widths):
  return [{"model.user_layers": w, "model.item_layers": w} for w in widths]


@pytest.mark.parametrize(
  "overrides, expected",
  [
    ([{"train.neg_ratio": k} for k in (1, 2, 5)], ("negatives per positive", [1, 2, 5])),
    (_towers((256, 8), (256, 16), (256, 128)), ("factors of the final layer", [8, 16, 128])),
    (_towers((64,), (256, 64), (512, 256, 64)), ("layers per tower", [1, 2, 3])),
    (_towers((128, 64), (256, 64)), ("width of the first layer", [128, 256])),
    ([{"model.name": "itempop"}, {"model.name": "ials"}], None),
    ([{"train.lr": 1e-3}, {"model.l2": 1e-6}], None),
    (
      [
        {"model.user_layers": (64,), "model.item_layers": (64,)},
        {"model.user_layers": (64,), "model.item_layers": (32,)},
      ],
      None,
    ),
  ],
)
def test_the_swept_number_is_the_x_axis(overrides, expected):
  axis = plots.swept_axis(_rows(overrides))
  assert axis == (None if expected is None else (expected[0], [float(v) for v in expected[1]]))


def test_member_labels_are_short():
  assert plots.member_label({"model.name": "dmf", "model.loss": "ce"}) == "dmf, loss=ce"
  assert plots.member_label(_towers((1024, 512, 256, 64))[0]) == "towers 1024-512-256-64"
  assert plots.member_label({"train.lr": 0.001}) == "lr=0.001"


@pytest.mark.parametrize("epochs", [1, 3])
def test_figures_are_written_for_every_run_length(tmp_path, epochs):
  rows = _rows([{"train.neg_ratio": k} for k in (1, 2, 5)], seeds=2)
  record = {"validation": {"hr@10": 0.7, "ndcg@10": 0.5}, "test": {"hr@10": 0.6, "ndcg@10": 0.3}}
  curves = {row["member"]: [[record] * epochs] * 2 for row in rows}
  written = plots.sweep_figures(
    tmp_path,
    rows,
    curves,
    title="Table 4",
    dataset="ml100k",
    epochs=epochs,
    reference={"source": "Table 4", "values": paper.TABLE4},
  )
  assert written == [tmp_path / "metrics.png", tmp_path / "curves.png"]
  for path in written:
    assert path.stat().st_size > 10_000
    assert np.frombuffer(path.read_bytes()[:8], np.uint8).tolist() == [
      137,
      80,
      78,
      71,
      13,
      10,
      26,
      10,
    ]
