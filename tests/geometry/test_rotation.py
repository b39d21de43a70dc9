"""Euler and 6D rotations against Deep3DFaceRecon's compute_rotation written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.geometry.rotation import (
    euler_to_matrix,
    matrix_from_6d,
    matrix_to_6d,
    matrix_to_euler,
    rigid_transform,
)


def dfr_compute_rotation(angles: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon models/bfm.py compute_rotation: (Rz Ry Rx)^T, used as ``pts @ rot``."""
    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rot_x = np.stack([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], 1).reshape(-1, 3, 3)
    rot_y = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], 1).reshape(-1, 3, 3)
    rot_z = np.stack([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], 1).reshape(-1, 3, 3)
    return np.transpose(rot_z @ rot_y @ rot_x, (0, 2, 1))


def random_angles(rng: np.random.Generator, n: int, limit: float = np.pi) -> np.ndarray:
    return rng.uniform(-limit, limit, size=(n, 3)).astype(np.float32)


def test_euler_matches_deep3dfacerecon():
    rng = np.random.default_rng(0)
    angles = random_angles(rng, 16)
    dfr = dfr_compute_rotation(angles.astype(np.float64))
    ours = np.asarray(euler_to_matrix(angles))
    np.testing.assert_allclose(ours, np.transpose(dfr, (0, 2, 1)), atol=1e-6)
    # Same map on points: Deep3DFaceRecon's ``pts @ rot + trans`` == R v + t.
    pts = rng.normal(size=(16, 5, 3)).astype(np.float32)
    trans = rng.normal(size=(16, 3)).astype(np.float32)
    expected = pts @ dfr + trans[:, None]
    got = rigid_transform(pts, ours, trans)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_euler_axes_and_orthonormality():
    a = 0.3
    c, s = np.cos(a), np.sin(a)
    # Positive pitch turns +y toward +z, positive yaw +z toward +x, positive roll +x toward +y.
    np.testing.assert_allclose(euler_to_matrix([a, 0, 0]) @ np.array([0, 1, 0.0]), [0, c, s], atol=1e-6)
    np.testing.assert_allclose(euler_to_matrix([0, a, 0]) @ np.array([0, 0, 1.0]), [s, 0, c], atol=1e-6)
    np.testing.assert_allclose(euler_to_matrix([0, 0, a]) @ np.array([1, 0, 0.0]), [c, s, 0], atol=1e-6)
    m = np.asarray(euler_to_matrix(random_angles(np.random.default_rng(1), 32)))
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-5)


def test_euler_round_trip_and_batching():
    rng = np.random.default_rng(2)
    angles = rng.uniform(-1, 1, size=(4, 5, 3)).astype(np.float32) * np.array([1.4, 1.4, 3.1], np.float32)
    m = euler_to_matrix(angles)
    assert m.shape == (4, 5, 3, 3)
    np.testing.assert_allclose(matrix_to_euler(m), angles, atol=2e-5)
    per_item = jax.vmap(jax.vmap(euler_to_matrix))(angles)
    np.testing.assert_allclose(m, per_item, atol=1e-7)


def test_6d_round_trip_and_gram_schmidt():
    rng = np.random.default_rng(3)
    m = euler_to_matrix(random_angles(rng, 8))
    np.testing.assert_allclose(matrix_from_6d(matrix_to_6d(m)), m, atol=1e-6)

    x = rng.normal(size=(2, 8, 6)).astype(np.float32)
    r = np.asarray(matrix_from_6d(x))
    assert r.shape == (2, 8, 3, 3)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
    a1, a2 = x[..., :3], x[..., 3:]
    # First column along a1; second column in span(a1, a2) on a2's side of a1.
    np.testing.assert_allclose(r[..., :, 0], a1 / np.linalg.norm(a1, axis=-1, keepdims=True), atol=1e-6)
    normal = np.cross(a1, a2)
    np.testing.assert_allclose(np.sum(r[..., :, 1] * normal, -1), 0.0, atol=1e-5)
    assert np.all(np.sum(r[..., :, 1] * a2, -1) > 0)


def test_gradients_finite():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    angles = jnp.asarray(random_angles(rng, 3, 1.0))
    pts = jnp.asarray(rng.normal(size=(3, 4, 3)), jnp.float32)

    def loss(x, angles):
        r = matrix_from_6d(x) @ euler_to_matrix(angles)
        return jnp.sum(rigid_transform(pts, r, angles) ** 2)

    gx, ga = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, angles)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(ga))
    # Scale invariance of Gram-Schmidt: d/dt loss(x * (1 + t)) = 0 => <grad, x> = 0 per block.
    for block in (slice(0, 3), slice(3, 6)):
        np.testing.assert_allclose(np.sum(gx[:, block] * x[:, block], -1), 0.0, atol=1e-3)


def test_rigid_transform_broadcasts_shared_pose():
    rng = np.random.default_rng(5)
    verts = rng.normal(size=(2, 3, 7, 3)).astype(np.float32)
    r = np.asarray(euler_to_matrix([0.1, -0.4, 0.2]))
    t = np.array([0.5, -1.0, 2.0], np.float32)
    np.testing.assert_allclose(rigid_transform(verts, r, t), verts @ r.T + t, atol=1e-5)


def test_matrix_to_euler_near_gimbal_limit():
    limit = np.deg2rad(89.0)
    angles = np.array([[limit, 0.5, -0.3], [-0.2, -limit + 0.01, 2.0]], np.float32)
    np.testing.assert_allclose(matrix_to_euler(euler_to_matrix(angles)), angles, atol=2e-3)
