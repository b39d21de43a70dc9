"""UV-space operations: the rasterizer run on texture coordinates.

Rasterizing the UV triangles gives every texel its triangle and barycentrics, hence its 3D point,
normal and image position at any pose. From there: the incomplete UV texture of the traditional
method (thesis Fig. 4.2, sec. 4.3.1: visible texels sample the photo, the face mask is eroded),
per-vertex visibility scores (MvInvert eq. 4), UV <-> per-vertex colour conversion and textured
rendering (thesis eq. 4.1-4.2).

``faces [F,3]`` index the 3D vertices and ``uv_faces [F,3]`` the UVs (seams: a vertex may have
several UVs); triangle ``f`` is the same surface patch in both. UVs follow
:func:`faceflax.render.texture`: u right, v down, texel (i, j) centred at ((j+.5)/W, (i+.5)/H).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from faceflax.geometry.camera import Camera
from faceflax.geometry.mesh import normalize, vertex_normals
from faceflax.render.interpolate import interpolate, texture
from faceflax.render.rasterizer import Fragments, rasterize


def uv_fragments(uvs: jax.Array, uv_faces: jax.Array, size: tuple[int, int]) -> Fragments:
    """Rasterize the UV layout ``uvs [T,2]`` / ``uv_faces [F,3]`` into a ``size`` texture.

    Returns batch-1 fragments whose ``tri_id`` is the triangle (of ``faces`` too) under each
    texel, -1 for texels outside the layout. Depends only on the model: compute it once.
    """
    uvs = jnp.asarray(uvs, jnp.float32)
    clip = jnp.concatenate([2 * uvs - 1, jnp.zeros_like(uvs[:, :1]), jnp.ones_like(uvs[:, :1])], -1)
    return rasterize(clip[None], uv_faces, size)


def _broadcast(fragments: Fragments, batch: int) -> Fragments:
    return Fragments(*(jnp.broadcast_to(x, (batch, *x.shape[1:])) for x in fragments))


def texel_attributes(uv_frags: Fragments, attrs: jax.Array, faces: jax.Array) -> jax.Array:
    """Per-vertex ``attrs [B,V,C]`` at every texel -> ``[B,Ht,Wt,C]`` (0 outside the layout)."""
    return interpolate(attrs, _broadcast(uv_frags, attrs.shape[0]), faces)


def erode(mask: jax.Array, radius: int) -> jax.Array:
    """Binary erosion of ``mask [B,H,W]`` by a (2r+1)^2 square: pixels within ``radius``
    (Chebyshev distance) of the mask's edge or the image border become False."""
    if radius <= 0:
        return mask
    window = (1, 2 * radius + 1, 2 * radius + 1)
    outside_is_empty = jnp.pad(mask.astype(jnp.float32), ((0, 0), (radius, radius), (radius, radius)))
    eroded = jax.lax.reduce_window(outside_is_empty, 1.0, jax.lax.min, window, (1, 1, 1), "VALID")
    return eroded > 0.5


def _nearest_pixel(pix: jax.Array, size: tuple[int, int]):
    """Nearest pixel (row, col) of ``pix [...,2]`` (x, y) and whether it lies in the image."""
    col, row = (
        jnp.round(pix[..., 0]).astype(jnp.int32),
        jnp.round(pix[..., 1]).astype(jnp.int32),
    )
    inside = (col >= 0) & (col < size[1]) & (row >= 0) & (row < size[0])
    return jnp.clip(row, 0, size[0] - 1), jnp.clip(col, 0, size[1] - 1), inside


def _lookup(image: jax.Array, row: jax.Array, col: jax.Array) -> jax.Array:
    """``image [B,H,W,...]`` at per-batch integer positions ``row, col [B,...]``."""
    return jax.vmap(lambda im, r, c: im[r, c])(image, row, col)


class UVSample(NamedTuple):
    """The incomplete UV texture of the traditional method (thesis Fig. 4.2)."""

    texture: jax.Array  # [B,Ht,Wt,C] photo colours on visible texels, 0 elsewhere
    visible: jax.Array  # [B,Ht,Wt] bool: in the layout, facing the camera, unoccluded, in mask
    image_coords: jax.Array  # [B,Ht,Wt,2] where each texel lands in the photo, in [0, 1] (x, y)


