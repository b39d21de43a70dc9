"""The embedded synthetic dataset: exact ground truth, determinism, pairs (ICT-FaceKit from the asset mirror)."""

import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data, transform

from faceflax.data.synthetic import MAX_YAW_DEG, SyntheticFaces
from faceflax.geometry.morphable import shape
from faceflax.geometry.rotation import euler_to_matrix
from faceflax.render.uv import sample_uv_texture

UV = 128


def smooth_textures():
    """Two smooth RGB textures (resized natural images): fine detail would alias in the render."""
    images = (data.chelsea()[:300, :300], data.coffee()[:300, 100:400])
    return np.stack([transform.resize(im / 255.0, (UV, UV), anti_aliasing=True) for im in images]).astype(np.float32)


@pytest.fixture(scope="module")
def unlit(ict_face):
    return SyntheticFaces(
        size=256, uv_size=UV, num_examples=50, model=ict_face, lighting=False, textures=smooth_textures()
    )


def posed_shape(dataset, example, angles):
    verts = np.asarray(shape(dataset.model, example["id_coeffs"], example["exp_coeffs"]))
    centred = verts - 0.5 * (verts.min(0) + verts.max(0))
    return centred @ np.asarray(euler_to_matrix(jnp.asarray(angles))).T


def test_resampling_the_render_with_the_true_pose_reproduces_the_texture(unlit):
    batch = unlit.batch(np.arange(4))
    for i in range(4):
        example = {k: v[i] for k, v in batch.items()}
        posed = posed_shape(unlit, example, example["angles"])
        sample = sample_uv_texture(
            jnp.asarray(example["image"])[None],
            jnp.asarray(posed)[None],
            unlit.model.faces,
            unlit.camera,
            unlit.uv_frags,
        )
        visible = np.asarray(sample.visible[0])
        np.testing.assert_array_equal(visible, example["visible"])
        assert visible.mean() > 0.1
        error = np.abs(np.asarray(sample.texture[0])[visible] - example["texture"][visible])
        assert error.mean() < 0.01, (i, error.mean())
        # The landmarks are the true pose's projections of the model's landmark vertices.
        pix, _ = unlit.camera.project(jnp.asarray(posed)[np.asarray(unlit.model.landmarks)])
        np.testing.assert_allclose(example["landmarks"], np.asarray(pix), atol=1e-3)


def test_examples_are_deterministic_and_pairs_differ_in_pose(unlit, ict_face):
    first, batch, again = unlit[7], unlit.batch([3, 7]), unlit.batch([3, 7])
    for key, value in first.items():
        np.testing.assert_array_equal(batch[key], again[key])
        # Alone or in a batch, an example differs only by float32 rounding (at a few silhouette pixels).
        np.testing.assert_allclose(value, batch[key][1], atol=1e-3)
    other_seed = SyntheticFaces(
        size=256, uv_size=UV, num_examples=50, model=ict_face, seed=1, textures=smooth_textures()
    )
    assert not np.allclose(other_seed[7]["id_coeffs"], first["id_coeffs"])
    angles = unlit.batch(np.arange(40))["angles"]
    assert np.abs(np.degrees(angles[:, 1])).max() <= MAX_YAW_DEG and np.abs(np.degrees(angles[:, 1])).max() > 45
    assert not np.allclose(first["angles"], first["angles_2"]) and not np.allclose(first["image"], first["image_2"])
    posed = posed_shape(unlit, first, first["angles_2"])
    pix, _ = unlit.camera.project(jnp.asarray(posed)[np.asarray(unlit.model.landmarks)])
    np.testing.assert_allclose(first["landmarks_2"], np.asarray(pix), atol=1e-3)


def test_lighting_changes_the_image_but_not_the_ground_truth(unlit, ict_face):
    lit = SyntheticFaces(size=256, uv_size=UV, num_examples=50, model=ict_face, textures=smooth_textures())
    a, b = unlit[2], lit[2]
    np.testing.assert_array_equal(a["texture"], b["texture"])
    assert np.abs(a["image"] - b["image"])[a["face_mask"]].mean() > 0.01 and np.abs(b["gamma"]).sum() > 0


def test_textures_come_from_the_embedded_photos_by_default(ict_face):
    dataset = SyntheticFaces(size=64, uv_size=512, num_examples=2, model=ict_face)
    assert dataset.textures.shape == (2, 512, 512, 3)
    example = dataset[0]
    assert 0 <= example["image"].min() and example["image"].max() <= 1 and example["visible"].any()


def test_bad_arguments(ict_face, unlit):
    with pytest.raises(ValueError, match="textures must be"):
        SyntheticFaces(uv_size=UV, model=ict_face, textures=smooth_textures()[:1])
    with pytest.raises(IndexError):
        unlit.batch([50])
