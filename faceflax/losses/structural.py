"""SSIM loss, thesis eq. 5.11, on the SSIM map of :mod:`faceflax.metrics.image`."""

import functools

import jax

from faceflax.losses.ohem import hardest_mean
from faceflax.metrics.image import broadcast_mask, check_image_pair, ssim_map


@functools.partial(jax.jit, static_argnames="keep_ratio")
def ssim_loss(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None = None,
    keep_ratio: float = 1.0,
    data_range: float = 1.0,
) -> jax.Array:
    """Negative masked mean SSIM ``-sum M * SSIM(x * M, y * M) / sum M``, thesis eq. 5.11.

    The SSIM map is :func:`faceflax.metrics.image.ssim_map` with ``padding="same"`` (mirrored
    border), so it lines up with the mask pixel for pixel; the seed erodes its mask (``M_m`` bar)
    to keep window edge effects out, which is left to the caller. With ``keep_ratio < 1`` only each
    image's ``keep_ratio`` least similar masked entries count (OHEM "as in eq. 5.4", sec. 5.3.4).
    Sums run over pixels and channels. Without a mask it is ``-mean(SSIM(x, y))``.

    Args:
      x, y: ``[B, H, W, C]`` float images (prediction ``I_hat`` and target ``I_p``), ``H, W >= 11``.
      mask: optional ``[B, H, W, 1]`` or ``[B, H, W, C]`` mask ``M``.
      keep_ratio: static OHEM fraction in ``(0, 1]``.
      data_range: value range of the images.

    Returns:
      Scalar float32 in ``[-1, 1]``; -1 for identical images.
    """
    check_image_pair(x, y, "ssim_loss")
    weights = broadcast_mask(mask, x.shape, "ssim_loss")
    if mask is not None:
        x, y = x * weights, y * weights
    dissimilarity = -ssim_map(x, y, data_range, padding="same")
    return hardest_mean(dissimilarity, keep_ratio, weights)
