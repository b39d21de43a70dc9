"""Online hard example mining over pixels (Shrivastava et al. 2016; thesis eq. 5.4 and 5.11)."""

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames="keep_ratio")
def hardest_mean(losses: jax.Array, keep_ratio: float, weights: jax.Array | None = None) -> jax.Array:
    """Mean of each sample's hardest ``keep_ratio`` of its elements (OHEM, thesis eq. 5.4 / 5.11).

    Per sample, the ``k = max(1, round(keep_ratio * n))`` largest entries among its ``n`` entries
    with positive weight are kept (ties broken by position, so exactly ``k`` are kept); the result is
    the weighted mean of the kept entries over the whole batch. The selection is a constant of the
    forward pass: gradients reach the kept entries only. ``keep_ratio = 1`` is the plain weighted mean.

    The thesis applies OHEM without giving a ratio; CelebAMask-HQ face parsers (face-parsing.PyTorch,
    BiSeNet) keep at least 1/16 of the pixels, a reasonable starting point.

    Args:
      losses: ``[B, ...]`` per-element losses, larger = harder.
      keep_ratio: static fraction in ``(0, 1]``.
      weights: optional ``[B, ...]`` non-negative weights (a mask); zero-weight entries are never kept.

    Returns:
      Scalar float32; 0 when no entry has positive weight.
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}; use 1.0 to keep every element.")
    if weights is None:
        weights = jnp.ones_like(losses)
    if weights.shape != losses.shape:
        raise ValueError(f"hardest_mean: weights {weights.shape} must have the shape of losses {losses.shape}.")
    flat_losses = losses.reshape(losses.shape[0], -1)
    flat_weights = weights.reshape(losses.shape[0], -1).astype(flat_losses.dtype)
    if keep_ratio < 1.0:
        valid = flat_weights > 0
        hardness = jnp.where(valid, jax.lax.stop_gradient(flat_losses), -jnp.inf)
        rank = jnp.argsort(jnp.argsort(-hardness, axis=1, stable=True), axis=1, stable=True)
        count = jnp.sum(valid, axis=1, keepdims=True)
        keep = jnp.where(count > 0, jnp.maximum(1, jnp.round(keep_ratio * count)), 0)
        flat_weights = jnp.where(rank < keep, flat_weights, 0.0)
    total = jnp.sum(flat_weights)
    return jnp.sum(flat_weights * flat_losses) / jnp.maximum(total, jnp.finfo(flat_losses.dtype).tiny)
