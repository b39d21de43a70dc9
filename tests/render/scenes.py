"""Scenes and oracles shared by the renderer tests: a pinhole camera independent of faceflax's."""

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.render import rasterize
from faceflax.render.reference import rasterize_reference

NEAR, FAR, FOCAL = 1.0, 10.0, 1.5


def pinhole_clip(view):
    """View-space points [..., 3] (depth along +z) -> float32 clip coordinates of a pinhole.

    NumPy in, NumPy out (for the reference rasterizer); JAX in, JAX out (for gradients).
    """
    xp = jnp if isinstance(view, jax.Array) else np
    x, y, depth = view[..., 0], view[..., 1], view[..., 2]
    z = (depth * (FAR + NEAR) - 2 * FAR * NEAR) / (FAR - NEAR)
    return xp.stack([FOCAL * x, FOCAL * y, z, depth], -1).astype(xp.float32)


def pixel_rays(size):
    """Unit-depth ray directions [H, W, 3] through the pixel centres of ``pinhole_clip``."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    x_ndc = (2 * cols + 1) / width - 1
    y_ndc = (2 * rows + 1) / height - 1
    return np.stack([x_ndc / FOCAL, y_ndc / FOCAL, np.ones_like(x_ndc)], -1)


def random_scene(seed, batch=2, num_verts=60, num_faces=40, spread=1.3):
    rng = np.random.default_rng(seed)
    view = np.concatenate(
        [
            rng.uniform(-spread, spread, (batch, num_verts, 2)),
            rng.uniform(2, 6, (batch, num_verts, 1)),
        ],
        -1,
    )
    return pinhole_clip(view), rng.integers(0, num_verts, (num_faces, 3)).astype(np.int32)


def triangle_at(clip, face, size, row, col):
    """(smallest normalised edge value, z_ndc) of triangle ``face`` at a pixel centre, in float64.

    The edge value is negative outside the triangle and 0 on an edge.
    """
    height, width = size
    corner = clip[face].astype(np.float64)
    x = (corner[:, 0] / corner[:, 3] + 1) * width / 2 - 0.5
    y = (corner[:, 1] / corner[:, 3] + 1) * height / 2 - 0.5
    area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
    bary = (
        np.array(
            [
                (x[(k + 1) % 3] - col) * (y[(k + 2) % 3] - row) - (x[(k + 2) % 3] - col) * (y[(k + 1) % 3] - row)
                for k in range(3)
            ]
        )
        / area
    )
    return bary.min(), bary @ (corner[:, 2] / corner[:, 3])


def assert_matches_reference(clip, faces, size, **kwargs):
    fragments = rasterize(clip, faces, size, **kwargs)
    ref_id, ref_bary, ref_depth = rasterize_reference(clip, faces, size)
    tri_id = np.asarray(fragments.tri_id)
    differ = tri_id != ref_id
    # Disagreements are allowed only where a pixel centre sits on an edge or two depths tie,
    # i.e. where float32 and float64 may legitimately round differently.
    for b, row, col in zip(*np.nonzero(differ)):
        seen = [
            triangle_at(clip[b], faces[t], size, row, col) for t in (tri_id[b, row, col], ref_id[b, row, col]) if t >= 0
        ]
        on_edge = min(abs(margin) for margin, _ in seen) < 1e-4
        depth_tie = len(seen) == 2 and abs(seen[0][1] - seen[1][1]) < 1e-5
        assert on_edge or depth_tie, (b, row, col, seen)
    assert differ.mean() < 0.005
    same = ~differ & (ref_id >= 0)
    # float32 vs float64: 1e-5 almost everywhere; sub-pixel triangles amplify rounding a little.
    bary_error = np.abs(np.asarray(fragments.bary)[same] - ref_bary[same])
    assert np.mean(bary_error > 1e-5) < 0.01 and bary_error.max() < 2e-4, bary_error.max()
    np.testing.assert_allclose(np.asarray(fragments.depth)[same], ref_depth[same], atol=1e-5)
    assert np.all(np.asarray(fragments.bary)[ref_id < 0] == 0)
    return fragments
