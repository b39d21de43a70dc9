"""Appearance fitting (albedo + SH light by differentiable rendering) on a synthetic BFM-like face.

The target photos are rendered here from the primitives (``albedo``, ``vertex_normals``,
``shade``, ``rasterize``, ``interpolate``) with known coefficients, not by the module's own
``render_appearance``, so the recovery test also checks that the fit renders the documented model.
"""

import jax
import numpy as np
import pytest

from faceflax.fitting import appearance as fa
from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.lighting import shade
from faceflax.geometry.mesh import vertex_normals
from faceflax.geometry.morphable import albedo
from faceflax.geometry.rotation import euler_to_matrix, rigid_transform
from faceflax.render import interpolate, rasterize
from tests.synthetic_faces import synthetic_face

CAMERA = PerspectiveCamera()  # Deep3DFaceRecon's: 224 x 224, focal 1015, camera at z = 10
ALBEDO_RANK = 10
BACKGROUND = np.array([0.2, 0.3, 0.6], np.float32)
# Small priors: the light and albedo are then determined by the image alone (the affine albedo
# model T_mean + t T_base leaves no exact scale ambiguity with the light), so the truth is the
# minimum up to a bias of the order of the prior weights.
SMALL_PRIORS = fa.AppearanceFitConfig(albedo_prior=1e-5, light_prior=1e-5)


