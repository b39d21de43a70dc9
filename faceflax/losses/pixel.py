"""Pixel losses on NHWC images: L1 and photometric reconstruction, total variation, UV symmetry.

Masks are ``[B, H, W, 1]`` or ``[B, H, W, C]`` weights; a masked loss is normalised by the mask's
total weight over the batch (summed over channels too), so an all-ones mask gives the unmasked loss.
"""

import functools

import jax
import jax.numpy as jnp

from faceflax.metrics.image import broadcast_mask, check_image_pair


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), jnp.finfo(values.dtype).tiny)


@jax.jit
def l1_loss(x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean absolute difference ``1/(WHC) sum |x - y|`` over the batch, thesis eq. 3.2.

    With a mask it is ``sum M |x - y| / sum M``: eq. 5.10 (face region) and 5.12 (background), with
    the sums taken over channels as well, so that eq. 3.2 is the all-ones case (eq. 5.10 written with
    a one-channel ``M`` is ``C`` times this value).

    Args:
      x, y: ``[B, H, W, C]`` float images.
      mask: optional ``[B, H, W, 1]`` or ``[B, H, W, C]`` weights.

    Returns:
      Scalar float32; 0 for an all-zero mask.
    """
    check_image_pair(x, y, "l1_loss")
    return _weighted_mean(jnp.abs(x - y), broadcast_mask(mask, x.shape, "l1_loss"))


@jax.jit
def photometric_loss(x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Per-pixel colour distance ``sum_p M_p ||x_p - y_p||_2 / sum_p M_p``, thesis eq. 5.6, MvInvert eq. 7.

    As Deep3DFaceRecon's ``photo_loss`` (whose weight MvInvert eq. 12 adopts): the L2 norm is over
    the channels of each pixel; ``1e-8`` under the square root keeps its gradient finite at 0.

    Args:
      x, y: ``[B, H, W, C]`` float images.
      mask: optional ``[B, H, W, 1]`` weights (``None``: every pixel).

    Returns:
      Scalar float32; 0 for an all-zero mask.
    """
    check_image_pair(x, y, "photometric_loss")
    if mask is not None and mask.shape[-1:] != (1,):
        raise ValueError(f"photometric_loss weights pixels: pass a [B, H, W, 1] mask, got {mask.shape}.")
    distance = jnp.sqrt(jnp.sum((x - y) ** 2, axis=-1, keepdims=True) + 1e-8)
    return _weighted_mean(distance, broadcast_mask(mask, distance.shape, "photometric_loss"))


@functools.partial(jax.jit, static_argnames="normalize")
def total_variation(images: jax.Array, normalize: bool = False) -> jax.Array:
    """Squared (L2) total variation, batch mean of per-image values.

    ``TV(I) = sum (I[x+1, y] - I[x, y])^2 + sum (I[x, y+1] - I[x, y])^2`` over all pixels and
    channels: thesis eq. 3.7 and 4.5 (``normalize=False``). Eq. 5.13 divides it by ``W H C``
    (``normalize=True``). All three seed equations square the differences, so no L1 form is offered.

    Args:
      images: ``[B, H, W, C]`` float images.
      normalize: divide by ``W H C`` (eq. 5.13).

    Returns:
      Scalar float32.
    """
    if images.ndim != 4:
        raise ValueError(f"total_variation needs [B, H, W, C] images, got {images.shape}; add axes with x[None].")
    dy = jnp.diff(images, axis=1)
    dx = jnp.diff(images, axis=2)
    per_image = jnp.sum(dx**2, axis=(1, 2, 3)) + jnp.sum(dy**2, axis=(1, 2, 3))
    if normalize:
        per_image = per_image / (images.shape[1] * images.shape[2] * images.shape[3])
    return jnp.mean(per_image)


@jax.jit
def symmetry_loss(uv: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Left-right symmetry ``||UV - FlipLR(UV)||_1`` of UV maps, thesis eq. 4.9.

    Normalised as :func:`l1_loss` (mean over elements); the flip is along the width axis. Gradients
    flow through both terms, as in the seed.

    Args:
      uv: ``[B, H, W, C]`` UV maps whose width axis is the face's left-right axis.
      mask: optional ``[B, H, W, 1]`` or ``[B, H, W, C]`` weights, e.g. the valid UV region.

    Returns:
      Scalar float32.
    """
    if uv.ndim != 4:
        raise ValueError(f"symmetry_loss needs [B, H, W, C] UV maps, got {uv.shape}; add axes with x[None].")
    return l1_loss(uv, jnp.flip(uv, axis=2), mask)