def sample_uv_texture(
    image: jax.Array,
    verts: jax.Array,
    faces: jax.Array,
    camera: Camera,
    uv_frags: Fragments,
    *,
    image_mask: jax.Array | None = None,
    erode_pixels: int = 0,
    depth_tolerance: float = 0.02,
) -> UVSample:
    """Sample ``image [B,H,W,C]`` into UV space for posed vertices ``verts [B,V,3]``.

    A texel is visible when it is in the UV layout, its surface faces the camera, it is not
    hidden (its view depth is within ``depth_tolerance`` model units of the rendered depth at
    its nearest pixel), it projects inside the image and, if given, inside ``image_mask
    [B,H,W]`` eroded by ``erode_pixels`` (thesis sec. 4.3.1: the eroded face-region mask keeps
    background and the piled-up edge vertices out of UV_gt). Colours are bilinear; the result is
    differentiable w.r.t. ``image`` and ``verts`` (visibility itself is piecewise constant).
    ``image_coords`` is the ground-truth sampling map S_gt of the UV sampler (sec. 4.3.1).
    """
    batch, height, width = image.shape[:3]
    size = (height, width)
    points = texel_attributes(uv_frags, verts, faces)
    normals = normalize(texel_attributes(uv_frags, vertex_normals(verts, faces), faces))
    pix, depth = camera.project(points.reshape(batch, -1, 3))
    pix = pix.reshape(*points.shape[:-1], 2)
    depth = depth.reshape(points.shape[:-1])
    towards_camera = camera.view_directions(points.reshape(batch, -1, 3)).reshape(normals.shape)
    facing = jnp.einsum("...c,...c->...", normals, towards_camera)

    fragments = rasterize(camera.to_clip(verts), faces, size)
    _, vertex_depth = camera.project(verts)
    rendered_depth = interpolate(vertex_depth[..., None], fragments, faces)[..., 0]
    row, col, inside = _nearest_pixel(pix, size)
    covered = _lookup(fragments.tri_id >= 0, row, col)
    unoccluded = jnp.abs(_lookup(rendered_depth, row, col) - depth) <= depth_tolerance
    visible = (uv_frags.tri_id >= 0) & (facing > 0) & inside & covered & unoccluded
    if image_mask is not None:
        visible &= _lookup(erode(image_mask > 0.5, erode_pixels), row, col)
    coords = (pix + 0.5) / jnp.array([width, height], jnp.float32)
    colours = texture(image, coords)
    visible = jax.lax.stop_gradient(visible)
    return UVSample(jnp.where(visible[..., None], colours, 0.0), visible, coords)


def vertex_visibility(
    verts: jax.Array,
    faces: jax.Array,
    camera: Camera,
    *,
    boundary_pixels: int = 3,
    depth_tolerance: float = 0.02,
) -> jax.Array:
    """Per-vertex visibility scores ``[B,V]`` in [0, 1] of posed ``verts [B,V,3]`` (MvInvert eq. 4).

    ``V_i = <(c - S_i) / |c - S_i|, N(S_i)>`` clamped at 0 (eq. 4 writes S - c; the sign is
    chosen so that vertices facing the camera score positive). Following AlbedoMM, which eq. 4
    cites, vertices hidden in the z-buffer or projecting within ``boundary_pixels`` of the
    occlusion boundary (the rendered silhouette) score 0, so background is never sampled.
    """
    normals = vertex_normals(verts, faces)
    cosine = jnp.einsum("...c,...c->...", normals, camera.view_directions(verts))
    score = jnp.maximum(cosine, 0.0)
    size = camera.image_size
    fragments = rasterize(camera.to_clip(verts), faces, size)
    pix, depth = camera.project(verts)
    rendered_depth = interpolate(depth[..., None], fragments, faces)[..., 0]
    row, col, inside = _nearest_pixel(pix, size)
    away_from_boundary = _lookup(erode(fragments.tri_id >= 0, boundary_pixels), row, col)
    unoccluded = jnp.abs(_lookup(rendered_depth, row, col) - depth) <= depth_tolerance
    keep = jax.lax.stop_gradient(inside & away_from_boundary & unoccluded)
    return jnp.where(keep, score, 0.0)


def vertex_colors_to_uv(colors: jax.Array, faces: jax.Array, uv_frags: Fragments) -> jax.Array:
    """Per-vertex ``colors [B,V,C]`` -> UV texture ``[B,Ht,Wt,C]`` (0 outside the layout)."""
    return texel_attributes(uv_frags, colors, faces)


def uv_to_vertex_colors(
    tex: jax.Array,
    uvs: jax.Array,
    faces: jax.Array,
    uv_faces: jax.Array,
    num_vertices: int,
) -> jax.Array:
    """UV texture ``tex [B,Ht,Wt,C]`` -> per-vertex colours ``[B,V,C]``.

    A vertex takes the mean of the texture over its triangle corners: corner k of triangle f
    pairs vertex ``faces[f, k]`` with UV ``uv_faces[f, k]``, so a vertex on a seam averages
    its UVs. Vertices in no triangle get 0.
    """
    corners = jnp.asarray(faces, jnp.int32).reshape(-1)
    corner_uvs = jnp.asarray(uvs, jnp.float32)[jnp.asarray(uv_faces, jnp.int32).reshape(-1)]
    batch = tex.shape[0]
    samples = texture(tex, jnp.broadcast_to(corner_uvs[None, :, None], (batch, len(corner_uvs), 1, 2)))
    sums = jnp.zeros((batch, num_vertices, tex.shape[-1]), tex.dtype).at[:, corners].add(samples[:, :, 0])
    counts = jnp.zeros(num_vertices, tex.dtype).at[corners].add(1.0)
    return sums / jnp.maximum(counts, 1.0)[None, :, None]


def render_uv_texture(
    tex: jax.Array,
    verts: jax.Array,
    faces: jax.Array,
    uvs: jax.Array,
    uv_faces: jax.Array,
    camera: Camera,
) -> tuple[jax.Array, jax.Array]:
    """Render posed ``verts [B,V,3]`` textured with ``tex [B,Ht,Wt,C]`` (thesis eq. 4.1-4.2).

    Returns the image ``[B,H,W,C]`` (0 on background) and the coverage mask ``[B,H,W]``.
    """
    fragments = rasterize(camera.to_clip(verts), faces, camera.image_size)
    covered = fragments.tri_id >= 0
    image = texture(tex, interpolate(uvs, fragments, uv_faces))
    return jnp.where(covered[..., None], image, 0.0), covered
