"""The JAX rasterizer against the NumPy reference, ray casting and exact coverage oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

import faceflax.render.rasterizer as rasterizer_module
from faceflax.render import interpolate, rasterize
from tests.render.scenes import (
    FOCAL,
    assert_matches_reference,
    pinhole_clip,
    pixel_rays,
    random_scene,
    triangle_at,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_scenes(seed):
    clip, faces = random_scene(seed)
    assert_matches_reference(clip, faces, (48, 64))


def test_chunking_and_triangle_groups_do_not_change_the_result(monkeypatch):
    clip, faces = random_scene(3)
    whole = rasterize(clip, faces, (40, 40))
    tiny_chunks = rasterize(clip, faces, (40, 40), chunk=64)
    np.testing.assert_array_equal(tiny_chunks.tri_id, whole.tri_id)
    # Force several triangle groups (normally only for > 2**31 / (H * W) triangles).
    monkeypatch.setattr(rasterizer_module, "_INT32_MAX", 40 * 40 * 7 + 64)
    grouped = rasterize(clip, faces, (40, 40), chunk=64)
    np.testing.assert_array_equal(grouped.tri_id, whole.tri_id)
    np.testing.assert_allclose(grouped.bary, whole.bary)


def test_whole_image_triangle_covers_every_pixel():
    view = np.array([[[-50.0, -50.0, 3.0], [50.0, -50.0, 3.0], [0.0, 80.0, 3.0]]])
    fragments = rasterize(pinhole_clip(view), np.array([[0, 1, 2]]), (31, 47))
    assert np.all(np.asarray(fragments.tri_id) == 0)
    np.testing.assert_allclose(np.asarray(fragments.bary).sum(-1), 1.0, atol=1e-6)


def test_dense_subpixel_grid_is_watertight_and_exact():
    """80k sub-pixel triangles of a regular grid: every pixel centre lands in its own cell."""
    cells, size = 200, (64, 64)
    u = np.linspace(-0.9, 0.9, cells + 1)
    grid_x, grid_y = np.meshgrid(u, u)
    verts = np.stack([grid_x.ravel(), grid_y.ravel(), np.full(grid_x.size, 4.0)], -1)
    index = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    # Scaled by depth / focal so that the grid's NDC are exactly u, v in [-0.9, 0.9].
    clip = pinhole_clip(verts[None] * np.array([4.0 / FOCAL, 4.0 / FOCAL, 1.0]))
    tri_id = np.asarray(rasterize(clip, faces, size, chunk=4096).tri_id[0])
    ndc = pixel_rays(size)[..., :2] * FOCAL
    inside = np.all(np.abs(ndc) < 0.9, -1)
    assert np.all(tri_id[inside] >= 0), "a pixel centre inside the grid was missed"
    assert np.all(tri_id[~inside] == -1)
    col = np.floor((ndc[..., 0] + 0.9) / 1.8 * cells).astype(int)
    row = np.floor((ndc[..., 1] + 0.9) / 1.8 * cells).astype(int)
    cell = row * cells + col
    assert np.all(tri_id[inside] % (cells * cells) == cell[inside])


def test_nearest_surface_matches_trimesh_ray_casting():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    offset = np.array([0.2, -0.1, 4.0])
    verts = np.asarray(sphere.vertices) + offset
    size = (40, 40)
    fragments = rasterize(pinhole_clip(verts[None]), np.asarray(sphere.faces), size)
    rays = pixel_rays(size).reshape(-1, 3)
    intersector = trimesh.ray.ray_triangle.RayMeshIntersector(trimesh.Trimesh(verts, sphere.faces, process=False))
    hit_tri = intersector.intersects_first(np.zeros_like(rays), rays)
    tri_id = np.asarray(fragments.tri_id[0]).ravel()
    clip = pinhole_clip(verts[None])[0]
    for pixel in np.nonzero(tri_id != hit_tri)[0]:
        row, col = divmod(pixel, size[1])
        candidates = [t for t in (tri_id[pixel], hit_tri[pixel]) if t >= 0]
        margins = [triangle_at(clip, sphere.faces[t], size, row, col)[0] for t in candidates]
        assert min(abs(m) for m in margins) < 1e-4, (row, col, margins)
    # Depth: the interpolated view-space depth equals the ray's hit distance along z.
    depth_attr = verts[None, :, 2:]
    depth = np.asarray(interpolate(depth_attr, fragments, sphere.faces))[0, ..., 0].ravel()
    locations, ray_index, _ = intersector.intersects_location(np.zeros_like(rays), rays, multiple_hits=False)
    covered = tri_id[ray_index] >= 0
    np.testing.assert_allclose(depth[ray_index[covered]], locations[covered, 2], rtol=1e-4)


def test_triangles_behind_the_camera_and_outside_the_depth_range_are_dropped():
    front = np.array([[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0]])
    behind = front * np.array([1.0, 1.0, -1.0])
    beyond_far = front * np.array([1.0, 1.0, 5.0])
    clip = pinhole_clip(np.concatenate([front, behind, beyond_far])[None])
    faces = np.arange(9).reshape(3, 3)
    tri_id = np.asarray(rasterize(clip, faces[1:], (16, 16)).tri_id)
    assert np.all(tri_id == -1)
    assert np.any(np.asarray(rasterize(clip, faces, (16, 16)).tri_id) == 0)


def test_backface_culling_keeps_only_counter_clockwise_triangles_as_seen():
    # Seen by the viewer (x right, y down on screen) this triangle winds counter-clockwise.
    ccw = np.array([[-1.0, -1.0, 3.0], [0.0, 1.0, 3.0], [1.0, -1.0, 3.0]])
    clip = pinhole_clip(np.concatenate([ccw, ccw[::-1]])[None])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    kept = np.unique(np.asarray(rasterize(clip, faces, (16, 16), cull_backfaces=True).tri_id))
    assert set(kept) == {-1, 0}


def test_batched_jit_and_vmap_agree_with_single_images():
    clip, faces = random_scene(4, batch=2)
    batched = rasterize(clip, faces, (16, 16))
    for b in range(2):
        single = rasterize(clip[b : b + 1], faces, (16, 16))
        np.testing.assert_array_equal(single.tri_id[0], batched.tri_id[b])
    nested = jax.vmap(lambda c: rasterize(c, faces, (16, 16)).tri_id)(clip[:, None])
    np.testing.assert_array_equal(nested[:, 0], batched.tri_id)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"clip_verts must be \[B, V, 4\]"):
        rasterize(jnp.zeros((5, 4)), np.zeros((1, 3), np.int32), (8, 8))
    with pytest.raises(ValueError, match=r"faces must be \[F, 3\]"):
        rasterize(jnp.zeros((1, 5, 4)), np.zeros((3,), np.int32), (8, 8))
