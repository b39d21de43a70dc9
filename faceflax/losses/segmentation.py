"""Segmentation losses on ``[B, H, W, C]`` maps: Dice and binary cross-entropy with OHEM."""

import functools

import jax
import jax.numpy as jnp

from faceflax.losses.ohem import hardest_mean
from faceflax.metrics.image import broadcast_mask, check_image_pair


@jax.jit
def dice_loss(probs: jax.Array, targets: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Dice loss summed over classes, thesis eq. 3.3 (eq. 5.3 is its one-class case).

    Per image and class ``c``: ``1 - (2 sum_xy p_c t_c + eps) / (sum_xy p_c + sum_xy t_c + eps)``;
    summed over classes, averaged over the batch. ``eps`` makes a class absent from both maps cost 0.

    Args:
      probs: ``[B, H, W, C]`` predicted soft masks in ``[0, 1]`` (sigmoid or softmax outputs).
      targets: ``[B, H, W, C]`` ground-truth masks (one-hot or soft).
      eps: smoothing added to numerator and denominator.

    Returns:
      Scalar float32 in ``[0, C]``.
    """
    check_image_pair(probs, targets, "dice_loss")
    intersection = jnp.sum(probs * targets, axis=(1, 2))
    total = jnp.sum(probs, axis=(1, 2)) + jnp.sum(targets, axis=(1, 2))
    per_class = 1.0 - (2.0 * intersection + eps) / (total + eps)
    return jnp.mean(jnp.sum(per_class, axis=-1))


@functools.partial(jax.jit, static_argnames="keep_ratio")
def binary_cross_entropy(
    logits: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    keep_ratio: float = 1.0,
) -> jax.Array:
    """Pixel-wise binary cross-entropy, thesis eq. 4.4 / 5.4, with OHEM for ``keep_ratio < 1``.

    ``-(t log m + (1 - t) log(1 - m))`` with ``m = sigmoid(logits)``, computed stably as
    ``softplus(logits) - t * logits``, averaged over pixels (eq. 5.4's ``1/(WH)``) and the batch.
    With ``keep_ratio < 1`` only each image's hardest ``keep_ratio`` of its (masked) pixels count
    (online hard example mining, sec. 5.3.2; see :func:`faceflax.losses.ohem.hardest_mean`).

    Args:
      logits: ``[B, H, W, C]`` pre-sigmoid predictions (``C = 1`` for a face mask).
      targets: ``[B, H, W, C]`` targets in ``[0, 1]``.
      mask: optional ``[B, H, W, 1]`` or ``[B, H, W, C]`` weights.
      keep_ratio: static fraction of pixels kept per image, in ``(0, 1]``.

    Returns:
      Scalar float32.
    """
    check_image_pair(logits, targets, "binary_cross_entropy")
    per_pixel = jax.nn.softplus(logits) - targets * logits
    return hardest_mean(per_pixel, keep_ratio, broadcast_mask(mask, logits.shape, "binary_cross_entropy"))
