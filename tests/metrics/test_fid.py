"""Tests for faceflax.metrics.fid (thesis eq. 2.69)."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from faceflax.metrics.fid import (
    FeatureStatistics,
    accumulate,
    feature_statistics,
    fid_from_features,
    finalize,
    frechet_distance,
)


def _reference_fid(stats_a, stats_b):
    """pytorch-fid's formula: general sqrtm of the non-symmetric product."""
    covmean = scipy.linalg.sqrtm(stats_a.cov @ stats_b.cov).real
    diff = stats_a.mean - stats_b.mean
    return diff @ diff + np.trace(stats_a.cov) + np.trace(stats_b.cov) - 2.0 * np.trace(covmean)


def _random_orthogonal(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


@pytest.mark.parametrize("n, d", [(2000, 64), (65, 64), (10, 64), (5, 128)])
def test_self_distance_is_zero_even_when_covariance_is_singular(n, d):
    rng = np.random.default_rng(n + d)
    stats = feature_statistics(rng.normal(size=(n, d)) * 3.0 + 5.0)
    fid = frechet_distance(stats, stats)
    assert np.isfinite(fid)
    assert abs(fid) < 1e-6 * np.trace(stats.cov)


@pytest.mark.parametrize("d, n", [(16, 500), (32, 1000), (64, 2000)])
def test_matches_scipy_sqrtm_reference(d, n):
    rng = np.random.default_rng(d)
    feats_a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    feats_b = rng.normal(size=(n, d)) @ (rng.normal(size=(d, d)) / np.sqrt(d)) + rng.normal(size=d)
    stats_a, stats_b = feature_statistics(feats_a), feature_statistics(feats_b)
    expected = _reference_fid(stats_a, stats_b)
    np.testing.assert_allclose(frechet_distance(stats_a, stats_b), expected, rtol=1e-6)
    np.testing.assert_allclose(frechet_distance(stats_b, stats_a), expected, rtol=1e-6)
    np.testing.assert_allclose(fid_from_features(feats_a, feats_b), expected, rtol=1e-6)


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(0)
    d = 32
    var_a, var_b = rng.uniform(0.1, 4.0, d), rng.uniform(0.1, 4.0, d)
    var_b[:5] = 0.0  # rank-deficient covariance stays exact
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    stats_a = FeatureStatistics(count=100, mean=mu_a, cov=np.diag(var_a))
    stats_b = FeatureStatistics(count=100, mean=mu_b, cov=np.diag(var_b))
    expected = np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2) + np.sum((mu_a - mu_b) ** 2)
    np.testing.assert_allclose(frechet_distance(stats_a, stats_b), expected, rtol=1e-10)


def test_full_covariance_against_identity_matches_closed_form():
    # S_b = I: Tr((S_a)^{1/2}) = sum sqrt(eigenvalues of S_a).
    rng = np.random.default_rng(1)
    d = 48
    eigvals = rng.uniform(0.01, 10.0, d)
    q = _random_orthogonal(rng, d)
    mu_a = rng.normal(size=d)
    stats_a = FeatureStatistics(count=100, mean=mu_a, cov=(q * eigvals) @ q.T)
    stats_b = FeatureStatistics(count=100, mean=np.zeros(d), cov=np.eye(d))
    expected = mu_a @ mu_a + eigvals.sum() + d - 2.0 * np.sqrt(eigvals).sum()
    np.testing.assert_allclose(frechet_distance(stats_a, stats_b), expected, rtol=1e-10)


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(1037, 24)) * rng.uniform(0.5, 2.0, 24) + 1e3
    moments = None
    for batch in np.split(feats, [1, 300, 301, 800]):
        moments = accumulate(moments, batch)
    streamed, one_shot = finalize(moments), feature_statistics(feats)
    assert streamed.count == one_shot.count == 1037
    np.testing.assert_allclose(streamed.mean, one_shot.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.cov, one_shot.cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(one_shot.mean, feats.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(one_shot.cov, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-12)
    assert one_shot.mean.dtype == one_shot.cov.dtype == np.float64


def test_accepts_jax_float32_features():
    rng = np.random.default_rng(3)
    feats_a = rng.normal(size=(200, 8)).astype(np.float32)
    feats_b = (rng.normal(size=(300, 8)) + 0.5).astype(np.float32)
    np.testing.assert_allclose(
        fid_from_features(jnp.asarray(feats_a), jnp.asarray(feats_b)),
        fid_from_features(feats_a, feats_b),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "features, match",
    [
        (np.zeros(10), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((0, 4)), "empty"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or Inf"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or Inf"),
    ],
)
def test_bad_features_raise(features, match):
    with pytest.raises(ValueError, match=match):
        accumulate(None, features)


def test_too_few_samples_raise():
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(np.zeros((1, 4)))


def test_dimension_mismatch_raises():
    moments = accumulate(None, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dimension mismatch"):
        accumulate(moments, np.zeros((3, 5)))
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="dimension mismatch"):
        fid_from_features(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))


def test_malformed_statistics_raise():
    good = FeatureStatistics(count=10, mean=np.zeros(3), cov=np.eye(3))
    with pytest.raises(ValueError, match=r"cov \[D, D\]"):
        frechet_distance(good, FeatureStatistics(count=10, mean=np.zeros(3), cov=np.eye(4)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        frechet_distance(good, FeatureStatistics(count=10, mean=np.full(3, np.nan), cov=np.eye(3)))
