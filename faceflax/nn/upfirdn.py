"""Upsample, FIR-filter, downsample (``upfirdn2d``) and StyleGAN2's blur / resampling built on it.

Karras et al. 2020 ("Analyzing and Improving the Image Quality of StyleGAN", the generator G of
MvInvert eq. 3) resample with the separable ``[1, 3, 3, 1]`` binomial filter. ``upfirdn2d`` follows
the semantics of NVIDIA's and rosinality's ``upfirdn2d`` op (NHWC here): insert ``up - 1`` zeros after
every pixel, pad by ``pad = (before, after)`` on both spatial axes (negative values crop), convolve
(a true convolution, i.e. correlation with the flipped kernel) per channel, keep every ``down``-th
pixel.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.nn.stride2 import NHWC_DIMS

BLUR_KERNEL = (1, 3, 3, 1)


def make_kernel(taps: Sequence[float] = BLUR_KERNEL) -> np.ndarray:
    """The 2-D FIR kernel ``[k, k]`` (outer product of 1-D ``taps``, or ``taps`` if 2-D), summing to 1."""
    kernel = np.asarray(taps, np.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    if kernel.ndim != 2:
        raise ValueError(f"FIR taps must be 1-D or 2-D, got shape {kernel.shape}")
    return kernel / kernel.sum()


def upfirdn2d(
    x: jax.Array, kernel: jax.Array | np.ndarray, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> jax.Array:
    """Upsample by zero insertion, pad, FIR-filter and downsample, per channel.

    Args:
      x: ``[B, H, W, C]`` float32.
      kernel: ``[kh, kw]`` filter taps.
      up, down: integer factors (static).
      pad: ``(before, after)`` padding of both spatial axes after upsampling (static; may be negative).

    Returns:
      ``[B, (H * up + pad[0] + pad[1] - kh) // down + 1, (W * up + ... - kw) // down + 1, C]``.
    """
    kernel = jnp.asarray(kernel, x.dtype)
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d needs a 2-D kernel [kh, kw], got shape {kernel.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be positive integers, got up={up}, down={down}")
    p0, p1 = pad
    # Zero insertion leaves up - 1 zeros after the last pixel too, hence the extra high padding.
    axis = (p0, p1 + up - 1, up - 1)
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), axis, axis, (0, 0, 0)))
    channels = x.shape[-1]
    taps = jnp.tile(kernel[::-1, ::-1, None, None], (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(
        x, taps, (down, down), "VALID", dimension_numbers=NHWC_DIMS, feature_group_count=channels
    )


def blur(
    x: jax.Array, pad: tuple[int, int], taps: Sequence[float] = BLUR_KERNEL, upsample_factor: int = 1
) -> jax.Array:
    """rosinality's ``Blur``: ``upfirdn2d`` with the normalised kernel times ``upsample_factor**2``.

    The gain restores the energy of a preceding stride-``upsample_factor`` transposed convolution.
    x: ``[B, H, W, C]`` -> ``[B, H + pad[0] + pad[1] - k + 1, W + ..., C]``.
    """
    return upfirdn2d(x, make_kernel(taps) * upsample_factor**2, pad=pad)


def upsample(x: jax.Array, factor: int = 2, taps: Sequence[float] = BLUR_KERNEL) -> jax.Array:
    """FIR upsampling (rosinality's ``Upsample``, the ToRGB skip path): ``[B, H, W, C] -> [B, fH, fW, C]``."""
    p = len(taps) - factor
    return upfirdn2d(x, make_kernel(taps) * factor**2, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample(x: jax.Array, factor: int = 2, taps: Sequence[float] = BLUR_KERNEL) -> jax.Array:
    """FIR downsampling (rosinality's ``Downsample``): ``[B, H, W, C] -> [B, H / f, W / f, C]``."""
    p = len(taps) - factor
    return upfirdn2d(x, make_kernel(taps), down=factor, pad=((p + 1) // 2, p // 2))
