"""Perceptual and identity losses (thesis eq. 3.5, 3.11, 4.10, 5.7; MvInvert eq. 8-9)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.losses.features import identity_cosine_loss, identity_l1_loss, perceptual_loss


def _named_features(images):
    """A stand-in feature network: two 'layers' of different sizes."""
    pooled = images.reshape(images.shape[0], images.shape[1] // 2, 2, images.shape[2] // 2, 2, -1).mean(axis=(2, 4))
    return {"conv1": images, "conv2": 2.0 * pooled}


def test_perceptual_l1_and_l2_on_hand_computed_layers():
    x, y = jnp.zeros((2, 4, 4, 3)), jnp.ones((2, 4, 4, 3))
    # conv1: |0 - 1| = 1 per element; conv2: |0 - 2| = 2 per element   (eq. 3.5, element mean)
    assert float(perceptual_loss(_named_features, x, y)) == pytest.approx(1.0 + 2.0)
    weights = {"conv1": 1.0, "conv2": 0.5}
    assert float(perceptual_loss(_named_features, x, y, weights)) == pytest.approx(1.0 + 0.5 * 2.0)
    # MvInvert eq. 8: ||diff||_2 / (HWC): conv1 sqrt(48) / 48, conv2 sqrt(12 * 4) / 12
    expected_l2 = np.sqrt(48) / 48 + 0.5 * np.sqrt(48) / 12
    assert float(perceptual_loss(_named_features, x, y, weights, distance="l2")) == pytest.approx(expected_l2, rel=1e-6)
    assert float(perceptual_loss(_named_features, x, y, {"conv2": 1.0})) == pytest.approx(2.0)  # chosen layers only


def test_perceptual_accepts_sequences_and_is_differentiable():
    features = lambda images: [images, images[:, ::2, ::2]]
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.uniform(size=(2, 4, 4, 3)), jnp.float32) for _ in range(2))
    expected = np.abs(np.asarray(x - y)).mean() + 3.0 * np.abs(np.asarray(x - y))[:, ::2, ::2].mean()
    assert float(perceptual_loss(features, x, y, [1.0, 3.0])) == pytest.approx(expected, rel=1e-6)
    for distance in ("l1", "l2"):
        grad = jax.grad(perceptual_loss, argnums=1)(features, x, y, None, distance)
        assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0
    assert np.all(np.isfinite(jax.grad(perceptual_loss, argnums=1)(features, x, x, None, "l2")))


def test_identity_cosine_loss():
    a = jnp.asarray([[1.0, 0.0], [1.0, 0.0], [2.0, 2.0], [1.0, 1.0]])
    b = jnp.asarray([[0.0, 3.0], [1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    # 1 - cos: 1, 1 - 1/sqrt(2), 0, 2   (eq. 5.7)
    assert float(identity_cosine_loss(a, b)) == pytest.approx((1 + (1 - 1 / np.sqrt(2)) + 0 + 2) / 4, rel=1e-6)
    rng = np.random.default_rng(2)
    reference = jnp.asarray(rng.normal(size=(3, 1, 8)), jnp.float32)  # MvInvert eq. 9: K = 4 renders per input
    renders = jnp.asarray(rng.normal(size=(3, 4, 8)), jnp.float32)
    r, q = np.asarray(reference), np.asarray(renders)
    cos = (r * q).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(q, axis=-1))
    assert float(identity_cosine_loss(renders, reference)) == pytest.approx(np.mean(1 - cos), rel=1e-5)
    grad = jax.grad(identity_cosine_loss)(renders, reference)
    assert np.all(np.isfinite(grad))


def test_identity_l1_mean_and_sum():
    f = jnp.asarray([[1.0, -2.0, 0.0, 3.0]])
    g = jnp.zeros((1, 4))
    assert float(identity_l1_loss(f, g)) == pytest.approx(6 / 4)  # eq. 3.11
    assert float(identity_l1_loss(f, g, reduction="sum")) == pytest.approx(6.0)  # eq. 4.10


def test_bad_arguments_raise_value_error():
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="conv3"):
        perceptual_loss(_named_features, x, x, {"conv3": 1.0})
    with pytest.raises(ValueError, match="distance"):
        perceptual_loss(_named_features, x, x, distance="cosine")
    with pytest.raises(ValueError, match="as many layer_weights"):
        perceptual_loss(lambda i: [i, i], x, x, [1.0])
    with pytest.raises(ValueError, match="layer: weight"):
        perceptual_loss(_named_features, x, x, [1.0, 1.0])
    with pytest.raises(ValueError, match="same face recognition"):
        identity_cosine_loss(jnp.zeros((2, 8)), jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match="reshape"):
        identity_l1_loss(jnp.zeros((2, 8, 1)), jnp.zeros((2, 8, 1)))
    with pytest.raises(ValueError, match="reduction"):
        identity_l1_loss(jnp.zeros((2, 8)), jnp.zeros((2, 8)), reduction="max")
