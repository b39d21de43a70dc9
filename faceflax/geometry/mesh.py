"""Triangle-mesh quantities on padded arrays: face/vertex normals and areas.

Meshes are ``verts [..., V, 3]`` float32 with shared ``faces [F, 3]`` int32 (DESIGN.md,
Conventions). Faces are counter-clockwise seen from outside, so ``(v1 - v0) x (v2 - v0)``
points outward. Vertex normals follow Deep3DFaceRecon ``models/bfm.py`` ``compute_norm``:
the normalised sum of the unit normals of the adjacent faces, here a scatter-add over the
faces instead of its padded ``point_buf`` table. All normalisations are NaN-free in value and
gradient for degenerate triangles and isolated vertices.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


@jax.jit
def normalize(x: ArrayLike, eps: float = 1e-12) -> jax.Array:
    """``x / max(|x|, eps)`` along the last axis, with a finite gradient at ``x = 0``.

    Same value as ``torch.nn.functional.normalize`` (used by Deep3DFaceRecon); a zero vector
    maps to zero with zero gradient instead of NaN.

    Args:
      x: ``[..., D]`` float.

    Returns:
      ``[..., D]`` unit vectors (zero where ``x`` is zero).
    """
    x = jnp.asarray(x)
    squared = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(squared, eps * eps))


def _check_faces(faces: ArrayLike) -> jax.Array:
    faces = jnp.asarray(faces)
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be an [F, 3] integer array, got shape {faces.shape}")
    return faces


def _face_cross(verts: ArrayLike, faces: ArrayLike) -> jax.Array:
    """``(v1 - v0) x (v2 - v0)`` per face: ``[..., F, 3]`` (twice the area vector)."""
    verts = jnp.asarray(verts)
    faces = _check_faces(faces)
    v0, v1, v2 = (jnp.take(verts, faces[:, k], axis=-2) for k in range(3))
    return jnp.cross(v1 - v0, v2 - v0)


@jax.jit
def face_normals(verts: ArrayLike, faces: ArrayLike) -> jax.Array:
    """Unit face normals ``normalize((v1 - v0) x (v2 - v0))``.

    Args:
      verts: ``[..., V, 3]`` float32 vertex positions.
      faces: ``[F, 3]`` int32 vertex indices, counter-clockwise from outside.

    Returns:
      ``[..., F, 3]`` float32 unit normals; zero for degenerate (zero-area) faces.
    """
    return normalize(_face_cross(verts, faces))


@jax.jit
def vertex_normals(verts: ArrayLike, faces: ArrayLike) -> jax.Array:
    """Vertex normals: normalised sum of adjacent unit face normals.

    Deep3DFaceRecon ``compute_norm``: ``normalize(sum_{f ∋ v} n_f)``, ``n_f`` unit face
    normals; computed as a scatter-add of each face normal onto its three corners.

    Args:
      verts: ``[..., V, 3]`` float32 vertex positions.
      faces: ``[F, 3]`` int32 vertex indices.

    Returns:
      ``[..., V, 3]`` float32 unit normals; zero for vertices in no (non-degenerate) face.
    """
    verts = jnp.asarray(verts)
    faces = _check_faces(faces)
    per_corner = jnp.repeat(face_normals(verts, faces), 3, axis=-2)  # [..., 3F, 3]
    summed = jnp.zeros(verts.shape, per_corner.dtype).at[..., faces.reshape(-1), :].add(per_corner)
    return normalize(summed)


@jax.jit
def triangle_areas(verts: ArrayLike, faces: ArrayLike) -> jax.Array:
    """Triangle areas ``|(v1 - v0) x (v2 - v0)| / 2``.

    Args:
      verts: ``[..., V, 3]`` float32 vertex positions.
      faces: ``[F, 3]`` int32 vertex indices.

    Returns:
      ``[..., F]`` float32 areas; exactly zero, with zero gradient, for degenerate faces.
    """
    cross = _face_cross(verts, faces)
    squared = jnp.sum(cross * cross, axis=-1)
    positive = squared > 0
    return 0.5 * jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
