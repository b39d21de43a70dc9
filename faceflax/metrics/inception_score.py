"""Inception Score (IS) from precomputed classifier logits or probabilities.

The classifier is pluggable: this module only sees its [N, K] outputs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.special

_PROB_SUM_ATOL = 1e-3


def _log_probs(logits_or_probs: npt.ArrayLike, splits: int, from_logits: bool) -> np.ndarray:
    """Validates the input and returns log p(y|x) as [N, K] float64."""
    x = np.asarray(logits_or_probs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected a 2-D [N, K] array with K >= 1; got shape {x.shape}.")
    if not isinstance(splits, (int, np.integer)) or isinstance(splits, bool) or splits < 1:
        raise ValueError(f"splits must be a positive int; got {splits!r}.")
    if x.shape[0] < splits:
        raise ValueError(f"need at least one sample per split: N={x.shape[0]} < splits={splits}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("input contains NaN or Inf values.")
    if from_logits:
        return scipy.special.log_softmax(x, axis=1)
    if np.any(x < 0) or np.any(x > 1):
        raise ValueError(
            f"probabilities must lie in [0, 1]; got range [{x.min():.4g}, {x.max():.4g}]. "
            "Pass from_logits=True for logits."
        )
    row_err = np.abs(x.sum(axis=1) - 1.0)
    if np.any(row_err > _PROB_SUM_ATOL):
        raise ValueError(
            f"probability rows must sum to 1 (atol {_PROB_SUM_ATOL}); worst row is off by "
            f"{row_err.max():.4g}. Pass from_logits=True for logits."
        )
    with np.errstate(divide="ignore"):
        return np.log(x)


def _split_score(log_p: np.ndarray) -> float:
    """IS of one split, log p(y|x) [n, K] float64 -> exp(mean KL) (eqs. 2.65-2.68)."""
    p = np.exp(log_p)
    # p(y) ~= (1/n) sum_x p(y|x), in log space.  # thesis eq. 2.66
    log_marginal = scipy.special.logsumexp(log_p, axis=0) - np.log(log_p.shape[0])
    # KL(p(y|x) || p(y)) per sample; 0 log 0 = 0.  # thesis eq. 2.67
    log_ratio = np.subtract(log_p, log_marginal, out=np.zeros_like(log_p), where=p > 0)
    kl = np.sum(p * log_ratio, axis=1)
    return float(np.exp(np.mean(kl)))  # thesis eqs. 2.65, 2.68


def inception_score(logits_or_probs: npt.ArrayLike, splits: int = 10, from_logits: bool = True) -> tuple[float, float]:
    """Inception Score, IS(G) = exp(E_x KL(p(y|x) || p(y))) (thesis eqs. 2.65-2.68).

    Following Salimans et al. (2016) and its reference code, the N samples
    are cut in order into `splits` contiguous groups with boundaries
    floor(i * N / splits), the score is computed per group with p(y)
    estimated as the group mean of p(y|x) (thesis eq. 2.66), and the mean
    and population standard deviation over groups are returned. Everything
    is computed in float64; logits go through a log-softmax, so large
    logits do not overflow.

    Args:
        logits_or_probs: [N, K] classifier outputs (NumPy or JAX, any real
            dtype), N >= splits.
        splits: Number of groups, >= 1.
        from_logits: If True the input is unnormalised logits; otherwise
            rows are probabilities in [0, 1] summing to 1 (atol 1e-3).

    Returns:
        (mean, std) of the per-split scores as Python floats; each score lies
        in [1, K].

    Raises:
        ValueError: If the input is not 2-D, has N < splits, contains
            non-finite values, `splits` is not a positive int, or (when
            from_logits=False) rows are not probability distributions.
    """
    log_p = _log_probs(logits_or_probs, splits, from_logits)
    n = log_p.shape[0]
    bounds = (np.arange(splits + 1) * n) // splits
    scores = np.array([_split_score(log_p[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])])
    return float(np.mean(scores)), float(np.std(scores))
