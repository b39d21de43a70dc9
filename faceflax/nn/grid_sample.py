"""Differentiable bilinear sampling of an image at predicted coordinates (spatial transformer, Jaderberg 2015).

The PAS module's sampling map (thesis sec. 3.3.2: "the original pixel indices are converted into decimal
coordinates ranging from -1 to 1 ... the final sampling is achieved by interpolating the adjacent pixels")
and the UV sampler's ``S_att`` (thesis sec. 4.3.1, "differentiable sampling [91]") are both applied with
:func:`grid_sample`, the NHWC counterpart of ``torch.nn.functional.grid_sample(mode="bilinear")``.
"""

import jax
import jax.numpy as jnp

PADDING_MODES = ("zeros", "border")


def _unnormalize(coord: jax.Array, size: int, align_corners: bool) -> jax.Array:
    """[-1, 1] -> pixel index; -1/1 are the corner pixels' centres (``align_corners``) or outer edges."""
    if align_corners:
        return (coord + 1) * 0.5 * (size - 1)
    return ((coord + 1) * size - 1) * 0.5


def _clamp(coord: jax.Array, limit: int) -> jax.Array:
    """Clamps to ``[0, limit]`` with zero gradient on and beyond the bounds, as torch's ``clip_coordinates``."""
    return jnp.where(coord <= 0, 0, jnp.where(coord >= limit, limit, coord))


def grid_sample(
    image: jax.Array, grid: jax.Array, *, align_corners: bool = False, padding_mode: str = "zeros"
) -> jax.Array:
    """Samples ``image`` bilinearly at ``grid``, as ``torch.nn.functional.grid_sample(mode="bilinear")``.

    Args:
      image: ``[B, H, W, C]`` float image (NHWC, unlike torch's NCHW).
      grid: ``[B, Ho, Wo, 2]`` float sampling map; ``grid[..., 0]`` is the abscissa x (along W) and
        ``grid[..., 1]`` the ordinate y (along H), both in ``[-1, 1]`` over the image (thesis sec. 3.3.2).
      align_corners: ``True``: -1 and 1 are the centres of the corner pixels; ``False``: their outer edges.
      padding_mode: ``"zeros"``: taps outside the image read 0; ``"border"``: coordinates are clamped
        to the image, so outside points read the nearest edge pixel (and get no gradient along the clamp).

    Returns:
      ``[B, Ho, Wo, C]`` in the promoted dtype of ``image`` and ``grid``; differentiable w.r.t. both
      (``grid`` almost everywhere: the bilinear weights have kinks on integer texel coordinates).
    """
    image, grid = jnp.asarray(image), jnp.asarray(grid)
    if image.ndim != 4:
        raise ValueError(f"image must be NHWC [B, H, W, C], got shape {image.shape}; add the missing axes")
    if grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != image.shape[0]:
        raise ValueError(
            f"grid must be [B, Ho, Wo, 2] with B = {image.shape[0]} (x, y last), got shape {grid.shape}; "
            "pass one (x, y) sampling map per image"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode {padding_mode!r} is not supported; use one of {PADDING_MODES}")
    b, h, w, c = image.shape
    dtype = jnp.promote_types(image.dtype, grid.dtype)
    x = _unnormalize(grid[..., 0].astype(dtype), w, align_corners)
    y = _unnormalize(grid[..., 1].astype(dtype), h, align_corners)
    if padding_mode == "border":
        x, y = _clamp(x, w - 1), _clamp(y, h - 1)
    # Far-out coordinates are clamped into [-2, size + 1] before the integer cast, so it cannot overflow;
    # their taps stay outside the image and get weight 0 either way.
    x0 = jnp.floor(jnp.clip(x, -2, w + 1))
    y0 = jnp.floor(jnp.clip(y, -2, h + 1))
    fx, fy = x - x0, y - y0
    xs = jnp.stack([x0, x0 + 1, x0, x0 + 1], axis=-1).astype(jnp.int32)  # [B, Ho, Wo, 4]
    ys = jnp.stack([y0, y0, y0 + 1, y0 + 1], axis=-1).astype(jnp.int32)
    weights = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    weights = jnp.where(inside, weights, 0)
    flat = jnp.clip(ys, 0, h - 1) * w + jnp.clip(xs, 0, w - 1)
    taps = jax.vmap(lambda im, idx: im[idx])(image.reshape(b, h * w, c).astype(dtype), flat.reshape(b, -1))
    taps = taps.reshape(*flat.shape, c)  # [B, Ho, Wo, 4, C]
    return jnp.sum(weights[..., None] * taps, axis=-2)  # elementwise: full float32 on every backend
