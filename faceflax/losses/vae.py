"""Variational auto-encoder objective (thesis sec. 2.1.1)."""

import jax
import jax.numpy as jnp


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``z = sigma * eps + mu`` with ``eps ~ N(0, I)``, thesis eq. 2.19; shapes ``[B, K]``."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``KL(N(mu, diag sigma^2) || N(0, I))`` per sample, thesis eq. 2.15.

    Args:
      mean, log_var: ``[B, K]`` float32 encoder outputs (``log_var = log sigma^2``).

    Returns:
      ``[B]`` float32 ``0.5 * sum_k (sigma_k^2 + mu_k^2 - log sigma_k^2 - 1)``.
    """
    return 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - log_var - 1.0, axis=-1)


def vae_loss(
    x: jax.Array, x_hat: jax.Array, mean: jax.Array, log_var: jax.Array, kl_weight: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L1 reconstruction plus weighted KL, thesis eq. 2.18, averaged over the batch.

    Args:
      x, x_hat: ``[B, H, W, C]`` images and reconstructions.
      mean, log_var: ``[B, K]`` posterior parameters.
      kl_weight: ``C`` of eq. 2.18.
    """
    reconstruction = jnp.mean(jnp.sum(jnp.abs(x_hat - x), axis=tuple(range(1, x.ndim))))
    kl = jnp.mean(kl_to_standard_normal(mean, log_var))
    return reconstruction + kl_weight * kl, {"reconstruction": reconstruction, "kl": kl}
