"""dmf_jax: Deep Matrix Factorization (Xue et al., IJCAI 2017) in JAX."""

__version__ = "0.1.0"

from dmf_jax.serving import Recommender, load

__all__ = ["Recommender", "load"]
