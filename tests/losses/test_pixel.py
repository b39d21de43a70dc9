"""L1, photometric, total variation and symmetry losses (thesis eq. 3.2, 3.7, 4.5, 4.9, 5.6, 5.10, 5.13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.losses.pixel import l1_loss, photometric_loss, symmetry_loss, total_variation


def _image(rows):
    """[H, W] nested list -> [1, H, W, 1] float32."""
    return jnp.asarray(rows, jnp.float32)[None, :, :, None]


def test_l1_is_mean_absolute_difference():
    x = _image([[0.0, 1.0], [2.0, 3.0]])
    y = _image([[1.0, 1.0], [0.0, 0.0]])
    assert float(l1_loss(x, y)) == pytest.approx((1 + 0 + 2 + 3) / 4)  # eq. 3.2


def test_masked_l1_averages_over_the_mask_only():
    x = _image([[0.0, 1.0], [2.0, 3.0]])
    y = _image([[1.0, 1.0], [0.0, 0.0]])
    mask = _image([[1.0, 0.0], [1.0, 0.0]])
    assert float(l1_loss(x, y, mask)) == pytest.approx((1 + 2) / 2)  # eq. 5.10
    changed_outside = x.at[0, :, 1].set(100.0)
    assert float(l1_loss(changed_outside, y, mask)) == pytest.approx(1.5)
    rgb_x, rgb_y = jnp.tile(x, (1, 1, 1, 3)), jnp.tile(y, (1, 1, 1, 3))
    assert float(l1_loss(rgb_x, rgb_y, mask)) == pytest.approx(1.5)  # one-channel mask, mean over channels
    assert float(l1_loss(x, y, jnp.ones_like(x))) == pytest.approx(float(l1_loss(x, y)))
    assert float(l1_loss(x, y, jnp.zeros_like(x))) == 0.0
    grad = jax.grad(l1_loss)(x, y, mask)
    np.testing.assert_allclose(grad[0, :, :, 0], [[-0.5, 0.0], [0.5, 0.0]])


def test_photometric_loss_is_masked_per_pixel_colour_distance():
    x = jnp.zeros((1, 1, 3, 2))
    y = jnp.asarray([[[[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]]]])
    assert float(photometric_loss(x, y)) == pytest.approx((5 + 1 + 10) / 3, rel=1e-6)  # eq. 5.6
    mask = jnp.asarray([[[[1.0], [1.0], [0.0]]]])
    assert float(photometric_loss(x, y, mask)) == pytest.approx(3.0, rel=1e-6)
    assert np.all(np.isfinite(jax.grad(photometric_loss)(x, x)))  # sqrt(. + 1e-8) at zero distance
    with pytest.raises(ValueError, match=r"\[B, H, W, 1\]"):
        photometric_loss(x, y, jnp.ones((1, 1, 3, 2)))


def test_total_variation_squares_neighbour_differences():
    image = _image([[0.0, 1.0], [3.0, 2.0]])
    # along W: (1-0)^2 + (2-3)^2 = 2; along H: (3-0)^2 + (2-1)^2 = 10  (eq. 3.7 / 4.5)
    assert float(total_variation(image)) == pytest.approx(12.0)
    assert float(total_variation(image, normalize=True)) == pytest.approx(12.0 / 4)  # eq. 5.13: / (W H C)
    batch = jnp.concatenate([image, 2 * image])  # per-image values 12 and 48
    assert float(total_variation(batch)) == pytest.approx(30.0)
    assert float(total_variation(jnp.full((2, 5, 4, 3), 0.7))) == 0.0


def test_total_variation_gradient_matches_finite_differences():
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 4, 5, 2)), jnp.float32)
    grad = np.asarray(jax.grad(total_variation)(x)).ravel()
    h = 1e-2  # central differences are exact for a quadratic, up to rounding
    for i in [0, 7, 19, 33]:
        e = jnp.zeros(x.size).at[i].set(h).reshape(x.shape)
        numeric = (total_variation(x + e) - total_variation(x - e)) / (2 * h)
        assert float(numeric) == pytest.approx(grad[i], abs=2e-4)
    # d/dx_i of a squared TV is 2 * sum of (x_i - neighbour) over its neighbours
    xs = np.asarray(x)[0, :, :, 0]
    expected = 2 * ((xs[0, 0] - xs[0, 1]) + (xs[0, 0] - xs[1, 0]))
    assert grad[0] == pytest.approx(expected, rel=1e-5)


def test_symmetry_loss_on_uv_maps():
    uv = _image([[0.0, 1.0, 5.0]])  # flipped: [5, 1, 0]
    assert float(symmetry_loss(uv)) == pytest.approx((5 + 0 + 5) / 3)  # eq. 4.9
    symmetric = jnp.concatenate([uv, jnp.flip(uv, axis=2)], axis=2)
    assert float(symmetry_loss(symmetric)) == 0.0
    mask = _image([[1.0, 1.0, 0.0]])
    assert float(symmetry_loss(uv, mask)) == pytest.approx(5 / 2)
    grad = jax.grad(symmetry_loss)(uv)  # both terms carry gradient: 2 * sign(x - flip x) / n
    np.testing.assert_allclose(grad[0, 0, :, 0], [-2 / 3, 0.0, 2 / 3], atol=1e-6)


def test_bad_shapes_raise_value_error():
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(x, jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="mask"):
        l1_loss(x, x, jnp.ones((1, 4, 3, 1)))
    with pytest.raises(ValueError, match=r"x\[None\]"):
        total_variation(x[0])
    with pytest.raises(ValueError, match=r"x\[None\]"):
        symmetry_loss(x[0])
