"""Figure 2: DMF-nce with 1 to 4 layers per tower, ending in 64 factors (widths halve or quarter
upwards from the latent layer, as the paper gives none). `curves.png` shows HR@10 and NDCG@10 per
epoch, one line per depth, in the figure's form.

  python launch.py --config=configs/sweep_depth.py --workdir=runs/sweep_depth
"""

from configs import default

get_config = default.get_config
# Figure 2 of the paper is a plot without numbers: nothing to mark beside ours.
REFERENCE = {"source": "Xue et al. 2017 give Figure 2 as a plot, without numbers", "values": {}}

DEPTHS = ((64,), (256, 64), (512, 256, 64), (1024, 512, 256, 64))


def sweep(add):
  for widths in DEPTHS:
    add(**{"model.user_layers": widths, "model.item_layers": widths})
