"""The protocol of the independent rerun (Ferrari Dacrema et al., TOIS 2021), for setting our numbers
beside theirs: their ML-100k reader drops items with fewer than 5 ratings, then users with fewer
than 20 (one pass each), holds out each user's latest interaction for test and a random one for
validation, and ranks the test item among 99 sampled negatives. Runs Table 2's models.

  python launch.py --config=configs/tois2021.py --workdir=runs/tois2021_ml100k
"""

from configs import default, table2

sweep = table2.sweep


def get_config():
  config = default.get_config()
  config.data.filter = "tois2021"
  config.eval.num_negatives = 99
  return config
