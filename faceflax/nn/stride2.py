"""Stride-2, 4x4, ``SAME`` (transposed) convolutions as stride-1 2x2 convolutions.

XLA:CPU differentiates strided and transposed convolutions through a slow generic kernel
(``convolution-base-dilated``): on the SN-GAN standard CNN it took three quarters of a training
step, and the WGAN-GP double backward hit it again. Both layers are exactly a reshaped 2x2
stride-1 convolution on a space-to-depth view, whose gradients are ordinary stride-1
convolutions:

* conv, stride 2: ``y[m] = sum_t x[2m + t - 1] k[t]``. With ``x`` padded by one pixel each side
  and viewed as ``X[j, r] = x_pad[2j + r]``, tap ``t = 2q + r`` reads ``X[m + q, r]``: a 2x2
  VALID convolution over ``X`` with the kernel ``k`` reshaped to ``[q, r]``.
* transposed conv, stride 2 (``lax.conv_transpose`` semantics, padding 2 on the dilated input):
  output phase ``p`` of ``y[2m + p]`` reads ``x[m + w - 1 + p]`` with tap ``t = 2w + p``: one 2x2
  VALID convolution over ``x`` padded by one, with the four phases' kernels as output channels,
  then each phase's window offset and a depth-to-space.

Parameters keep the ``[4, 4, in, out]`` layout of ``flax.linen.Conv`` / ``ConvTranspose``.
"""

import jax
import jax.numpy as jnp

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv2x2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)


def _check(x: jax.Array, kernel: jax.Array) -> None:
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"stride-2 fast path needs a 4x4 kernel, got {kernel.shape}")
    if x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"stride-2 fast path needs even height and width, got {x.shape}")


def space_to_depth(x: jax.Array) -> jax.Array:
    """``[B, 2H, 2W, C] -> [B, H, W, 4C]``, channels ordered ``(row phase, col phase, C)``."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
    """``[B, H, W, 4C] -> [B, 2H, 2W, C]``, the inverse of :func:`space_to_depth`."""
    b, h, w, c4 = x.shape
    x = x.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, 2 * h, 2 * w, c4 // 4)


def conv_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Equals ``lax.conv_general_dilated(x, kernel, (2, 2), "SAME")`` for a 4x4 kernel.

    Args:
      x: ``[B, H, W, C]`` float32, ``H`` and ``W`` even.
      kernel: ``[4, 4, C, O]``.

    Returns:
      ``[B, H / 2, W / 2, O]``.
    """
    _check(x, kernel)
    c, o = kernel.shape[2:]
    blocks = space_to_depth(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
    # [t_y, t_x] = [2 q_y + r_y, 2 q_x + r_x] -> [q_y, q_x, (r_y, r_x, C)]
    k = kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c, o)
    return _conv2x2(blocks, k)


def conv_transpose_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Equals ``lax.conv_transpose(x, kernel, (2, 2), "SAME")`` (flax ``ConvTranspose``), 4x4.

    Args:
      x: ``[B, H, W, C]`` float32.
      kernel: ``[4, 4, C, O]``.

    Returns:
      ``[B, 2H, 2W, O]``.
    """
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"stride-2 fast path needs a 4x4 kernel, got {kernel.shape}")
    _, h, w, _ = x.shape
    c, o = kernel.shape[2:]
    # [t_y, t_x] = [2 w_y + p_y, 2 w_x + p_x] -> [w_y, w_x, C, (p_y, p_x, O)]
    k = kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, c, 4 * o)
    windows = _conv2x2(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), k)  # [B, H+1, W+1, 4 O]
    windows = windows.reshape(*windows.shape[:3], 2, 2, o)
    # phase (p_y, p_x) of output pixel (2m + p_y, 2n + p_x) is window (m + p_y, n + p_x)
    phases = [
        [windows[:, py : py + h, px : px + w, py, px] for px in (0, 1)] for py in (0, 1)
    ]
    rows = [jnp.stack(row, axis=3) for row in phases]  # each [B, H, W, 2(p_x), O]
    stacked = jnp.stack(rows, axis=3)  # [B, H, W, 2(p_y), 2(p_x), O]
    return depth_to_space(stacked.reshape(x.shape[0], h, w, 4 * o))
