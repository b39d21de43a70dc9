"""Landmark fitting: recovery of known pose, identity and expression from synthetic detections,
on ICT-FaceKit (asset mirror), on a synthetic PCA face built here (no mirror needed) and on the
mean-only MediaPipe face; the jaw contour must slide for profiles to fit.

The synthetic detector is independent of the fitter's contour rule. Inner landmarks (17-67) are
the projections of their vertices. Jaw landmarks on the side turning away (``x_j * yaw > 0``;
the chin excepted) follow landmark marching (Zhu et al., CVPR 2015; 3DDFA's 300W-LP): each
moves along its horizontal line of the model (vertices at its height, on its side, between the
inner landmarks' hull and the jaw outline) to the vertex with the outermost projected ``x``.
The fitter instead finds the silhouette from vertex normals along polar rays (module
docstring), so the two agree only where both find the true occluding contour.
"""

import time

import jax
import numpy as np
import pytest
import scipy.spatial

from faceflax.fitting import landmarks as fl
from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.morphable import shape
from faceflax.geometry.rotation import euler_to_matrix, rigid_transform
from tests.synthetic_faces import synthetic_face

IMAGE = (224, 224)
CAMERA = PerspectiveCamera.for_image_size(IMAGE)
NOISE = 2.0  # pixels, per axis
# (yaw, pitch) in degrees: frontal, moderate, and profiles up to +-60 yaw with +-15 pitch.
POSES = [(0, 0), (30, -10), (60, 0), (-60, 0), (60, 15), (-60, -15), (60, -15), (-60, 15)]
PROFILE = np.array([abs(yaw) == 60 for yaw, _ in POSES])


# --------------------------------------------------------------------------- synthetic data


def _inside(points, polygon):
    """Even-odd point-in-polygon test, ``[N, 2]`` points against ``[P, 2]`` vertices."""
    x, y = points[:, 0], points[:, 1]
    result = np.zeros(len(points), bool)
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        at = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
        result ^= crosses & (x < at)
    return result


def jaw_region(model, region="face"):
    """Vertices a detector's jaw landmarks may sit on, judged on the frontal mean shape: inside
    the outline of the jaw (0-16) and brows (26..17), outside the inner landmarks' hull."""
    mean = np.asarray(model.mean)
    marks = mean[np.asarray(model.landmarks)]
    outline = np.concatenate([marks[0:17, :2], marks[26:16:-1, :2]])
    inner = scipy.spatial.Delaunay(marks[17:, :2]).find_simplex(mean[:, :2]) >= 0
    mask = np.asarray(model.regions.get(region, model.regions["face"]))
    return mask & _inside(mean[:, :2], outline) & ~inner


def detect(model, verts, yaw_deg, region, line_width):
    """Synthetic noise-free 68-point detector (module docstring): ``[68, 2]`` pixels."""
    pix = np.asarray(CAMERA.project(verts)[0])
    index = np.asarray(model.landmarks)
    mean = np.asarray(model.mean)
    out = pix[index].copy()
    for j in range(17):
        x_j, y_j = mean[index[j], :2]
        if j == 8 or x_j * yaw_deg <= 0:
            continue
        line = region & (np.abs(mean[:, 1] - y_j) < line_width) & (mean[:, 0] * x_j > 0)
        line[index[j]] = True
        candidates = np.flatnonzero(line)
        out[j] = pix[candidates[np.argmax(np.sign(x_j) * pix[candidates, 0])]]
    return out


def random_faces(model, seed, blendshapes):
    """Per pose: ``(angles, translation, id, exp, model-space shape, posed verts)``."""
    rng = np.random.default_rng(seed)
    faces = []
    for yaw, pitch in POSES:
        alpha = rng.normal(size=model.id_rank).astype(np.float32)
        if blendshapes:
            beta = rng.uniform(0, 0.6, size=model.exp_rank).astype(np.float32)
        else:
            beta = rng.normal(size=model.exp_rank).astype(np.float32)
        angles = np.radians([pitch, yaw, rng.uniform(-5, 5)]).astype(np.float32)
        translation = np.array([*rng.normal(0, 0.1, 2), rng.uniform(-0.5, 1.0)], np.float32)
        model_shape = np.asarray(shape(model, alpha, beta))
        verts = np.asarray(rigid_transform(model_shape, euler_to_matrix(angles), translation))
        faces.append((angles, translation, alpha, beta, model_shape, verts))
    return faces


