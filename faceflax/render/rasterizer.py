"""Exact z-buffer triangle rasterization in JAX (nvdiffrast's ``rasterize``, thesis eq. 4.1-4.2).

Conventions (shared with :mod:`faceflax.geometry.camera`): ``clip_verts`` are homogeneous clip
coordinates; NDC = xyz / w. Pixel (row i, column j) has its centre at
``x_ndc = (2j + 1) / W - 1`` and ``y_ndc = (2i + 1) / H - 1``, so row 0 is ``y_ndc = -1``.
A pixel is covered when its centre lies inside or on the triangle (edge values >= 0, computed so
that two triangles sharing an edge see exactly opposite values: no cracks) and
``-1 <= z_ndc <= 1``. The nearest fragment wins; equal depths go to the lower triangle id.
Triangles with a vertex at ``w <= 0`` (behind the camera) are dropped, not clipped.

How it is fast and exact at once: every triangle's pixel-centre bounding box is enumerated as
fragments (sub-pixel triangles that contain no pixel centre cost nothing, a whole-image triangle
costs H*W). Fragments are evaluated in fixed-size chunks inside a ``while_loop`` until all are
done, so there is no capacity to overflow: a larger scene takes more chunks, never loses
coverage. Depth is resolved with a scatter-min, then the winning triangle id with a second one.
Only the per-pixel barycentrics and depth are differentiable (w.r.t. ``clip_verts``): they are
recomputed from the winning triangle's vertices, so gradients reach vertex positions and, via
:func:`faceflax.render.interpolate`, attributes.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

_INT32_MAX = 2**31 - 1


class Fragments(NamedTuple):
    """Per-pixel rasterization result; empty pixels have ``tri_id == -1``, zero bary, depth 1."""

    tri_id: jax.Array  # [B, H, W] int32
    bary: jax.Array  # [B, H, W, 3] float32, perspective-correct, sums to 1 on covered pixels
    depth: jax.Array  # [B, H, W] float32 z_ndc


def _screen(clip: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """Clip [..., 4] -> pixel-index coordinates [..., 2] (centres at integers) and z_ndc [...]."""
    height, width = size
    w = clip[..., 3]
    x = (clip[..., 0] / w + 1.0) * (width / 2) - 0.5
    y = (clip[..., 1] / w + 1.0) * (height / 2) - 0.5
    return jnp.stack([x, y], -1), clip[..., 2] / w


def _edge_values(x, y, px, py):
    """Edge functions (e0, e1, e2) of pixel (px, py) against the triangle x, y = (x0,x1,x2), (y0,y1,y2).

    e_k is twice the signed area of (p, v_{k+1}, v_{k+2}). Each edge is evaluated with its end
    points in a canonical order and the sign flipped afterwards, so the neighbour that walks the
    edge the other way gets exactly the negated float even where XLA contracts to FMA: no cracks.
    """
    return tuple(_edge(x[(k + 1) % 3], y[(k + 1) % 3], x[(k + 2) % 3], y[(k + 2) % 3], px, py) for k in range(3))


def _edge(xa, ya, xb, yb, px, py):
    swap = (xa > xb) | ((xa == xb) & (ya > yb))
    x1, y1 = jnp.where(swap, xb, xa) - px, jnp.where(swap, yb, ya) - py
    x2, y2 = jnp.where(swap, xa, xb) - px, jnp.where(swap, ya, yb) - py
    value = x1 * y2 - x2 * y1
    return jnp.where(swap, -value, value)


def _triangle_setup(clip: jax.Array, faces: jax.Array, size: tuple[int, int], cull_backfaces: bool):
    """Per-triangle data of clip [B,V,4] as flat arrays over N = B*F (image, triangle) rows.

    Returns ``floats`` (screen x0,x1,x2,y0,y1,y2, z_ndc z0,z1,z2 and the winding sign), ``ints``
    (bbox corner x, y, bbox width, first pixel of the image) and ``count`` [N] (pixel centres
    in the bbox; 0 for dropped triangles). Structure-of-arrays: XLA:CPU gathers 1-D arrays fastest.
    """
    height, width = size
    tri_clip = clip[:, faces]  # [B, F, 3, 4]
    xy, z = _screen(tri_clip, size)
    x, y = xy[..., 0], xy[..., 1]
    area = _edge_values(_split(x), _split(y), x[..., 0], y[..., 0])[0]
    ok = jnp.all(tri_clip[..., 3] > 0, axis=-1) & jnp.all(jnp.isfinite(xy), axis=(-1, -2))
    ok &= (area < 0) if cull_backfaces else (area != 0)
    x_min, x_max = _min3(*_split(x)), -_min3(*_split(-x))
    y_min, y_max = _min3(*_split(y)), -_min3(*_split(-y))
    ok &= (_min3(*_split(z)) <= 1) & (-_min3(*_split(-z)) >= -1)
    lo_x = jnp.clip(jnp.ceil(x_min), 0, width)
    lo_y = jnp.clip(jnp.ceil(y_min), 0, height)
    box_width = jnp.maximum(jnp.clip(jnp.floor(x_max), -1, width - 1) - lo_x + 1, 0)
    box_height = jnp.maximum(jnp.clip(jnp.floor(y_max), -1, height - 1) - lo_y + 1, 0)
    box_width = jnp.where(ok, box_width, 0).astype(jnp.int32)
    count = box_width * jnp.where(ok, box_height, 0).astype(jnp.int32)
    first_pixel = jnp.arange(clip.shape[0], dtype=jnp.int32)[:, None] * (height * width)
    floats = (*_split(x), *_split(y), *_split(z), jnp.sign(area))
    ints = (lo_x.astype(jnp.int32), lo_y.astype(jnp.int32), box_width, first_pixel)
    flat = lambda a: jnp.broadcast_to(a, ok.shape).reshape(-1)
    return tuple(map(flat, floats)), tuple(map(flat, ints)), count.reshape(-1)


def _split(a):
    """[..., 3] -> the three [...] components."""
    return a[..., 0], a[..., 1], a[..., 2]


def _min3(a, b, c):
    return jnp.minimum(jnp.minimum(a, b), c)


def _visible_triangles(clip, faces, size, chunk, cull_backfaces) -> jax.Array:
    """Winning triangle id per pixel [B, H, W] (-1 = empty); not differentiable.

    Fragments are evaluated ``chunk`` at a time. When they all fit in one chunk (the usual
    case) depth and id are resolved from that one evaluation: scatter-min the depth, then
    scatter-min the ids of fragments at that depth. Otherwise one ``while_loop`` walks
    (pass, group, chunk) with the same compiled fragment code in both passes, so the depths
    compared are bit-identical. Triangles are split into static groups small enough that a
    group's fragment count cannot overflow int32.
    """
    height, width = size
    batch, num_faces = clip.shape[0], faces.shape[0]
    num_pixels = batch * height * width
    floats, ints, count = _triangle_setup(clip, faces, size, cull_backfaces)
    rows = count.shape[0]
    group = max(1, min(rows, (_INT32_MAX - chunk) // (height * width)))
    num_groups = -(-rows // group)

    def grouped(x):
        return jnp.pad(x, (0, num_groups * group - rows)).reshape(num_groups, group)

    floats, ints, count = jax.tree.map(grouped, (floats, ints, count))
    ends = jnp.cumsum(count, axis=1)
    begins = ends - count

    def fragments(g, start):
        """(pixel or ``num_pixels`` when not covered, global triangle row, z_ndc) per slot."""
        slot = start + jnp.arange(chunk, dtype=jnp.int32)
        offset = begins[g] - start
        starts_here = (count[g] > 0) & (offset >= 0) & (offset < chunk)
        marks = jnp.full(chunk, -1, jnp.int32).at[jnp.where(starts_here, offset, chunk)]
        marks = marks.max(jnp.arange(group, dtype=jnp.int32), mode="drop")
        first = jnp.searchsorted(ends[g], start, side="right").astype(jnp.int32)
        tri = jnp.minimum(jnp.maximum(jax.lax.associative_scan(jnp.maximum, marks), first), group - 1)
        x0, x1, x2, y0, y1, y2, z0, z1, z2, sign = (a[g, tri] for a in floats)
        lo_x, lo_y, box_width, first_pixel = (a[g, tri] for a in ints)
        local = slot - begins[g, tri]
        box_width = jnp.maximum(box_width, 1)
        px = lo_x + local % box_width
        py = lo_y + local // box_width
        e0, e1, e2 = _edge_values((x0, x1, x2), (y0, y1, y2), px.astype(jnp.float32), py.astype(jnp.float32))
        inside = (e0 * sign >= 0) & (e1 * sign >= 0) & (e2 * sign >= 0)
        depth = (e0 * z0 + e1 * z1 + e2 * z2) / (e0 + e1 + e2)
        covered = (slot < ends[g, -1]) & inside & (depth >= -1) & (depth <= 1)
        pixel = jnp.where(covered, first_pixel + py * width + px, num_pixels)
        return pixel, g * group + tri, depth

    def nearest_depth(zbuf, pixel, depth):
        return zbuf.at[pixel].min(depth, mode="drop")

    def lowest_id_at_depth(idbuf, zbuf, pixel, tri, depth):
        at_depth = depth == zbuf.at[pixel].get(mode="fill", fill_value=jnp.inf)
        return idbuf.at[jnp.where(at_depth, pixel, num_pixels)].min(tri, mode="drop")

    zbuf = jnp.full(num_pixels, jnp.inf, jnp.float32)
    idbuf = jnp.full(num_pixels, _INT32_MAX, jnp.int32)

    def one_chunk():
        pixel, tri, depth = fragments(0, jnp.int32(0))
        return lowest_id_at_depth(idbuf, nearest_depth(zbuf, pixel, depth), pixel, tri, depth)

    def chunked():
        def body(carry):
            phase, g, start, zbuf, idbuf = carry
            pixel, tri, depth = fragments(g, start)
            zbuf, idbuf = jax.lax.cond(
                phase == 0,
                lambda: (nearest_depth(zbuf, pixel, depth), idbuf),
                lambda: (zbuf, lowest_id_at_depth(idbuf, zbuf, pixel, tri, depth)),
            )
            start = start + chunk
            next_group = start >= ends[g, -1]
            g = jnp.where(next_group, g + 1, g)
            next_phase = g == num_groups
            return (
                phase + next_phase,
                jnp.where(next_phase, 0, g),
                jnp.where(next_group, 0, start),
                zbuf,
                idbuf,
            )

        init = (jnp.int32(0), jnp.int32(0), jnp.int32(0), zbuf, idbuf)
        return jax.lax.while_loop(lambda c: c[0] < 2, body, init)[-1]

    if num_groups == 1:
        idbuf = jax.lax.cond(ends[0, -1] <= chunk, one_chunk, chunked)
    else:
        idbuf = chunked()
    tri_id = jnp.where(idbuf == _INT32_MAX, -1, idbuf % num_faces)
    return tri_id.reshape(batch, height, width)


def _barycentrics(clip, faces, tri_id, size):
    """Perspective-correct barycentrics [H,W,3] and z_ndc [H,W] of the winning triangles.

    Written component-wise: XLA:CPU runs reductions over a trailing axis of 3 an order of
    magnitude slower than the same sums spelled out, and their gradients too.
    """
    height, width = size
    covered = tri_id >= 0
    tri_clip = clip[faces[jnp.maximum(tri_id, 0)]]  # [H, W, 3, 4]
    xy, z = _screen(tri_clip, size)
    py, px = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    edges = _edge_values(_split(xy[..., 0]), _split(xy[..., 1]), px, py)
    area = jnp.where(covered, edges[0] + edges[1] + edges[2], 1.0)
    perspective = [e / area / w for e, w in zip(edges, _split(tri_clip[..., 3]))]
    total = jnp.where(covered, perspective[0] + perspective[1] + perspective[2], 1.0)
    bary = jnp.where(covered[..., None], jnp.stack([p / total for p in perspective], -1), 0.0)
    depth = sum(e / area * zk for e, zk in zip(edges, _split(z)))
    return bary, jnp.where(covered, depth, 1.0)


@functools.partial(jax.jit, static_argnames=("size", "chunk", "cull_backfaces"))
def rasterize(
    clip_verts: jax.Array,
    faces: jax.Array,
    size: tuple[int, int],
    *,
    chunk: int = 1 << 16,
    cull_backfaces: bool = False,
) -> Fragments:
    """Rasterize triangles ``faces [F,3] int32`` of ``clip_verts [B,V,4]`` into ``size = (H, W)``.

    ``chunk`` (static) is how many candidate fragments are evaluated per loop iteration
    (default 2**16, a few MB of working memory): it trades memory for loop trips and never
    limits coverage. ``cull_backfaces`` drops triangles
    that the viewer sees clockwise (facing away, for meshes wound counter-clockwise seen from
    outside, as every :mod:`faceflax.geometry.morphable` model is).
    """
    clip_verts = jnp.asarray(clip_verts, jnp.float32)
    faces = jnp.asarray(faces, jnp.int32)
    if clip_verts.ndim != 3 or clip_verts.shape[-1] != 4:
        raise ValueError(f"clip_verts must be [B, V, 4], got shape {clip_verts.shape}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be [F, 3], got shape {faces.shape}")
    size = (int(size[0]), int(size[1]))
    if chunk is None:
        chunk = 1 << max(12, (2 * clip_verts.shape[0] * size[0] * size[1] - 1).bit_length())
    tri_id = _visible_triangles(jax.lax.stop_gradient(clip_verts), faces, size, chunk, cull_backfaces)
    bary, depth = jax.vmap(lambda clip, ids: _barycentrics(clip, faces, ids, size))(clip_verts, tri_id)
    return Fragments(tri_id, bary, depth)
