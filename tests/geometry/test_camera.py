"""Cameras: Deep3DFaceRecon's projection, clip space consistent with pixels, rescaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.geometry.camera import (
    PerspectiveCamera,
    WeakPerspectiveCamera,
    project_landmarks,
)


def face_points(rng: np.random.Generator, *batch: int, n: int = 50) -> np.ndarray:
    """Points in a face-sized box around the origin (Deep3DFaceRecon units)."""
    return rng.uniform(-1, 1, size=(*batch, n, 3)).astype(np.float32) * np.float32([0.9, 1.1, 0.8])


def pixels_to_ndc(pix: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    h, w = image_size
    return (np.asarray(pix) + 0.5) * 2 / np.array([w, h]) - 1


def dfr_project(verts: np.ndarray, focal: float, center: float, distance: float, h: int):
    """Deep3DFaceRecon to_camera -> to_image (persc_proj) -> landmark flip ``H - 1 - y``."""
    persc_proj = np.array([focal, 0, center, 0, focal, center, 0, 0, 1.0]).reshape(3, 3).T
    cam = verts.astype(np.float64).copy()
    cam[..., 2] = distance - cam[..., 2]
    proj = cam @ persc_proj
    proj = proj[..., :2] / proj[..., 2:]
    proj[..., 1] = h - 1 - proj[..., 1]
    return proj


def test_matches_deep3dfacerecon_projection():
    verts = face_points(np.random.default_rng(0), 3)
    pix, depth = PerspectiveCamera().project(verts)
    np.testing.assert_allclose(pix, dfr_project(verts, 1015.0, 112.0, 10.0, 224), atol=2e-4)
    np.testing.assert_allclose(depth, 10.0 - verts[..., 2], atol=1e-6)


def test_optical_axis_hits_principal_point():
    cam = PerspectiveCamera(focal=800.0, cx=70.0, cy=40.0, image_size=(120, 160))
    axis = np.array([[0.0, 0.0, z] for z in (-2.0, 0.0, 3.0)], np.float32)
    pix, _ = cam.project(axis)
    np.testing.assert_allclose(pix, np.tile([70.0, 120 - 1 - 40.0], (3, 1)), atol=1e-5)
    # Up in the model is up in the image (smaller row), right is right.
    pix, _ = cam.project(np.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]], np.float32))
    assert pix[0, 0] > 70.0 and pix[1, 1] < 120 - 1 - 40.0


@pytest.mark.parametrize(
    "cam",
    [
        PerspectiveCamera(),
        PerspectiveCamera(focal=700.0, cx=90.5, cy=60.0, distance=8.0, image_size=(150, 190)),
        WeakPerspectiveCamera(),
        WeakPerspectiveCamera(scale=80.0, tx=95.0, ty=70.0, image_size=(150, 190)),
    ],
    ids=["persp-default", "persp-nonsquare", "weak-default", "weak-nonsquare"],
)
def test_clip_ndc_matches_projected_pixels(cam):
    verts = face_points(np.random.default_rng(1), 2)
    pix, depth = cam.project(verts)
    clip = np.asarray(cam.to_clip(verts))
    ndc = clip[..., :3] / clip[..., 3:]
    np.testing.assert_allclose(ndc[..., :2], pixels_to_ndc(pix, cam.image_size), atol=2e-6)
    expected_w = depth if isinstance(cam, PerspectiveCamera) else np.ones_like(depth)
    np.testing.assert_allclose(clip[..., 3], expected_w, rtol=1e-6)
    assert np.all(clip[..., 3] > 0) and np.all(np.abs(ndc[..., 2]) < 1)
    # Nearer (smaller depth) -> smaller z_ndc, for every pair.
    order = np.argsort(np.asarray(depth).ravel())
    assert np.all(np.diff(ndc[..., 2].ravel()[order]) > 0)


@pytest.mark.parametrize("cam_type", [PerspectiveCamera, WeakPerspectiveCamera])
def test_near_and_far_planes_map_to_ndc_bounds(cam_type):
    cam = cam_type(distance=10.0, znear=5.0, zfar=15.0)
    # depth = distance - z: z = 5 is the near plane, z = -5 the far plane.
    clip = np.asarray(cam.to_clip(np.array([[0.2, 0.1, 5.0], [0.2, 0.1, -5.0]], np.float32)))
    np.testing.assert_allclose(clip[:, 2] / clip[:, 3], [-1.0, 1.0], atol=1e-6)


def test_image_size_rescaling_keeps_ndc():
    verts = face_points(np.random.default_rng(2))
    base = PerspectiveCamera(cx=110.0, cy=115.0)
    clip = np.asarray(base.to_clip(verts))
    ndc = clip[..., :2] / clip[..., 3:]
    size = (160, 160)  # a non-integer scale, 5/7
    cam = PerspectiveCamera.for_image_size(size, base)
    assert cam.image_size == size
    np.testing.assert_allclose(cam.focal, 1015.0 * 5 / 7, rtol=1e-6)
    pix, _ = cam.project(verts)
    np.testing.assert_allclose(pixels_to_ndc(pix, size), ndc, atol=2e-5)
    # The default reference is Deep3DFaceRecon's camera.
    np.testing.assert_allclose(PerspectiveCamera.for_image_size((448, 448)).focal, 2030.0)
    with pytest.raises(ValueError, match="aspect ratio"):
        PerspectiveCamera.for_image_size((224, 300))


def test_weak_defaults_equal_perspective_on_the_z0_plane():
    verts = face_points(np.random.default_rng(3))
    verts[..., 2] = 0.0
    persp, _ = PerspectiveCamera().project(verts)
    weak, _ = WeakPerspectiveCamera().project(verts)
    np.testing.assert_allclose(weak, persp, atol=1e-4)
    # Weak perspective: x_pix = s x + tx, y_pix = ty - s y, independent of z.
    verts[..., 2] = np.linspace(-1, 1, verts.shape[-2])
    cam = WeakPerspectiveCamera(scale=50.0, tx=3.0, ty=7.0)
    pix, _ = cam.project(verts)
    np.testing.assert_allclose(pix[:, 0], 50.0 * verts[:, 0] + 3.0, atol=1e-5)
    np.testing.assert_allclose(pix[:, 1], 7.0 - 50.0 * verts[:, 1], atol=1e-5)


def test_batched_cameras_broadcast_vmap_and_loop_agree():
    rng = np.random.default_rng(4)
    verts = face_points(rng, 3)
    focal = np.array([900.0, 1015.0, 1200.0], np.float32)
    distance = np.array([9.0, 10.0, 12.0], np.float32)
    batched = PerspectiveCamera(focal=jnp.asarray(focal), distance=jnp.asarray(distance))
    clip = batched.to_clip(verts)
    pix, _ = batched.project(verts)
    every_leaf_batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (3,)), batched)
    mapped = jax.vmap(lambda cam, v: cam.to_clip(v))(every_leaf_batched, verts)
    np.testing.assert_allclose(clip, mapped, rtol=1e-6, atol=1e-5)
    for i in range(3):
        single = PerspectiveCamera(focal=float(focal[i]), distance=float(distance[i]))
        np.testing.assert_allclose(clip[i], single.to_clip(verts[i]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(pix[i], single.project(verts[i])[0], atol=1e-4)


def test_gradients_through_camera_and_points():
    verts = jnp.asarray(face_points(np.random.default_rng(5)))
    target = jnp.full((verts.shape[0], 2), 100.0)

    def loss(cam, v):
        pix, _ = cam.project(v)
        return jnp.mean((pix - target) ** 2) + jnp.mean(cam.to_clip(v) ** 2)

    g_cam, g_v = jax.jit(jax.grad(loss, argnums=(0, 1)))(PerspectiveCamera(), verts)
    for leaf in jax.tree_util.tree_leaves((g_cam, g_v)):
        assert np.all(np.isfinite(leaf))
    # Closed form in focal: d pix / d focal = (x / depth, -y / depth) and, from clip_matrix,
    # d clip / d focal = (2 x / W, -2 y / H, 0, 0).
    cam = PerspectiveCamera()
    pix, depth = cam.project(verts)
    clip = np.asarray(cam.to_clip(verts))
    dpix = np.stack([verts[:, 0] / depth, -verts[:, 1] / depth], -1)
    dclip = np.stack([2 * verts[:, 0] / 224, -2 * verts[:, 1] / 224], -1)
    expected = np.mean(2 * (pix - target) * dpix) + np.sum(2 * clip[:, :2] * dclip) / clip.size
    np.testing.assert_allclose(g_cam.focal, expected, rtol=1e-4)


def test_view_directions():
    verts = face_points(np.random.default_rng(6), 2)
    cam = PerspectiveCamera(distance=jnp.array([10.0, 8.0]))
    np.testing.assert_allclose(cam.camera_position(), [[0, 0, 10.0], [0, 0, 8.0]])
    dirs = np.asarray(cam.view_directions(verts))
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0, atol=1e-6)
    # Each direction points from the vertex to the camera centre.
    to_cam = np.array([[0, 0, 10.0], [0, 0, 8.0]])[:, None] - verts
    np.testing.assert_allclose(np.cross(dirs, to_cam), 0.0, atol=1e-5)
    assert np.all(np.sum(dirs * to_cam, -1) > 0)
    weak = np.asarray(WeakPerspectiveCamera().view_directions(verts))
    np.testing.assert_array_equal(weak, np.broadcast_to([0, 0, 1.0], verts.shape))


@pytest.mark.parametrize("cam", [PerspectiveCamera(), WeakPerspectiveCamera()])
def test_project_landmarks(cam):
    rng = np.random.default_rng(7)
    verts = face_points(rng, 2, n=300)
    indices = rng.choice(300, size=68, replace=False).astype(np.int32)
    lms = jax.jit(project_landmarks)(cam, verts, indices)
    assert lms.shape == (2, 68, 2)
    pix, _ = cam.project(verts)
    np.testing.assert_allclose(lms, np.asarray(pix)[:, indices], atol=1e-5)