def rotation_error_deg(angles_a, angles_b):
    """Geodesic angle between two Euler-angle rotations, degrees."""
    relative = np.asarray(euler_to_matrix(angles_a)).T @ np.asarray(euler_to_matrix(angles_b))
    return np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1)))


def shape_error(a, b):
    """Mean vertex distance after rigid (Kabsch) alignment of ``a`` onto ``b``: pose removed."""
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return np.linalg.norm(a @ (u @ fix @ vt) - b, axis=1).mean()


# --------------------------------------------------------------------------- scenarios


class Scenario:
    """Faces at every pose in ``POSES``, their detections (clean and noisy) and three batched
    fits sharing one compilation: noise-free (sigma 0.5 px), noisy (sigma 2 px), and
    noise-free with fixed jaw correspondences."""

    def __init__(self, model, lmodel, *, blendshapes, region, line_width, seed, evaluation_region):
        self.model, self.lmodel, self.region = model, lmodel, evaluation_region
        self.faces = random_faces(model, seed, blendshapes)
        detector_region = jaw_region(model, region)
        self.clean = np.stack(
            [detect(model, f[5], yaw, detector_region, line_width) for f, (yaw, _) in zip(self.faces, POSES)]
        )
        rng = np.random.default_rng(seed + 1)
        self.noisy = (self.clean + rng.normal(0, NOISE, self.clean.shape)).astype(np.float32)
        # MAP with the data's noise level; numeric config fields are traced: one compilation.
        exact, noisy = fl.LandmarkFitConfig(landmark_sigma=0.5), fl.LandmarkFitConfig(landmark_sigma=NOISE)
        self.fits = {
            "clean": fl.fit_landmarks(lmodel, self.clean, IMAGE, config=exact),
            "noisy": fl.fit_landmarks(lmodel, self.noisy, IMAGE, config=noisy),
            "fixed": fl.fit_landmarks(lmodel, self.clean, IMAGE, config=exact.replace(slide_contour=False)),
        }

    def errors(self, name):
        """Per pose: rotation error (deg), per-angle errors (deg), shape error / mean-shape error."""
        fit = jax.device_get(self.fits[name])
        rotation, angles, ratio = [], [], []
        for k, (true_angles, _, _, _, true_shape, _) in enumerate(self.faces):
            rotation.append(rotation_error_deg(fit.angles[k], true_angles))
            angles.append(np.degrees(np.abs(fit.angles[k] - true_angles)))
            fitted = np.asarray(shape(self.model, fit.id_coeffs[k], fit.exp_coeffs[k]))
            mean = np.asarray(self.model.mean)
            ratio.append(
                shape_error(fitted[self.region], true_shape[self.region])
                / shape_error(mean[self.region], true_shape[self.region])
            )
        return np.array(rotation), np.array(angles), np.array(ratio)

    def expression_errors(self, name):
        """Per pose: error of the expression displacement ``beta B_exp`` relative to its size."""
        fit = jax.device_get(self.fits[name])
        basis = np.asarray(self.model.exp_basis)[:, self.region]
        ratio = []
        for k, face in enumerate(self.faces):
            true = np.einsum("k,kvc->vc", face[3], basis)
            fitted = np.einsum("k,kvc->vc", fit.exp_coeffs[k], basis)
            ratio.append(np.linalg.norm(fitted - true, axis=1).mean() / np.linalg.norm(true, axis=1).mean())
        return np.array(ratio)


@pytest.fixture(scope="module")
def ict(ict_face):
    return Scenario(
        ict_face,
        fl.prepare(ict_face),
        blendshapes=True,
        region="narrow_face",
        line_width=0.02,
        seed=1,
        evaluation_region=np.asarray(ict_face.regions["narrow_face"]),
    )


@pytest.fixture(scope="module")
def synthetic():
    model = synthetic_face()
    return Scenario(
        model,
        fl.prepare(model),
        blendshapes=False,
        region="face",
        line_width=0.03,
        seed=2,
        evaluation_region=np.asarray(model.mean)[:, 2] > 0,
    )


# --------------------------------------------------------------------------- recovery


