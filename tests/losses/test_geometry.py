"""Landmark (thesis eq. 5.8) and coefficient (eq. 5.5) losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.losses.geometry import (
    coefficient_loss,
    coefficient_regularizer,
    deep3d_landmark_weights,
    landmark_loss,
)


def test_deep3d_weights_mark_nose_and_inner_mouth():
    w = deep3d_landmark_weights()
    assert w.shape == (68,) and set(np.flatnonzero(w == 20)) == {28, 29, 30, *range(60, 68)}
    assert w.sum() == 57 + 11 * 20


def test_landmark_loss_hand_computed():
    pred = jnp.asarray([[[3.0, 4.0], [1.0, 1.0]]])
    target = jnp.asarray([[[0.0, 0.0], [1.0, 0.0]]])
    # squared distances 25 and 1, weights 20 and 1, n = 2:  (500 + 1) / 2   (eq. 5.8)
    assert float(landmark_loss(pred, target, jnp.asarray([20.0, 1.0]))) == pytest.approx(250.5)
    assert float(landmark_loss(pred, target)) == pytest.approx(13.0)


def test_landmark_loss_equals_deep3dfacerecon_formula():
    rng = np.random.default_rng(0)
    pred, target = (jnp.asarray(rng.normal(size=(4, 68, 3)), jnp.float32) for _ in range(2))
    w = deep3d_landmark_weights()
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    reference = np.sum(np.sum((p - t) ** 2, axis=-1) * w[None]) / (4 * 68)  # Deep3DFaceRecon landmark_loss
    assert float(landmark_loss(pred, target, w)) == pytest.approx(reference, rel=1e-5)
    grad = jax.grad(landmark_loss)(pred, target, w)
    np.testing.assert_allclose(grad, 2 * (p - t) * w[None, :, None] / (4 * 68), rtol=1e-5, atol=1e-7)


def test_coefficient_losses_hand_computed():
    pred = jnp.asarray([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    target = jnp.zeros((2, 3))
    assert float(coefficient_loss(pred, target)) == pytest.approx((1 + 2 + 0.5) / 6)  # eq. 5.5, batch mean
    assert float(coefficient_loss(pred, target, order=2)) == pytest.approx((1 + 4 + 0.25) / 6)
    weights = jnp.asarray([1.0, 0.8, 1.7e-2])
    assert float(coefficient_regularizer(pred, weights)) == pytest.approx((1 + 0.8 * 4 + 1.7e-2 * 0.25) / 2)
    assert float(coefficient_regularizer(pred)) == pytest.approx(5.25 / 2)
    assert np.all(np.isfinite(jax.grad(coefficient_loss)(pred, target)))


def test_bad_shapes_raise_value_error():
    lm = jnp.zeros((2, 68, 2))
    with pytest.raises(ValueError, match="deep3d_landmark_weights"):
        landmark_loss(lm, lm, jnp.ones(67))
    with pytest.raises(ValueError, match=r"\[B, n, D\]"):
        landmark_loss(lm, lm[..., :1])
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        coefficient_loss(jnp.zeros((2, 239)), jnp.zeros((2, 238)))
    with pytest.raises(ValueError, match="order"):
        coefficient_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), order=3)
    with pytest.raises(ValueError, match="weights"):
        coefficient_regularizer(jnp.zeros((2, 3)), jnp.ones(4))
