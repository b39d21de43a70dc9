"""SSIM loss, thesis eq. 5.11, with mask and OHEM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from faceflax.losses.structural import ssim_loss
from faceflax.metrics.image import ssim_map


def _pair(key, shape=(2, 16, 16, 3)):
    rng = np.random.default_rng(key)
    x = rng.uniform(size=shape)
    y = np.clip(x + rng.normal(0, 0.2, shape), 0, 1)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def _mask(shape=(2, 16, 16, 1)):
    return jnp.zeros(shape).at[:, 3:13, 2:11].set(1.0)


def test_unmasked_loss_is_negative_mean_ssim_map():
    x, y = _pair(0)
    assert float(ssim_loss(x, x)) == pytest.approx(-1.0, abs=1e-6)
    assert float(ssim_loss(x, y)) == pytest.approx(-float(jnp.mean(ssim_map(x, y, padding="same"))), abs=1e-6)


def test_masked_loss_matches_skimage_map_of_masked_images():
    x, y = _pair(2)
    mask = _mask()
    expected = []
    for i in range(2):
        m = np.asarray(mask[i], np.float64)
        a, b = np.asarray(x[i], np.float64) * m, np.asarray(y[i], np.float64) * m
        _, full = structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=-1,
            data_range=1.0,
            full=True,
        )
        expected.append((np.broadcast_to(m, full.shape) * full).sum())
    expected = -sum(expected) / (3 * float(mask.sum()))  # eq. 5.11, sums over pixels and channels
    assert float(ssim_loss(x, y, mask)) == pytest.approx(expected, abs=1e-5)


def test_mask_restricts_the_loss():
    x, y = _pair(4)
    mask = _mask()
    outside = (1 - mask) * np.random.default_rng(9).uniform(size=x.shape).astype(np.float32)
    assert float(ssim_loss(x + outside, y, mask)) == pytest.approx(float(ssim_loss(x, y, mask)), abs=1e-7)
    grad = jax.grad(ssim_loss)(x, y, mask)
    assert float(jnp.abs(grad * (1 - mask)).max()) == 0.0 and float(jnp.abs(grad * mask).max()) > 0


def test_gradient_matches_finite_differences():
    x, y = _pair(6, (1, 12, 13, 2))
    mask = jnp.ones((1, 12, 13, 1)).at[:, :, :2].set(0.0)
    direction = jnp.asarray(np.random.default_rng(8).normal(size=x.shape), jnp.float32)
    loss = jax.jit(lambda t: ssim_loss(x + t * direction, y, mask))
    analytic = float(jnp.sum(jax.grad(ssim_loss)(x, y, mask) * direction))
    h = 3e-3
    numeric = (float(loss(h)) - float(loss(-h))) / (2 * h)
    assert numeric == pytest.approx(analytic, rel=1e-3)  # measured 1.1e-4 (float32 central difference)


def test_ohem_keeps_the_least_similar_masked_entries():
    x, y = _pair(10)
    mask = _mask()
    maps = np.asarray(ssim_map(x * mask, y * mask, padding="same"))
    inside = np.broadcast_to(np.asarray(mask), maps.shape) > 0
    k = round(0.1 * inside[0].sum())  # 27 of 270 entries per image
    hardest = [np.sort(maps[i][inside[i]])[:k] for i in range(2)]
    assert float(ssim_loss(x, y, mask, keep_ratio=0.1)) == pytest.approx(-np.concatenate(hardest).mean(), abs=1e-6)
    assert float(ssim_loss(x, y, mask, keep_ratio=0.1)) > float(ssim_loss(x, y, mask))


def test_bad_arguments_raise_value_error():
    x, _ = _pair(0)
    with pytest.raises(ValueError, match="mask"):
        ssim_loss(x, x, jnp.ones((2, 16, 16, 2)))
    with pytest.raises(ValueError, match="keep_ratio"):
        ssim_loss(x, x, keep_ratio=2.0)
    with pytest.raises(ValueError, match="same shape"):
        ssim_loss(x, x[:1])
