"""Tests for faceflax.metrics.inception_score (thesis eqs. 2.65-2.68)."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from faceflax.metrics.inception_score import inception_score


def _reference_is(logits, splits):
    """Straightforward eqs. 2.65-2.67 per split, with Salimans et al.'s split boundaries."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    n = probs.shape[0]
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]
        p_y = part.mean(axis=0)
        kl = np.sum(part * (np.log(part) - np.log(p_y)), axis=1)
        scores.append(np.exp(kl.mean()))
    return np.mean(scores), np.std(scores)


def test_all_samples_in_one_class_scores_one():
    probs = np.zeros((50, 7))
    probs[:, 3] = 1.0
    score = inception_score(probs, splits=5, from_logits=False)
    assert score == pytest.approx((1.0, 0.0), abs=1e-12)


def test_identical_predictions_score_one():
    logits = np.tile(np.random.default_rng(0).normal(size=(1, 12)), (40, 1))
    assert inception_score(logits, splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_confident_distinct_classes_score_k(k):
    labels = np.arange(10 * k) % k  # every split sees each class once
    logits = 1e4 * np.eye(k)[labels]  # huge logits must not overflow
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9 * k)


@pytest.mark.parametrize("n, splits", [(1000, 10), (1003, 10), (37, 1)])
def test_matches_numpy_reference(n, splits):
    logits = np.random.default_rng(n).normal(scale=3.0, size=(n, 20))
    mean, std = inception_score(logits, splits=splits)
    ref_mean, ref_std = _reference_is(logits, splits)
    assert mean == pytest.approx(ref_mean, rel=1e-10)
    assert std == pytest.approx(ref_std, rel=1e-8, abs=1e-12)
    assert 1.0 <= mean <= 20.0


def test_logits_and_probabilities_agree():
    logits = np.random.default_rng(1).normal(scale=2.0, size=(500, 15)).astype(np.float32)
    probs = scipy.special.softmax(logits.astype(np.float64), axis=1)
    from_logits = inception_score(jnp.asarray(logits), splits=5)
    from_probs = inception_score(probs, splits=5, from_logits=False)
    np.testing.assert_allclose(from_logits, from_probs, rtol=1e-10)


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.zeros(10), {}, "2-D"),
        (np.zeros((10, 3, 2)), {}, "2-D"),
        (np.zeros((5, 3)), {"splits": 10}, "N=5 < splits=10"),
        (np.zeros((5, 3)), {"splits": 0}, "positive int"),
        (np.array([[0.0, np.nan]] * 10), {}, "NaN or Inf"),
        (np.array([[0.0, np.inf]] * 10), {}, "NaN or Inf"),
        (np.full((10, 3), 0.5), {"from_logits": False}, "sum to 1"),
        (np.array([[1.5, -0.5]] * 10), {"from_logits": False}, r"\[0, 1\]"),
    ],
)
def test_bad_inputs_raise(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inception_score(x, **kwargs)
