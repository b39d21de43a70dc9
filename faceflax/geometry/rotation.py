"""Rotations: Euler angles, the continuous 6D representation, rigid transforms.

Matrices act on column vectors, ``v' = R v``. Euler angles are ``(pitch, yaw, roll)`` in
radians about the model's ``x``, ``y`` and ``z`` axes (``+y`` up, ``+z`` toward the camera; see
``faceflax.geometry.camera``), composed as ``R = Rz(roll) Ry(yaw) Rx(pitch)``. This is the
pose of Deep3DFaceRecon ``models/bfm.py``: its ``compute_rotation`` returns ``R^T`` and
right-multiplies row vectors (``transform``: ``pts @ R^T + t``), the same map.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from faceflax.geometry.mesh import normalize

_HIGHEST = jax.lax.Precision.HIGHEST


@jax.jit
def euler_to_matrix(angles: ArrayLike) -> jax.Array:
    """``R = Rz(roll) Ry(yaw) Rx(pitch)`` from ``angles = (pitch, yaw, roll)``.

    Deep3DFaceRecon ``compute_rotation`` (transposed to act on column vectors), multiplied out:
    ``Rx = [[1,0,0],[0,c,-s],[0,s,c]]``, ``Ry = [[c,0,s],[0,1,0],[-s,0,c]]``,
    ``Rz = [[c,-s,0],[s,c,0],[0,0,1]]``.

    Args:
      angles: ``[..., 3]`` float32 radians.

    Returns:
      ``[..., 3, 3]`` float32 rotation matrices.
    """
    angles = jnp.asarray(angles)
    cx, cy, cz = (jnp.cos(angles[..., k]) for k in range(3))
    sx, sy, sz = (jnp.sin(angles[..., k]) for k in range(3))
    rows = (
        (cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx),
        (sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx),
        (-sy, cy * sx, cy * cx),
    )
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


@jax.jit
def matrix_to_euler(matrix: ArrayLike) -> jax.Array:
    """Inverse of :func:`euler_to_matrix` for ``|pitch|, |yaw| < pi / 2``.

    From ``R[2] = (-sin yaw, cos yaw sin pitch, cos yaw cos pitch)`` and
    ``R[:, 0] = cos yaw (cos roll, sin roll, .)``.

    Args:
      matrix: ``[..., 3, 3]`` float32 rotation matrices.

    Returns:
      ``[..., 3]`` float32 ``(pitch, yaw, roll)`` radians; roll in ``(-pi, pi]``.
    """
    m = jnp.asarray(matrix)
    pitch = jnp.arctan2(m[..., 2, 1], m[..., 2, 2])
    yaw = jnp.arctan2(-m[..., 2, 0], jnp.hypot(m[..., 0, 0], m[..., 1, 0]))
    roll = jnp.arctan2(m[..., 1, 0], m[..., 0, 0])
    return jnp.stack([pitch, yaw, roll], axis=-1)


@jax.jit
def matrix_from_6d(x: ArrayLike) -> jax.Array:
    """Rotation from the continuous 6D representation (Zhou et al., CVPR 2019).

    Gram-Schmidt on the two 3-vectors ``a1 = x[..., :3]``, ``a2 = x[..., 3:]``:
    ``b1 = N(a1)``, ``b2 = N(a2 - (b1 . a2) b1)``, ``b3 = b1 x b2``; they are the *columns*.

    Args:
      x: ``[..., 6]`` float32.

    Returns:
      ``[..., 3, 3]`` float32 rotation matrices ``[b1 b2 b3]``.
    """
    x = jnp.asarray(x)
    b1 = normalize(x[..., :3])
    a2 = x[..., 3:]
    b2 = normalize(a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    return jnp.stack([b1, b2, jnp.cross(b1, b2)], axis=-1)


@jax.jit
def matrix_to_6d(matrix: ArrayLike) -> jax.Array:
    """The 6D representation: the first two columns of ``matrix`` (Zhou et al. 2019).

    Args:
      matrix: ``[..., 3, 3]`` float32 rotation matrices.

    Returns:
      ``[..., 6]`` float32; ``matrix_from_6d`` inverts it.
    """
    m = jnp.asarray(matrix)
    return jnp.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


@jax.jit
def rigid_transform(verts: ArrayLike, rotation: ArrayLike, translation: ArrayLike) -> jax.Array:
    """``v' = R v + t`` for every vertex (Deep3DFaceRecon ``transform``).

    Args:
      verts: ``[..., V, 3]`` float32.
      rotation: ``[..., 3, 3]`` float32, batch dims broadcast against ``verts``'.
      translation: ``[..., 3]`` float32, batch dims broadcast against ``verts``'.

    Returns:
      ``[..., V, 3]`` float32 transformed vertices.
    """
    rotated = jnp.matmul(
        jnp.asarray(verts),
        jnp.swapaxes(jnp.asarray(rotation), -1, -2),
        precision=_HIGHEST,
    )
    return rotated + jnp.asarray(translation)[..., None, :]
