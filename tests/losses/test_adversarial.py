import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.losses import adversarial


def test_minimax_losses_match_cross_entropy_formulas():
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
    d_real, d_fake = jax.nn.sigmoid(real), jax.nn.sigmoid(fake)
    expected_d = -np.mean(np.log(d_real) + np.log(1 - d_fake))  # eq. 2.21
    assert float(adversarial.minimax_d_loss(real, fake)) == pytest.approx(expected_d, rel=1e-5)
    assert float(adversarial.minimax_g_loss(fake)) == pytest.approx(np.mean(np.log(1 - d_fake)), rel=1e-5)
    assert float(adversarial.nonsaturating_g_loss(fake)) == pytest.approx(-np.mean(np.log(d_fake)), rel=1e-5)


def test_non_saturating_loss_keeps_gradient_when_discriminator_wins():
    # eq. 2.23 vs 2.25: with D(G(z)) -> 0 the saturating gradient vanishes, the modified one does not.
    confident_fake = jnp.array([-12.0])
    saturating = jax.grad(adversarial.minimax_g_loss)(confident_fake)
    modified = jax.grad(adversarial.nonsaturating_g_loss)(confident_fake)
    assert abs(float(saturating[0])) < 1e-4 < 0.9 < abs(float(modified[0]))


def test_hinge_and_wasserstein_values():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.0])
    assert float(adversarial.hinge_d_loss(real, fake)) == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert float(adversarial.wasserstein_d_loss(real, fake)) == pytest.approx(-1.0 - 1.25)
    assert float(adversarial.wasserstein_g_loss(fake)) == pytest.approx(1.0)


@pytest.mark.parametrize("scale, expected", [(1.0, 0.0), (2.0, 1.0), (0.25, 0.5625)])
def test_gradient_penalty_of_linear_critic(scale, expected):
    w = jax.random.normal(jax.random.key(0), (4, 4, 3))
    w = scale * w / jnp.linalg.norm(w)  # ||grad|| = scale everywhere
    critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
    real, fake = jax.random.uniform(jax.random.key(1), (2, 5, 4, 4, 3))
    penalty, norms = adversarial.gradient_penalty(critic, real, fake, jax.random.key(2))
    np.testing.assert_allclose(norms, scale, rtol=1e-5)
    assert float(penalty) == pytest.approx(expected, abs=1e-5)


def test_gradient_norm_is_per_sample():
    critic = lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3))
    real, fake = jax.random.normal(jax.random.key(3), (2, 6, 3, 3, 2))
    key = jax.random.key(4)
    penalty, norms = adversarial.gradient_penalty(critic, real, fake, key)
    eps = jax.random.uniform(key, (6, 1, 1, 1))
    x_hat = eps * real + (1 - eps) * fake
    per_sample = np.linalg.norm(np.asarray(x_hat).reshape(6, -1), axis=1)
    np.testing.assert_allclose(norms, per_sample, rtol=1e-5)
    assert float(penalty) == pytest.approx(np.mean((per_sample - 1) ** 2), rel=1e-5)
    assert np.ptp(per_sample) > 0.1  # a batch-level norm would not reproduce these


@pytest.mark.parametrize("gamma", [1.0, 10.0])
def test_r1_penalty_of_linear_discriminator(gamma):
    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.normal(size=(4, 4, 3)), jnp.float32)
    discriminator = lambda x: jnp.sum(x * w, axis=(1, 2, 3))  # grad_x D = w for every sample
    real = jnp.asarray(rng.uniform(size=(5, 4, 4, 3)), jnp.float32)
    penalty, squared = adversarial.r1_penalty(discriminator, real, gamma)
    w_sq = float(jnp.sum(w**2))
    np.testing.assert_allclose(squared, w_sq, rtol=1e-5)
    assert float(penalty) == pytest.approx(gamma / 2 * w_sq, rel=1e-5)
    # d/dw (gamma/2 ||w||^2) = gamma * w: the penalty trains the discriminator's parameters
    grad_w = jax.grad(lambda v: adversarial.r1_penalty(lambda x: jnp.sum(x * v, axis=(1, 2, 3)), real, gamma)[0])(w)
    np.testing.assert_allclose(grad_w, gamma * w, rtol=1e-5)


def test_r1_penalty_is_per_sample():
    discriminator = lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3))  # grad_x D = x
    real = jnp.asarray(np.random.default_rng(7).normal(size=(6, 3, 3, 2)), jnp.float32)
    penalty, squared = adversarial.r1_penalty(discriminator, real, gamma=2.0)
    per_sample = np.sum(np.asarray(real).reshape(6, -1) ** 2, axis=1)
    np.testing.assert_allclose(squared, per_sample, rtol=1e-5)
    assert float(penalty) == pytest.approx(per_sample.mean(), rel=1e-5)
