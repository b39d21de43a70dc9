"""Frechet Inception Distance (FID) from precomputed features.

The feature network is pluggable: this module only sees feature arrays
(e.g. Inception pool3 activations, [N, 2048]) and reduces them to Gaussian
statistics on the host in float64.

Streaming use::

    moments = None
    for batch in feature_batches:          # each [B, D]
        moments = accumulate(moments, batch)
    stats = finalize(moments)              # FeatureStatistics
    fid = frechet_distance(stats, reference_stats)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.linalg


class FeatureStatistics(NamedTuple):
    """Gaussian statistics of a feature set (thesis eq. 2.69: mu, S).

    Attributes:
        count: Number of samples N the statistics were computed from.
        mean: [D] float64 sample mean.
        cov: [D, D] float64 sample covariance, unbiased (N - 1) normaliser
            as in `numpy.cov` and pytorch-fid.
    """

    count: int
    mean: np.ndarray
    cov: np.ndarray


class FeatureMoments(NamedTuple):
    """Partial sums for streaming accumulation of `FeatureStatistics`.

    Batches are merged with Chan et al.'s pairwise update, which keeps the
    centred second moment instead of the raw sum of outer products and so
    avoids cancellation when the mean is large relative to the spread.

    Attributes:
        count: Number of samples seen so far.
        mean: [D] float64 running mean.
        m2: [D, D] float64 sum of centred outer products,
            sum_i (x_i - mean)(x_i - mean)^T.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray


def _as_features(features: npt.ArrayLike) -> np.ndarray:
    """Validates a feature batch and returns it as [N, D] float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D]; got shape {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError(f"features batch is empty; got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x).all(axis=1)))
        raise ValueError(f"features contain NaN or Inf values (in {bad} of {x.shape[0]} rows).")
    return x


def accumulate(moments: FeatureMoments | None, features: npt.ArrayLike) -> FeatureMoments:
    """Adds a batch of features to the running moments.

    Args:
        moments: Moments from previous batches, or None to start.
        features: [N, D] array (any real dtype; NumPy or JAX) with N >= 1.

    Returns:
        New `FeatureMoments` covering the previous samples and this batch.

    Raises:
        ValueError: If `features` is not 2-D, is empty, contains non-finite
            values, or its D differs from that of `moments`.
    """
    x = _as_features(features)
    n_b = x.shape[0]
    mean_b = x.mean(axis=0)
    centred = x - mean_b
    m2_b = centred.T @ centred
    if moments is None:
        return FeatureMoments(count=n_b, mean=mean_b, m2=m2_b)
    if moments.mean.shape[0] != x.shape[1]:
        raise ValueError(f"feature dimension mismatch: accumulated D={moments.mean.shape[0]}, batch D={x.shape[1]}.")
    n_a = moments.count
    n = n_a + n_b
    delta = mean_b - moments.mean
    mean = moments.mean + delta * (n_b / n)
    m2 = moments.m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
    return FeatureMoments(count=n, mean=mean, m2=m2)


def finalize(moments: FeatureMoments) -> FeatureStatistics:
    """Turns accumulated moments into mean and unbiased covariance.

    Args:
        moments: Output of `accumulate`.

    Returns:
        `FeatureStatistics` with cov = m2 / (N - 1), as `numpy.cov`.

    Raises:
        ValueError: If fewer than 2 samples were accumulated.
    """
    if moments.count < 2:
        raise ValueError(f"need at least 2 samples for a covariance; got {moments.count}.")
    cov = moments.m2 / (moments.count - 1)
    return FeatureStatistics(count=moments.count, mean=moments.mean, cov=(cov + cov.T) / 2)


def feature_statistics(features: npt.ArrayLike) -> FeatureStatistics:
    """One-shot statistics of a [N, D] feature array (N >= 2); see `accumulate`."""
    return finalize(accumulate(None, features))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD [D, D] matrix via eigh."""
    eigvals, eigvecs = scipy.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def _check_statistics(stats: FeatureStatistics, name: str) -> int:
    """Validates shapes and finiteness of `stats`; returns D."""
    mean, cov = np.asarray(stats.mean), np.asarray(stats.cov)
    if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"{name}: expected mean [D] and cov [D, D]; got {mean.shape} and {cov.shape}.")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ValueError(f"{name}: mean or cov contains NaN or Inf values.")
    return mean.shape[0]


def frechet_distance(stats_a: FeatureStatistics, stats_b: FeatureStatistics) -> float:
    """Frechet distance between two Gaussians (thesis eq. 2.69).

    FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}).

    The trace of the matrix square root is computed without forming
    sqrtm(S_a S_b). S_a S_b is not symmetric, and when either covariance is
    singular or ill-conditioned (always the case with fewer samples than
    dimensions, N <= D) a general `sqrtm` of it returns complex or inaccurate
    results and needs ad-hoc diagonal offsets. Instead, with R = S_a^{1/2}
    from a symmetric eigendecomposition (negative round-off eigenvalues
    clipped to 0), S_a S_b = R (R S_b R) R^{-1} is similar to the symmetric
    PSD matrix R S_b R, so

        Tr((S_a S_b)^{1/2}) = sum_i sqrt(max(lambda_i(R S_b R), 0)).

    Only symmetric eigensolvers are used, which are backward stable and
    return real eigenvalues, so the result is real and finite for any PSD
    inputs, including rank-deficient ones.

    Args:
        stats_a: Statistics of the first feature set (mean [D], cov [D, D]).
        stats_b: Statistics of the second feature set, same D.

    Returns:
        The distance as a Python float, >= 0 (tiny negative round-off is
        clipped to 0).

    Raises:
        ValueError: If shapes are inconsistent, D differs between the two,
            or any statistic is non-finite.
    """
    d_a = _check_statistics(stats_a, "stats_a")
    d_b = _check_statistics(stats_b, "stats_b")
    if d_a != d_b:
        raise ValueError(f"feature dimension mismatch: stats_a has D={d_a}, stats_b has D={d_b}.")
    mu_a, mu_b = (np.asarray(s.mean, dtype=np.float64) for s in (stats_a, stats_b))
    cov_a, cov_b = (np.asarray(s.cov, dtype=np.float64) for s in (stats_a, stats_b))
    cov_a, cov_b = (cov_a + cov_a.T) / 2, (cov_b + cov_b.T) / 2

    diff = mu_a - mu_b
    sqrt_a = _psd_sqrt(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    inner_eigvals = scipy.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(inner_eigvals, 0.0, None)))
    fid = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt  # thesis eq. 2.69
    return max(float(fid), 0.0)


def fid_from_features(features_a: npt.ArrayLike, features_b: npt.ArrayLike) -> float:
    """FID between two feature arrays [N_a, D] and [N_b, D] (thesis eq. 2.69).

    Args:
        features_a: [N_a, D] features, N_a >= 2, any real dtype.
        features_b: [N_b, D] features, N_b >= 2, same D.

    Returns:
        `frechet_distance` of their statistics, as a Python float.

    Raises:
        ValueError: On invalid features (see `accumulate` and `finalize`).
    """
    return frechet_distance(feature_statistics(features_a), feature_statistics(features_b))
