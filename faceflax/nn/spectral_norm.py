"""Spectral normalisation as a pure function with explicit power-iteration state.

Thesis sec. 2.2.3 (Miyato et al. 2018): a layer ``W`` is divided by its largest singular value
``sigma(W)``, estimated by power iteration (eq. 2.59a/b) and read off as ``u^T W v`` (eq. 2.61).
One iteration runs per update and ``u`` is carried across steps, so the estimate converges while
the weights train. ``u`` lives in the ``spectral_stats`` collection, never in ``batch_stats``.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

SPECTRAL_STATS = "spectral_stats"


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x), eps * eps))


def as_matrix(kernel: jax.Array) -> jax.Array:
    """Views a dense ``[in, out]`` or conv ``[kh, kw, in, out]`` kernel as ``W: [out, in_total]``."""
    return kernel.reshape(-1, kernel.shape[-1]).T


def spectral_normalize(
    kernel: jax.Array, u: jax.Array, n_iterations: int = 1
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Divides a kernel by its spectral norm estimated by power iteration.

    Args:
      kernel: ``[..., out]`` float32 dense or conv kernel (last axis = output features).
      u: ``[out]`` float32 left singular vector estimate from the previous update.
      n_iterations: power iterations to run (thesis: one per update, eq. 2.59).

    Returns:
      ``(kernel / sigma, u_new, sigma)``; ``u`` and ``v`` are constants for the gradient, as in
      SN-GAN, so gradients flow through ``W`` in both the numerator and ``sigma = u^T W v``.
    """
    w = as_matrix(kernel)
    u = jax.lax.stop_gradient(u)
    for _ in range(n_iterations):
        v = _l2_normalize(w.T @ u)  # eq. 2.59a
        u = _l2_normalize(w @ v)  # eq. 2.59b
    u = jax.lax.stop_gradient(u)
    v = jax.lax.stop_gradient(v)
    sigma = u @ w @ v  # eq. 2.61
    return kernel / sigma, u, sigma


class SpectralKernel(nn.Module):
    """Declares a kernel and its ``u`` vector; returns the kernel divided by its spectral norm."""

    shape: Sequence[int]
    kernel_init: nn.initializers.Initializer

    @nn.compact
    def __call__(self, update_stats: bool) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, tuple(self.shape))
        u = self.variable(
            SPECTRAL_STATS,
            "u",
            lambda: _l2_normalize(jax.random.normal(self.make_rng("params"), (self.shape[-1],))),
        )
        normalized, u_new, _ = spectral_normalize(kernel, u.value)
        if update_stats and not self.is_initializing():
            u.value = u_new
        return normalized
