"""Full-reference image metrics: SSIM (Wang et al. 2004) and PSNR, as in thesis Tables 4.2 and 5.1.

Images are ``[B, H, W, C]`` float in ``[0, data_range]``; every function returns one value per image
(``[B]``); the table numbers are their ``.mean()``. Both agree with scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
channel_axis=-1, data_range=...)`` and ``peak_signal_noise_ratio`` applied image by image.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scipy's truncation at 3.5 sigma, as scikit-image
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def check_image_pair(x: jax.Array, y: jax.Array, name: str) -> None:
    """Raises ``ValueError`` unless ``x`` and ``y`` are NHWC batches of one shape."""
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"{name} needs two [B, H, W, C] batches of the same shape, got {x.shape} and {y.shape}; "
            "add a batch axis with x[None] or a channel axis with x[..., None]."
        )


def broadcast_mask(mask: jax.Array | None, shape: tuple[int, ...], name: str) -> jax.Array:
    """A ``[B, H, W, 1]`` or ``[B, H, W, C]`` mask (``None``: all ones) broadcast to ``shape``."""
    if mask is None:
        return jnp.ones(shape, jnp.float32)
    if mask.ndim != 4 or mask.shape[:3] != shape[:3] or mask.shape[3] not in (1, shape[3]):
        raise ValueError(
            f"{name}: mask must be [B, H, W, 1] or [B, H, W, C] for images {shape}, got {mask.shape}; "
            "pass mask[..., None] for a [B, H, W] mask."
        )
    return jnp.broadcast_to(mask.astype(jnp.float32), shape)


def _gaussian_taps() -> np.ndarray:
    """The normalised 11-tap Gaussian of scipy.ndimage (sigma 1.5, truncated at 3.5 sigma), float64."""
    t = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _window_matrix(size: int, dtype) -> jax.Array:
    """``[size - 10, size]`` banded matrix whose rows are the Gaussian window at each valid position."""
    taps = _gaussian_taps()
    rows = np.arange(size - 2 * SSIM_RADIUS)
    matrix = np.zeros((rows.size, size))
    matrix[rows[:, None], rows[:, None] + np.arange(taps.size)] = taps
    return jnp.asarray(matrix, dtype)


def _blur_valid(images: jax.Array) -> jax.Array:
    """Separable 11x11 Gaussian window per channel, valid positions only: ``[B, H-10, W-10, C]``.

    Two banded matrix products: they compile (with their gradients) and run faster on CPU than
    depthwise convolutions or shifted slices; ``HIGHEST`` precision keeps GPUs off TF32.
    """
    _, h, w, _ = images.shape
    hp = jax.lax.Precision.HIGHEST
    out = jnp.einsum("ph,bhwc->bpwc", _window_matrix(h, images.dtype), images, precision=hp)
    return jnp.einsum("qw,bpwc->bpqc", _window_matrix(w, images.dtype), out, precision=hp)


@functools.partial(jax.jit, static_argnames="padding")
def ssim_map(
    x: jax.Array,
    y: jax.Array,
    data_range: float | jax.Array = 1.0,
    padding: str = "valid",
) -> jax.Array:
    """Local SSIM ``l * c * s`` of Wang et al. 2004 (their eq. 13; thesis eq. 5.11's similarity map).

    Gaussian window (sigma 1.5, 11x11), population (co)variances, ``C1 = (0.01 R)^2``,
    ``C2 = (0.03 R)^2`` with ``R = data_range``, computed per channel.

    Args:
      x, y: ``[B, H, W, C]`` float images, ``H, W >= 11``.
      data_range: ``R``, the value range of the images (1 for ``[0, 1]``).
      padding: ``"valid"``: only windows inside the image, ``[B, H-10, W-10, C]``, the part of
        scikit-image's map it averages; ``"same"``: ``[B, H, W, C]`` with the image mirrored at its
        border (scipy's ``mode="reflect"``), scikit-image's ``full=True`` map.

    Returns:
      SSIM map in ``[-1, 1]``, float32 (float64 for float64 inputs under ``jax_enable_x64``). In
      float32 single map entries in near-flat windows differ from scikit-image's float64 map by up to
      ~2e-4; their mean (:func:`ssim`) agrees to ~1e-6.
    """
    check_image_pair(x, y, "ssim_map")
    if padding not in ("valid", "same"):
        raise ValueError(f"ssim_map: padding must be 'valid' or 'same', got {padding!r}.")
    if min(x.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"ssim_map needs images of at least 11x11 pixels, got {x.shape[1:3]}; upsample them first.")
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    if padding == "same":
        pad = ((0, 0), (SSIM_RADIUS, SSIM_RADIUS), (SSIM_RADIUS, SSIM_RADIUS), (0, 0))
        x, y = jnp.pad(x, pad, mode="symmetric"), jnp.pad(y, pad, mode="symmetric")
    # SSIM's variances are shift invariant: centring on the pair's mean keeps E[x^2] - E[x]^2 from
    # cancelling in float32 on bright images. The shift is a constant, so no gradient flows through it.
    shift = jax.lax.stop_gradient(0.5 * (x.mean(axis=(1, 2), keepdims=True) + y.mean(axis=(1, 2), keepdims=True)))
    xc, yc = x - shift, y - shift
    moments = _blur_valid(jnp.concatenate([xc, yc, xc * xc, yc * yc, xc * yc], axis=-1))
    mx, my, mxx, myy, mxy = jnp.split(moments, 5, axis=-1)
    var_x, var_y, cov = mxx - mx * mx, myy - my * my, mxy - mx * my
    mu_x, mu_y = mx + shift, my + shift
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


@jax.jit
def ssim(x: jax.Array, y: jax.Array, data_range: float | jax.Array = 1.0, mask: jax.Array | None = None) -> jax.Array:
    """Mean SSIM per image (Wang et al. 2004; thesis Tables 4.2, 5.1; MvInvert Table 1).

    Averages the ``"valid"`` :func:`ssim_map` over pixels and channels, which is exactly what
    scikit-image does (it computes a mirrored full map, then crops the 5-pixel border before
    averaging).

    Args:
      x, y: ``[B, H, W, C]`` float images, ``H, W >= 11``.
      data_range: value range of the images.
      mask: optional ``[B, H, W, 1]`` or ``[B, H, W, C]`` weights: the average is taken over the
        window centres it selects (Table 5.1 scores the occluded region only); its 5-pixel border
        is cropped like the map. An image whose cropped mask is empty scores NaN.

    Returns:
      ``[B]`` float32.
    """
    check_image_pair(x, y, "ssim")
    values = ssim_map(x, y, data_range, padding="valid")
    if mask is None:
        return values.mean(axis=(1, 2, 3))
    r = SSIM_RADIUS
    weights = broadcast_mask(mask, x.shape, "ssim")[:, r:-r, r:-r, :]
    return jnp.sum(weights * values, axis=(1, 2, 3)) / jnp.sum(weights, axis=(1, 2, 3))


@jax.jit
def psnr(x: jax.Array, y: jax.Array, data_range: float | jax.Array = 1.0, mask: jax.Array | None = None) -> jax.Array:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` per image (thesis Table 5.1; MvInvert Table 1).

    Args:
      x, y: ``[B, H, W, C]`` float images.
      data_range: ``R``, the value range of the images.
      mask: optional ``[B, H, W, 1]`` or ``[B, H, W, C]`` weights; the MSE is then their weighted
        mean over elements (Table 5.1 scores the occluded region only).

    Returns:
      ``[B]`` in dB; ``inf`` for identical images, as scikit-image.
    """
    check_image_pair(x, y, "psnr")
    weights = broadcast_mask(mask, x.shape, "psnr")
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    squared = (x.astype(dtype) - y.astype(dtype)) ** 2
    mse = jnp.sum(weights * squared, axis=(1, 2, 3)) / jnp.sum(weights, axis=(1, 2, 3))
    return 10.0 * jnp.log10(data_range**2 / mse)