def check_recovery(scenario):
    """Tolerances (observed on these seeds, and over 8 more per model, in brackets):

    - noise-free (sigma 0.5 px): every Euler angle and the geodesic rotation within 2 deg
      [<= 1.7 deg]; mean reprojection error < 1 px [<= 0.63 px]; 3D shape error (mean vertex
      distance, pose removed by rigid alignment) < 0.6 times the mean shape's for every face
      [<= 0.58] and < 0.3 times on average [<= 0.25];
    - 2 px noise per axis (sigma 2 px): angles within 5 deg, 2.5 deg on average [<= 6.1 deg
      for the worst face of 16 poses x 8 seeds]; mean reprojection error < 2.75 px, about the
      noise level (E|n| = 2.5 px, less the part the parameters absorb) [<= 2.69 px], and
      < 1.75 px from the clean landmarks [<= 1.68 px]; shape error < 1.25 times the mean
      shape's for every face [<= 1.11] and < 0.7 times on average [<= 0.62].
    """
    fits = jax.device_get(scenario.fits)
    assert fits["clean"].converged.all() and fits["noisy"].converged.all()
    rotation, angles, ratio = scenario.errors("clean")
    assert angles.max() < 2.0 and rotation.max() < 2.0, (angles, rotation)
    assert fits["clean"].mean_error.max() < 1.0, fits["clean"].mean_error
    assert ratio.max() < 0.6 and ratio.mean() < 0.3, ratio

    rotation, angles, ratio = scenario.errors("noisy")
    assert angles.max() < 5.0 and rotation.max() < 5.0, (angles, rotation)
    assert angles.max(axis=1).mean() < 2.5, angles
    assert fits["noisy"].mean_error.max() < 2.75, fits["noisy"].mean_error
    to_clean = np.linalg.norm(fits["noisy"].landmarks - scenario.clean, axis=-1).mean(-1)
    assert to_clean.max() < 1.75, to_clean
    assert ratio.max() < 1.25 and ratio.mean() < 0.7, ratio


def test_ict_recovers_pose_identity_expression(ict):
    check_recovery(ict)
    # Expression on its own: the error of the displacement beta B_exp relative to its size is
    # < 0.35 for every face noise-free (< 0.15 on average) [<= 0.25, <= 0.11 over 5 seeds],
    # and < 0.6 on average with 2 px noise [<= 0.49].
    clean, noisy = ict.expression_errors("clean"), ict.expression_errors("noisy")
    assert clean.max() < 0.35 and clean.mean() < 0.15, clean
    assert noisy.mean() < 0.6, noisy
    fit = jax.device_get(ict.fits["noisy"])
    assert fit.exp_coeffs.min() >= 0.0 and fit.exp_coeffs.max() <= 1.0  # ICT blendshape box


def test_synthetic_pca_model_recovers_pose_and_shape(synthetic):
    check_recovery(synthetic)


def sliding_matters(scenario):
    """At +-60 yaw, fixed jaw correspondences fit measurably worse than sliding ones (noise-free
    detections): observed rotation errors 5-12 deg against < 1.5 deg, reprojection errors
    1.3-2.8 px against < 0.7 px, shape error ratios 1.1-1.8 on average against about 0.2."""
    fits = jax.device_get(scenario.fits)
    slide_rotation, _, slide_ratio = scenario.errors("clean")
    fixed_rotation, _, fixed_ratio = scenario.errors("fixed")
    slide_error, fixed_error = fits["clean"].mean_error[PROFILE], fits["fixed"].mean_error[PROFILE]
    assert np.all(fixed_error > 2 * slide_error + 0.5), (fixed_error, slide_error)
    assert np.all(fixed_rotation[PROFILE] > 2 * slide_rotation[PROFILE]), (fixed_rotation, slide_rotation)
    assert fixed_rotation[PROFILE].mean() > 4.0, fixed_rotation
    assert fixed_ratio[PROFILE].mean() > 2 * slide_ratio[PROFILE].mean(), (fixed_ratio, slide_ratio)
    # Frontal, nothing slides (the jaw vertices face the camera): both fits agree.
    assert abs(fits["fixed"].mean_error[0] - fits["clean"].mean_error[0]) < 0.1


def test_ict_contour_sliding_matters(ict):
    sliding_matters(ict)


def test_synthetic_contour_sliding_matters(synthetic):
    sliding_matters(synthetic)


# --------------------------------------------------------------------------- other models, API


def test_batch_members_are_independent(synthetic):
    """Reordering the batch, and a face whose detections are NaN, leave the other fits as they
    were (same batch shape: no recompilation)."""
    config = fl.LandmarkFitConfig(landmark_sigma=NOISE)
    order = np.roll(np.arange(len(POSES)), 3)
    detections = synthetic.noisy[order].copy()
    detections[0] = np.nan
    fit = jax.device_get(fl.fit_landmarks(synthetic.lmodel, detections, IMAGE, config=config))
    batch = jax.device_get(synthetic.fits["noisy"])
    assert not fit.converged[0] and fit.converged[1:].all()
    np.testing.assert_allclose(fit.angles[1:], batch.angles[order[1:]], atol=1e-3)
    np.testing.assert_allclose(fit.landmarks[1:], batch.landmarks[order[1:]], atol=0.05)


