"""Adversarial losses on discriminator logits / critic values (thesis sec. 2.1.2 and 2.2).

All take ``[B]`` or ``[B, 1]`` float32 discriminator outputs and return a scalar batch mean.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def minimax_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Cross-entropy discriminator loss, thesis eq. 2.21 (``D = sigmoid(logits)``)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def minimax_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Saturating generator loss ``mean log(1 - D(G(z)))``, thesis eq. 2.22."""
    return jnp.mean(-jax.nn.softplus(fake_logits))


def nonsaturating_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss ``-mean log D(G(z))``, thesis eq. 2.24."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def wasserstein_d_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """Critic loss ``E[D(fake)] - E[D(real)]``: the negated objective of thesis eq. 2.44/2.45."""
    return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wasserstein_g_loss(fake_scores: jax.Array) -> jax.Array:
    """Generator loss ``-E[D(G(z))]``, thesis eq. 2.45 and Algorithm 4."""
    return -jnp.mean(fake_scores)


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Hinge discriminator loss (Miyato et al. 2018; thesis eq. 3.14)."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Hinge generator loss ``-E[D(G(z))]`` (Miyato et al. 2018; thesis eq. 3.14)."""
    return -jnp.mean(fake_logits)


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """WGAN-GP penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates, eq. 2.47-2.48.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample. The norm is
    taken per sample over all of its pixels; the critic must treat samples independently (no batch
    normalisation), which is what makes the gradient of the summed scores per-sample exact.

    Args:
      critic: maps ``[B, ...]`` inputs to ``[B]`` or ``[B, 1]`` scores.
      real, fake: ``[B, ...]`` float32 batches of the same shape.
      key: PRNG key for ``eps``.

    Returns:
      ``(penalty, grad_norms)``: the scalar penalty and the ``[B]`` per-sample gradient norms.
    """
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
    interpolates = eps * real + (1.0 - eps) * fake  # eq. 2.48
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(interpolates)
    norms = jnp.sqrt(jnp.sum(grads**2, axis=tuple(range(1, grads.ndim))) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2), norms


def r1_penalty(
    discriminator: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    gamma: float = 10.0,
) -> tuple[jax.Array, jax.Array]:
    """R1 gradient penalty on real data ``gamma / 2 * E||grad_x D(x)||_2^2`` (Mescheder et al. 2018).

    Not in the seeds; StyleGAN2, whose FFHQ generator MvInvert inverts, trains its discriminator
    with it (``gamma = 10`` for FFHQ). Same calling convention as :func:`gradient_penalty`: the squared norm
    is per sample, so the discriminator must treat samples independently. Differentiate the result
    with respect to the discriminator's parameters by closing ``discriminator`` over them.

    Args:
      discriminator: maps ``[B, ...]`` inputs to ``[B]`` or ``[B, 1]`` logits.
      real: ``[B, ...]`` float32 batch of real samples.
      gamma: penalty weight.

    Returns:
      ``(penalty, squared_norms)``: the scalar penalty and the ``[B]`` per-sample ``||grad||^2``.
    """
    grads = jax.grad(lambda x: jnp.sum(discriminator(x)))(real)
    squared_norms = jnp.sum(grads**2, axis=tuple(range(1, grads.ndim)))
    return 0.5 * gamma * jnp.mean(squared_norms), squared_norms