class Scene:
    """The synthetic face at pitch 5, yaw 20 degrees in front of ``CAMERA``, known albedo
    coefficients (N(0, 1)) and a per-channel light: a warm tint in the DC terms (red up, blue
    down), a directional part (band 1, 0.1-0.15 per term) and some band 2; colours in about
    [0.13, 0.97]."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.model = synthetic_face(albedo_rank=ALBEDO_RANK)
        rotation = euler_to_matrix(np.radians([5.0, 20.0, 0.0]))
        self.verts = np.asarray(rigid_transform(self.model.mean, rotation, np.zeros(3)))
        self.tex = rng.normal(size=ALBEDO_RANK).astype(np.float32)
        gamma = np.zeros((3, 9), np.float32)
        gamma[:, 0] = [0.1, 0.0, -0.1]
        gamma[:, 1:4] = np.array([0.1, 0.15, 0.1]) + rng.normal(0, 0.03, (3, 3))
        gamma[:, 4:] = rng.normal(0, 0.03, (3, 5))
        self.gamma = gamma.reshape(-1)
        self.albedo = np.asarray(albedo(self.model, self.tex))
        self.colors = np.asarray(shade(self.albedo, vertex_normals(self.verts, self.model.faces), self.gamma))
        clip = CAMERA.to_clip(self.verts)[None]
        fragments = rasterize(clip, self.model.faces, CAMERA.image_size, cull_backfaces=True)
        self.tri_id = np.asarray(fragments.tri_id[0])
        self.covered = self.tri_id >= 0
        self.render = np.asarray(interpolate(self.colors, fragments, self.model.faces)[0])
        self.image = np.where(self.covered[..., None], self.render, BACKGROUND).astype(np.float32)
        self.visible = self.seen(self.covered)

    def seen(self, pixels):
        """``[V]`` bool: corners of the triangles seen on ``pixels`` (``[H, W]`` bool)."""
        corners = np.asarray(self.model.faces)[self.tri_id[pixels & self.covered]]
        return np.isin(np.arange(len(self.verts)), corners)


@pytest.fixture(scope="module")
def scene():
    return Scene()


@pytest.fixture(scope="module")
def fit(scene):
    return jax.device_get(fa.fit_appearance(scene.model, scene.verts, scene.image, CAMERA, config=SMALL_PRIORS))


# --------------------------------------------------------------------------- recovery


def test_recovers_albedo_and_light(scene, fit):
    """Tolerances ~10x what this scene gives (and 5 seeds x yaw +20/-25 degrees, in brackets):
    photometric error 8e-6 [<= 1.1e-5], rendering 2.6e-5 per channel at most; per-vertex colours
    of the visible vertices 2.8e-5 at most [<= 4.3e-5], albedo 1.6e-5 [<= 3e-5]; coefficients
    3.7e-4 [<= 6.1e-4] (basis fields of std 0.016 per coefficient: a coefficient error of 1e-3
    changes the albedo by 2e-5), light 2.6e-5 [<= 1e-4]. The objective falls from 0.27 to its
    floor ``sqrt(eps) = 1e-3`` (plus priors) and is noisy there (Adam on a norm)."""
    assert fit.photometric_error < 1e-4, fit.photometric_error
    used = scene.covered
    np.testing.assert_array_equal(fit.used, used)
    np.testing.assert_allclose(fit.render[used], scene.image[used], atol=5e-4)
    np.testing.assert_allclose(fit.colors[scene.visible], scene.colors[scene.visible], atol=3e-4)
    np.testing.assert_allclose(fit.albedo[scene.visible], scene.albedo[scene.visible], atol=3e-4)
    np.testing.assert_allclose(fit.tex_coeffs, scene.tex, atol=5e-3)
    np.testing.assert_allclose(fit.gamma, scene.gamma, atol=1e-3)
    # Invisible vertices follow from the recovered coefficients.
    np.testing.assert_allclose(fit.albedo, scene.albedo, atol=1e-3)

    losses = fit.losses
    assert losses.shape == (SMALL_PRIORS.steps,) and np.all(np.isfinite(losses))
    assert losses[-1] < 0.01 * losses[0], (losses[0], losses[-1])
    windows = losses.reshape(10, -1).mean(axis=1)  # mean over 20-step windows: falls throughout
    assert np.all(np.diff(windows) <= 0), windows
    assert losses[-20:].max() < 2e-3, losses[-20:]


def test_default_config_fits_closely(scene):
    """The default priors (1e-4) bias the coefficients a little (measured: colours 1.3e-4,
    coefficients 2.2e-3 at most) and the fit stays close; same program, no recompilation."""
    fit = jax.device_get(fa.fit_appearance(scene.model, scene.verts, scene.image, CAMERA))
    assert fit.photometric_error < 5e-4, fit.photometric_error
    np.testing.assert_allclose(fit.colors[scene.visible], scene.colors[scene.visible], atol=1e-3)
    np.testing.assert_allclose(fit.tex_coeffs, scene.tex, atol=2e-2)


# --------------------------------------------------------------------------- objective


def test_loss_is_eq_1_and_its_gradient_matches_finite_differences(scene):
    problem = fa.appearance_problem(scene.model, scene.verts, scene.image, CAMERA)
    config = fa.AppearanceFitConfig(albedo_prior=0.01, light_prior=0.02)
    rng = np.random.default_rng(5)
    tex = rng.normal(size=ALBEDO_RANK).astype(np.float32)
    gamma = rng.normal(0, 0.1, size=27).astype(np.float32)
    loss = jax.jit(fa.appearance_loss)

    # Eq. (1) in NumPy, on the used pixels (here: all covered ones).
    _, _, render = fa.render_appearance(tex, gamma, problem)
    distance = np.sqrt(np.sum((np.asarray(render) - scene.image) ** 2, axis=-1) + fa.PHOTO_EPS)
    expected = distance[scene.covered].mean() + 0.01 * np.sum(tex**2) + 0.02 * np.sum(gamma**2)
    np.testing.assert_allclose(loss(tex, gamma, problem, config), expected, rtol=1e-5)

    grad_tex, grad_gamma = jax.jit(jax.grad(fa.appearance_loss, argnums=(0, 1)))(tex, gamma, problem, config)
    step = 1e-2
    directions = [(rng.normal(size=ALBEDO_RANK), np.zeros(27)), (np.zeros(ALBEDO_RANK), rng.normal(size=27))]
    directions += [(rng.normal(size=ALBEDO_RANK), rng.normal(size=27)) for _ in range(2)]
    for d_tex, d_gamma in directions:  # central differences along unit directions: agree to 1.1e-4
        norm = np.sqrt(np.sum(d_tex**2) + np.sum(d_gamma**2))
        d_tex, d_gamma = (d_tex / norm).astype(np.float32), (d_gamma / norm).astype(np.float32)
        plus = loss(tex + step * d_tex, gamma + step * d_gamma, problem, config)
        minus = loss(tex - step * d_tex, gamma - step * d_gamma, problem, config)
        numeric = (float(plus) - float(minus)) / (2 * step)
        analytic = float(np.dot(grad_tex, d_tex) + np.dot(grad_gamma, d_gamma))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- mask


def test_mask_restricts_the_fit(scene):
    """Outside the mask the photo may hold anything (here random colours and NaNs): the fit is
    the same as on the clean photo with the same mask, and close to the truth on what it saw;
    without the mask the garbage spoils the fit."""
    rows, cols = np.mgrid[: CAMERA.image_size[0], : CAMERA.image_size[1]]
    mask = (cols < 130) & (rows > 30)  # most of the face, not its right side and forehead
    rng = np.random.default_rng(7)
    garbage = np.where(mask[..., None], scene.image, rng.uniform(0, 1, scene.image.shape)).astype(np.float32)
    garbage[~mask & (rows % 7 == 0)] = np.nan
    clean_fit = jax.device_get(
        fa.fit_appearance(scene.model, scene.verts, scene.image, CAMERA, mask, config=SMALL_PRIORS)
    )
    fit = jax.device_get(fa.fit_appearance(scene.model, scene.verts, garbage, CAMERA, mask, config=SMALL_PRIORS))

    np.testing.assert_array_equal(fit.used, mask & scene.covered)
    for a, b in zip(jax.tree.leaves(fit), jax.tree.leaves(clean_fit)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # 14.8k of the 22.7k face pixels, a smaller range of normals: still close (measured:
    # photometric 1e-5, colours where the mask sees them 5.7e-5, coefficients 3.3e-4, light
    # 2.4e-4). Without the mask the garbage moves those colours by 0.1.
    assert fit.photometric_error < 1e-4, fit.photometric_error
    seen = scene.seen(mask)
    np.testing.assert_allclose(fit.colors[seen], scene.colors[seen], atol=5e-4)
    np.testing.assert_allclose(fit.tex_coeffs, scene.tex, atol=5e-3)

    unmasked = jax.device_get(
        fa.fit_appearance(scene.model, scene.verts, np.nan_to_num(garbage), CAMERA, config=SMALL_PRIORS)
    )
    assert np.abs(unmasked.colors[seen] - scene.colors[seen]).max() > 0.02


# --------------------------------------------------------------------------- errors


def test_input_errors(scene):
    model, verts, image = scene.model, scene.verts, scene.image
    with pytest.raises(ValueError, match="no albedo.*Poisson"):
        fa.fit_appearance(synthetic_face(), verts, image, CAMERA)
    with pytest.raises(ValueError, match="posed vertices"):
        fa.fit_appearance(model, verts[:-1], image, CAMERA)
    with pytest.raises(ValueError, match="geometry fit failed"):
        fa.fit_appearance(model, np.full_like(verts, np.nan), image, CAMERA)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        fa.fit_appearance(model, verts, image[..., :2], CAMERA)
    with pytest.raises(ValueError, match="camera renders 224x224"):
        fa.fit_appearance(model, verts, image[:112, :112], CAMERA)
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        fa.fit_appearance(model, verts, (image * 255).astype(np.uint8), CAMERA)
    nan_image = image.copy()
    nan_image[100, 100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fa.fit_appearance(model, verts, nan_image, CAMERA)
    with pytest.raises(ValueError, match="mask must be"):
        fa.fit_appearance(model, verts, image, CAMERA, np.ones((224, 200), bool))
    with pytest.raises(ValueError, match="not in the image / mask"):
        fa.fit_appearance(model, verts, image, CAMERA, np.zeros((224, 224), bool))
    with pytest.raises(ValueError, match="not in the image / mask"):
        fa.fit_appearance(model, verts + np.array([5.0, 0.0, 0.0], np.float32), image, CAMERA)
    for config, match in (
        (fa.AppearanceFitConfig(steps=0), "steps"),
        (fa.AppearanceFitConfig(learning_rate=0.0), "learning_rate"),
        (fa.AppearanceFitConfig(albedo_prior=-1.0), "prior"),
        (fa.AppearanceFitConfig(light_prior=np.nan), "prior"),
    ):
        with pytest.raises(ValueError, match=match):
            fa.fit_appearance(model, verts, image, CAMERA, config=config)
