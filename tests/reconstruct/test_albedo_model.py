"""``Reconstructor`` with an albedo model (BFM-like; built here, no asset): the photo is rendered from known
albedo and light, so the completed UV texture can be scored against the truth everywhere, including the
texels the photo never shows (MvInvert sec. 3.1: those come from the fitted PCA texture)."""

import numpy as np
import pytest

from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.lighting import shade
from faceflax.geometry.mesh import vertex_normals
from faceflax.geometry.morphable import albedo
from faceflax.geometry.rotation import euler_to_matrix, rigid_transform
from faceflax.reconstruct.pipeline import ReconstructOptions, Reconstructor
from faceflax.reconstruct.texture import complete_texture
from faceflax.render import interpolate, rasterize
from faceflax.render.uv import vertex_colors_to_uv
from tests.synthetic_faces import synthetic_face

PHOTO = 320
# No symmetric flip: the light here is not symmetric, so the other cheek's colours would be wrong; this is
# MvInvert's coarse texture (sec. 3.1), inpainting from the fitted texture alone.
OPTIONS = ReconstructOptions(crop_size=256, uv_size=128, view_size=128, flip=False, identity=False)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    model = synthetic_face(albedo_rank=6)
    camera = PerspectiveCamera.for_image_size((PHOTO, PHOTO)).replace(distance=14.0)
    verts = np.asarray(rigid_transform(model.mean, euler_to_matrix(np.radians([4.0, 15.0, 0.0])), np.zeros(3)))
    gamma = np.zeros((3, 9), np.float32)
    gamma[:, 0], gamma[:, 1:4] = [0.1, 0.0, -0.1], [0.1, 0.15, 0.1]
    colors = np.asarray(
        shade(albedo(model, rng.normal(size=6).astype(np.float32)), vertex_normals(verts, model.faces), gamma)
    )
    fragments = rasterize(camera.to_clip(verts)[None], model.faces, (PHOTO, PHOTO))
    covered = np.asarray(fragments.tri_id[0] >= 0)
    render = np.asarray(interpolate(colors[None], fragments, model.faces)[0])
    photo = np.where(covered[..., None], render, np.float32([0.25, 0.3, 0.5])).astype(np.float32)
    landmarks = np.asarray(camera.project(verts[np.asarray(model.landmarks)])[0])
    reconstructor = Reconstructor(model, OPTIONS)
    rec = reconstructor(np.clip(photo, 0, 1), "synthetic", landmarks)
    truth = np.asarray(vertex_colors_to_uv(colors[None], model.faces, reconstructor.uv_frags)[0])
    return rec, reconstructor, truth


def test_albedo_and_light_are_fitted_and_explain_the_photo(scene):
    rec, _, _ = scene
    assert rec.appearance is not None
    assert float(rec.appearance.photometric_error) < 0.02
    assert rec.appearance.losses[-1] < 0.2 * rec.appearance.losses[0]


def test_sampled_texels_read_the_photo_where_the_face_is(scene):
    rec, reconstructor, truth = scene
    assert rec.visible.sum() > 0.1 * reconstructor.layout.sum()
    assert np.abs(rec.sampled[rec.visible] - truth[rec.visible]).mean() < 0.02


def test_hidden_texels_come_from_the_fitted_model_texture(scene):
    rec, reconstructor, truth = scene
    assert not rec.mirrored.any()
    hidden = reconstructor.layout & ~rec.visible
    assert hidden.sum() > 0.1 * reconstructor.layout.sum()
    error = np.abs(rec.completed[hidden] - truth[hidden]).mean()
    harmonic = np.asarray(complete_texture(rec.sampled, rec.visible, symmetric=False).texture)
    assert error < 0.03
    assert error < 0.5 * np.abs(harmonic[hidden] - truth[hidden]).mean()
    np.testing.assert_array_equal(rec.completed[rec.visible], rec.sampled[rec.visible])