def test_fit_is_fast_after_compilation(ict):
    config = fl.LandmarkFitConfig(landmark_sigma=0.5)
    start = time.perf_counter()
    jax.block_until_ready(fl.fit_landmarks(ict.lmodel, ict.clean, IMAGE, config=config))
    per_face = (time.perf_counter() - start) / len(POSES)
    assert per_face < 0.5, per_face  # typically ~10-20 ms per face on CPU


def test_mediapipe_mean_only_model(mediapipe_face):
    """No bases (K_id = K_exp = 0): pose only, on a coarse mesh (rays of one or two vertices)."""
    lmodel = fl.prepare(mediapipe_face)
    assert lmodel.id_rank == 0 and lmodel.exp_rank == 0
    region = jaw_region(mediapipe_face)
    for yaw, pitch in [(60, 15), (-60, -15), (0, 0)]:  # one face at a time: the unbatched path
        angles = np.radians([pitch, yaw, 3.0]).astype(np.float32)
        verts = rigid_transform(mediapipe_face.mean, euler_to_matrix(angles), np.array([0.05, -0.05, 0.3]))
        detections = detect(mediapipe_face, np.asarray(verts), yaw, region, line_width=0.05)
        fit = jax.device_get(fl.fit_landmarks(lmodel, detections, IMAGE))
        assert fit.converged and fit.mean_error < 0.5, fit.mean_error
        assert rotation_error_deg(fit.angles, angles) < 1.0


def test_initial_pose_from_landmark_geometry():
    model = synthetic_face()
    lmodel = fl.prepare(model)
    angles = np.radians([10.0, -50.0, 8.0]).astype(np.float32)
    translation = np.array([0.1, -0.05, 0.5], np.float32)
    verts = rigid_transform(model.mean, euler_to_matrix(angles), translation)
    pix = np.asarray(CAMERA.project(verts)[0])[np.asarray(model.landmarks)]
    init_angles, init_translation = jax.device_get(jax.jit(fl.initial_pose)(lmodel, pix, CAMERA))
    assert rotation_error_deg(init_angles, angles) < 6.0  # affine camera vs perspective
    np.testing.assert_allclose(init_translation, translation, atol=0.4)


def test_contour_rays_cover_the_jaw_and_skip_ears_and_inner_face(ict):
    ict_face, lmodel = ict.model, ict.lmodel
    rays, owners = fl.contour_rays(ict_face)
    assert set(owners.tolist()) == set(range(17))
    vertices = np.concatenate(rays)
    mean = np.asarray(ict_face.mean)
    assert np.asarray(ict_face.regions["narrow_face"])[vertices].all()  # no ears, no neck
    marks = mean[np.asarray(ict_face.landmarks)]
    hull = scipy.spatial.Delaunay(marks[17:, :2])
    assert np.all(hull.find_simplex(mean[vertices, :2]) < 0)
    for ray in rays:  # ordered from the inside out
        radius = np.linalg.norm(mean[ray, :2] - 0.5 * (marks[0, :2] + marks[16, :2]), axis=1)
        assert np.all(np.diff(radius) >= 0)
    segments = np.asarray(lmodel.segments)
    assert segments[:8].any(1).all() and segments[9:].any(1).all()
    left = np.asarray(owners[:-1] <= 8) & np.asarray(owners[1:] <= 8)
    assert np.array_equal(segments[3], left)  # a landmark slides along its own side only


def test_input_errors(synthetic):
    lmodel = synthetic.lmodel
    with pytest.raises(ValueError, match="68, 2"):
        fl.fit_landmarks(lmodel, np.zeros((5, 2)), IMAGE)
    with pytest.raises(ValueError, match="image size"):
        fl.fit_landmarks(lmodel, synthetic.clean[0], IMAGE, camera=CAMERA)
    with pytest.raises(ValueError, match="image size"):
        fl.fit_landmarks(lmodel, synthetic.clean[0])
    with pytest.raises(ValueError, match="iterations"):
        fl.fit_landmarks(lmodel, synthetic.clean[0], IMAGE, config=fl.LandmarkFitConfig(outer_iterations=0))
    with pytest.raises(ValueError, match="landmarks"):
        fl.prepare(synthetic.model.replace(landmarks=np.zeros((0,), np.int32)))
