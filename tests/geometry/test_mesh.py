"""Mesh normals and areas against trimesh and Deep3DFaceRecon's compute_norm."""

import jax
import jax.numpy as jnp
import numpy as np
import trimesh

from faceflax.geometry.mesh import face_normals, triangle_areas, vertex_normals

SPHERE = trimesh.creation.icosphere(subdivisions=3)
SPHERE_VERTS = np.asarray(SPHERE.vertices, np.float32)
SPHERE_FACES = np.asarray(SPHERE.faces, np.int32)


def dfr_compute_norm(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon models/bfm.py compute_norm with its padded point_buf, in numpy."""
    adjacency = [[] for _ in range(verts.shape[-2])]
    for f, face in enumerate(faces):
        for v in face:
            adjacency[v].append(f)
    width = max(len(a) for a in adjacency)
    # Padding points at an extra all-zero face normal, as in BFM_model_front.mat.
    point_buf = np.array([a + [len(faces)] * (width - len(a)) for a in adjacency])
    v1, v2, v3 = (verts[..., faces[:, k], :] for k in range(3))
    face_norm = np.cross(v1 - v2, v2 - v3)
    face_norm /= np.maximum(np.linalg.norm(face_norm, axis=-1, keepdims=True), 1e-12)
    face_norm = np.concatenate([face_norm, np.zeros_like(face_norm[..., :1, :])], axis=-2)
    vertex_norm = face_norm[..., point_buf, :].sum(axis=-2)
    return vertex_norm / np.maximum(np.linalg.norm(vertex_norm, axis=-1, keepdims=True), 1e-12)


def test_sphere_normals_are_positions():
    normals = np.asarray(vertex_normals(SPHERE_VERTS, SPHERE_FACES))
    assert np.min(np.sum(normals * SPHERE_VERTS, -1)) > 0.999
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(face_normals(SPHERE_VERTS, SPHERE_FACES), SPHERE.face_normals, atol=1e-5)
    areas = np.asarray(triangle_areas(SPHERE_VERTS, SPHERE_FACES))
    np.testing.assert_allclose(areas, SPHERE.area_faces, rtol=1e-4)
    assert 0.98 * 4 * np.pi < areas.sum() < 4 * np.pi


def test_matches_deep3dfacerecon_compute_norm():
    rng = np.random.default_rng(0)
    verts = SPHERE_VERTS * rng.uniform(0.7, 1.3, size=(2, len(SPHERE_VERTS), 1))
    verts = verts.astype(np.float32)
    expected = dfr_compute_norm(verts.astype(np.float64), SPHERE_FACES)
    np.testing.assert_allclose(vertex_normals(verts, SPHERE_FACES), expected, atol=2e-5)


def test_flat_ccw_quad_faces_plus_z():
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    np.testing.assert_allclose(face_normals(verts, faces), [[0, 0, 1.0]] * 2, atol=1e-7)
    np.testing.assert_allclose(vertex_normals(verts, faces), [[0, 0, 1.0]] * 4, atol=1e-7)
    np.testing.assert_allclose(triangle_areas(verts, faces), [0.5, 0.5], atol=1e-7)
    # Clockwise winding flips the normal.
    np.testing.assert_allclose(face_normals(verts, faces[:, ::-1]), [[0, 0, -1.0]] * 2, atol=1e-7)


def test_degenerate_triangles_and_isolated_vertices_have_no_nan():
    verts = jnp.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [3, 0, 0], [5, 0, 0], [9, 9, 9.0]])
    # A good face, a face with coincident vertices, a collinear face; vertex 6 is isolated.
    faces = jnp.array([[0, 1, 2], [3, 3, 3], [1, 4, 5]], jnp.int32)
    normals = vertex_normals(verts, faces)
    np.testing.assert_array_equal(normals[6], 0.0)
    np.testing.assert_array_equal(normals[3], 0.0)
    np.testing.assert_allclose(normals[:3], [[0, 0, 1.0]] * 3, atol=1e-7)
    np.testing.assert_array_equal(triangle_areas(verts, faces)[1:], 0.0)

    weights = jnp.arange(21.0).reshape(7, 3)

    def loss(v):
        return jnp.sum(weights * vertex_normals(v, faces)) + jnp.sum(triangle_areas(v, faces))

    grad = jax.jit(jax.grad(loss))(verts)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[6], 0.0)


def test_area_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    coarse = trimesh.creation.icosphere(subdivisions=1)
    verts = np.asarray(coarse.vertices, np.float32)
    verts += rng.normal(scale=0.05, size=verts.shape).astype(np.float32)
    faces = np.asarray(coarse.faces, np.int32)
    weights = rng.normal(size=len(faces)).astype(np.float32)

    def loss(v):
        return jnp.sum(weights * triangle_areas(v, faces))

    loss = jax.jit(loss)
    grad = np.asarray(jax.jit(jax.grad(loss))(verts))
    eps = 1e-3
    for idx in [(faces[0, 0], 0), (faces[1, 1], 2), (faces[2, 2], 1)]:
        delta = np.zeros_like(verts)
        delta[idx] = eps
        fd = (loss(verts + delta) - loss(verts - delta)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd, rtol=1e-2, atol=1e-3)


def test_batched_equals_loop():
    rng = np.random.default_rng(2)
    verts = SPHERE_VERTS + rng.normal(scale=0.05, size=(2, 3, *SPHERE_VERTS.shape))
    verts = verts.astype(np.float32)
    fns = jax.jit(
        lambda v: (
            vertex_normals(v, SPHERE_FACES),
            face_normals(v, SPHERE_FACES),
            triangle_areas(v, SPHERE_FACES),
        )
    )
    batched = fns(verts)
    for i in range(2):
        for j in range(3):
            for got, want in zip(batched, fns(verts[i, j]), strict=True):
                np.testing.assert_allclose(got[i, j], want, atol=1e-6)
