import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.losses.vae import kl_to_standard_normal, reparameterize, vae_loss


def test_kl_closed_form_matches_monte_carlo():
    mean = jnp.array([[0.5, -1.0, 2.0]])
    log_var = jnp.array([[0.3, -0.7, 1.2]])
    z = reparameterize(jax.random.key(0), jnp.repeat(mean, 200_000, 0), jnp.repeat(log_var, 200_000, 0))
    log_q = -0.5 * jnp.sum((z - mean) ** 2 / jnp.exp(log_var) + log_var + jnp.log(2 * jnp.pi), axis=1)
    log_p = -0.5 * jnp.sum(z**2 + jnp.log(2 * jnp.pi), axis=1)
    samples = np.asarray(log_q - log_p)
    stderr = samples.std() / np.sqrt(samples.size)
    closed = float(kl_to_standard_normal(mean, log_var)[0])  # eq. 2.15
    assert abs(samples.mean() - closed) < 4 * stderr
    assert float(kl_to_standard_normal(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0


def test_reparameterization_has_requested_moments_and_gradients():
    mean, log_var = jnp.full((100_000, 1), 1.5), jnp.full((100_000, 1), np.log(4.0))
    z = np.asarray(reparameterize(jax.random.key(1), mean, log_var))
    assert z.mean() == pytest.approx(1.5, abs=0.03) and z.std() == pytest.approx(2.0, rel=0.02)
    grad = jax.grad(lambda m: jnp.sum(reparameterize(jax.random.key(1), m, log_var[:3])))(mean[:3])
    np.testing.assert_allclose(grad, 1.0)  # eq. 2.19 lets gradients reach the encoder


def test_vae_loss_is_l1_plus_weighted_kl():
    x = jnp.zeros((2, 2, 2, 1))
    x_hat = jnp.full((2, 2, 2, 1), 0.25)
    mean, log_var = jnp.ones((2, 3)), jnp.zeros((2, 3))
    loss, parts = vae_loss(x, x_hat, mean, log_var, kl_weight=0.5)
    assert float(parts["reconstruction"]) == pytest.approx(1.0)  # 4 pixels x 0.25
    assert float(parts["kl"]) == pytest.approx(1.5)
    assert float(loss) == pytest.approx(1.0 + 0.75)
