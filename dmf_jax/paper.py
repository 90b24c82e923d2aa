"""The published numbers this project is compared with: (HR@10, NDCG@10) on the test items.

Xue et al., "Deep Matrix Factorization Models for Recommender Systems", IJCAI 2017 (Tables 2-5;
Figure 2 is a plot and gives no numbers), and the rerun of the authors' code by Ferrari Dacrema et
al., "A Troubling Analysis of Reproducibility and Progress in Recommender Systems Research", TOIS
2021 (ML-100k only).
"""

TABLE2 = {
  "ml100k": {
    "ItemPop": (0.406, 0.231),
    "ItemKNN": (0.600, 0.334),
    "eALS": (0.621, 0.356),
    "NeuMF-p": (0.670, 0.395),
    "DMF-2-ce": (0.679, 0.405),
    "DMF-2-nce": (0.687, 0.409),
  },
  "amusic": {
    "ItemPop": (0.423, 0.242),
    "ItemKNN": (0.493, 0.345),
    "eALS": (0.521, 0.374),
    "NeuMF-p": (0.527, 0.371),
    "DMF-2-ce": (0.570, 0.403),
    "DMF-2-nce": (0.563, 0.397),
  },
}
TABLE3 = {
  "ml100k": {"LFM-nce": (0.634, 0.369), "DMF-1-nce": (0.670, 0.386)},
  "amusic": {"LFM-nce": (0.491, 0.311), "DMF-1-nce": (0.572, 0.389)},
}
TABLE4 = {  # negatives per positive -> (HR, NDCG)
  "ml100k": {
    1: (0.677, 0.393),
    2: (0.687, 0.403),
    5: (0.684, 0.406),
    9: (0.675, 0.401),
    10: (0.667, 0.400),
  },
  "amusic": {
    1: (0.569, 0.384),
    2: (0.562, 0.387),
    5: (0.556, 0.386),
    9: (0.567, 0.391),
    10: (0.554, 0.384),
  },
}
TABLE5 = {  # final factors -> (HR, NDCG)
  "ml100k": {
    8: (0.660, 0.369),
    16: (0.672, 0.389),
    32: (0.675, 0.386),
    64: (0.682, 0.394),
    128: (0.677, 0.393),
  },
  "amusic": {
    8: (0.547, 0.357),
    16: (0.560, 0.371),
    32: (0.568, 0.377),
    64: (0.559, 0.374),
    128: (0.569, 0.384),
  },
}
TOIS2021_ML100K = {  # Ferrari Dacrema et al. (TOIS 2021), their rerun on ML-100k.
  "DMF-2-nce": (0.593, 0.341),
  "DMF-2-ce": (0.603, 0.362),
  "iALS": (0.614, 0.369),
  "EASE^R": (0.609, 0.357),
}
