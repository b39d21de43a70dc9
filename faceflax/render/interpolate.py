"""Per-pixel attribute interpolation and texture sampling (nvdiffrast's ``interpolate`` and ``texture``).

Used by the differentiable renderer of thesis eq. 4.1-4.2: vertex attributes (colours, normals,
UVs, 3D positions) are blended with the rasterizer's perspective-correct barycentrics, and UV
textures are sampled bilinearly. Both are differentiable w.r.t. every floating-point input.
"""

import jax
import jax.numpy as jnp

from faceflax.render.rasterizer import Fragments


def _batched(x: jax.Array, batch: int, ndim: int, name: str) -> jax.Array:
    """Add a leading batch axis to an unbatched ``x`` and check its rank."""
    x = jnp.asarray(x)
    if x.ndim == ndim - 1:
        x = jnp.broadcast_to(x, (batch, *x.shape))
    if x.ndim != ndim or x.shape[0] != batch:
        raise ValueError(f"{name} must be batched like the fragments ({batch}), got {x.shape}")
    return x


def interpolate(attrs: jax.Array, fragments: Fragments, faces: jax.Array) -> jax.Array:
    """Attributes ``attrs [B,V,C]`` (or shared ``[V,C]``) at every pixel -> ``[B,H,W,C]``.

    ``faces [F,3]`` indexes ``attrs`` and must be the triangles that were rasterized, or a
    triangle list of the same length over another vertex set (e.g. UV triangles with seams).
    Empty pixels get 0.
    """
    attrs = _batched(attrs, fragments.tri_id.shape[0], 3, "attrs")
    corners = jnp.asarray(faces, jnp.int32)[jnp.maximum(fragments.tri_id, 0)]  # [B,H,W,3]
    values = jax.vmap(lambda a, c: a[c])(attrs, corners)  # [B,H,W,3,C]
    return jnp.einsum("bhwk,bhwkc->bhwc", fragments.bary, values)


def texture(tex: jax.Array, uv: jax.Array) -> jax.Array:
    """Bilinear lookup of ``tex [B,Ht,Wt,C]`` (or shared ``[Ht,Wt,C]``) at ``uv [B,H,W,2]``.

    UVs are in [0, 1] in image convention: u to the right, v downward, texel (i, j) centred at
    ((j + 0.5) / Wt, (i + 0.5) / Ht). Lookups beyond the outer texel centres clamp to the edge.
    """
    uv = jnp.asarray(uv)
    tex = _batched(tex, uv.shape[0], 4, "tex")
    height, width = tex.shape[1:3]
    x = uv[..., 0] * width - 0.5
    y = uv[..., 1] * height - 0.5
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0, y - y0
    cols = jnp.clip(jnp.stack([x0, x0 + 1, x0, x0 + 1], -1), 0, width - 1).astype(jnp.int32)
    rows = jnp.clip(jnp.stack([y0, y0, y0 + 1, y0 + 1], -1), 0, height - 1).astype(jnp.int32)
    corners = jax.vmap(lambda t, r, c: t[r, c])(tex, rows, cols)  # [B, H, W, 4, C]
    weights = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    # A contraction, not a broadcast-multiply-sum: XLA:CPU is ~10x faster at it, gradient too.
    return jnp.einsum("...k,...kc->...c", weights, corners)
