"""Scenes and oracles shared by the renderer tests: a pinhole camera independent of faceflax's."""

import jax
import jax.numpy as jnp
import numpy as np

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
    return pinhole_clip(view), rng.integers(0, num_verts, (num_faces, 3)).astype(
        np.int32
    )


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
                (x[(k + 1) % 3] - col) * (y[(k + 2) % 3] - row)
                - (x[(k + 2) % 3] - col) * (y[(k + 1) % 3] - row)
                for k in range(3)
            ]
        )
        / area
    )
    return bary.min(), bary @ (corner[:, 2] / corner[:, 3])
