"""Losses on 3D face parameters: weighted landmarks (thesis eq. 5.8) and 3DMM coefficients (eq. 5.5)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def deep3d_landmark_weights() -> np.ndarray:
    """``[68]`` float32 weights of thesis eq. 5.8: 20 on the nose and inner mouth, 1 elsewhere.

    The thesis adapts Deep3DFaceRecon (its ref. [3]), whose ``landmark_loss`` weights the 68 iBUG
    points (0-based) 28-30 (lower nose bridge) and 60-67 (inner lips) by 20; those indices are used here.
    """
    weights = np.ones(68, np.float32)
    weights[28:31] = 20.0
    weights[60:68] = 20.0
    return weights


@jax.jit
def landmark_loss(pred: jax.Array, target: jax.Array, weights: jax.Array | np.ndarray | None = None) -> jax.Array:
    """Weighted squared landmark distance ``1/n sum_i w_i ||q_hat_i - q_i||^2``, batch mean; thesis eq. 5.8.

    Equal to Deep3DFaceRecon's ``landmark_loss`` (sum over the batch divided by ``B * n``).

    Args:
      pred, target: ``[B, n, D]`` landmarks (``D = 3`` in the thesis, 2 for image landmarks).
      weights: ``[n]`` per-landmark weights; ``None``: all 1. Eq. 5.8 uses :func:`deep3d_landmark_weights`.

    Returns:
      Scalar float32.
    """
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"landmark_loss needs two [B, n, D] landmark batches of one shape, got {pred.shape} and {target.shape}."
        )
    if weights is None:
        weights = jnp.ones(pred.shape[1], pred.dtype)
    if np.shape(weights) != (pred.shape[1],):
        raise ValueError(
            f"landmark_loss: weights must be [n] = [{pred.shape[1]}], got {np.shape(weights)}; "
            "use deep3d_landmark_weights() for 68 iBUG landmarks."
        )
    squared = jnp.sum((pred - target) ** 2, axis=-1)
    return jnp.mean(squared * jnp.asarray(weights, pred.dtype))


@functools.partial(jax.jit, static_argnames="order")
def coefficient_loss(pred: jax.Array, target: jax.Array, order: int = 1) -> jax.Array:
    """Coefficient regression loss ``1/N ||c_hat - c_gt||_1``, batch mean; thesis eq. 5.5.

    ``order=2`` gives the squared variant ``1/N ||c_hat - c_gt||_2^2`` (not in the seed).

    Args:
      pred, target: ``[B, N]`` coefficients (``N = 239`` in thesis sec. 5.3.3).
      order: 1 (eq. 5.5) or 2.

    Returns:
      Scalar float32.
    """
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(
            f"coefficient_loss needs two [B, N] coefficient batches of one shape, got {pred.shape} and {target.shape}."
        )
    if order not in (1, 2):
        raise ValueError(f"coefficient_loss: order must be 1 (thesis eq. 5.5) or 2, got {order!r}.")
    diff = jnp.abs(pred - target)
    return jnp.mean(diff if order == 1 else diff**2)


@jax.jit
def coefficient_regularizer(coeffs: jax.Array, weights: jax.Array | np.ndarray | float = 1.0) -> jax.Array:
    """Weighted squared norm ``sum_i w_i c_i^2``, batch mean: Deep3DFaceRecon's ``reg_loss``.

    The thesis (sec. 5.3.3) drops this prior of its ref. [3] because ``c_gt`` already regularises
    ``N_R``; it is kept for fitting without ground-truth coefficients. Deep3DFaceRecon weights
    identity 1, expression 0.8, texture 1.7e-2 (its ``w_id, w_exp, w_tex``; a ``[N]`` vector here)
    and the whole term by ``w_reg = 3e-4``.

    Args:
      coeffs: ``[B, N]`` coefficients.
      weights: scalar or ``[N]`` per-coefficient weights.

    Returns:
      Scalar float32.
    """
    if coeffs.ndim != 2:
        raise ValueError(f"coefficient_regularizer needs [B, N] coefficients, got {coeffs.shape}.")
    if np.ndim(weights) not in (0, 1) or (np.ndim(weights) == 1 and np.shape(weights) != (coeffs.shape[1],)):
        raise ValueError(
            f"coefficient_regularizer: weights must be a scalar or [{coeffs.shape[1]}], got {np.shape(weights)}."
        )
    return jnp.mean(jnp.sum(jnp.asarray(weights, coeffs.dtype) * coeffs**2, axis=1))
