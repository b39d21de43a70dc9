"""UV-space operations and the rasterizer on real face meshes (ICT-FaceKit, MediaPipe)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.rotation import euler_to_matrix, rigid_transform
from faceflax.render.uv import (
    erode,
    render_uv_texture,
    sample_uv_texture,
    uv_fragments,
    uv_to_vertex_colors,
    vertex_colors_to_uv,
    vertex_visibility,
)
from tests.render.scenes import assert_matches_reference

UV_SIZE = (256, 256)


def posed(model, yaw_degrees, pitch_degrees=0.0):
    """The model's mean shape turned by ``yaw`` (and ``pitch``) degrees, batch 1."""
    angles = jnp.radians(jnp.array([[pitch_degrees, yaw_degrees, 0.0]]))
    return rigid_transform(jnp.asarray(model.mean)[None], euler_to_matrix(angles), jnp.zeros((1, 3)))


def painted(size=UV_SIZE):
    """A smooth RGB pattern [1,H,W,3] over UV space."""
    v, u = np.mgrid[0 : size[0], 0 : size[1]] / np.array(size).reshape(2, 1, 1)
    pattern = [
        0.5 + 0.4 * np.sin(2 * np.pi * 2 * u),
        0.5 + 0.4 * np.cos(2 * np.pi * 3 * v),
        u * v,
    ]
    return jnp.asarray(np.stack(pattern, -1)[None], jnp.float32)


@pytest.mark.parametrize("yaw", [0.0, 50.0])
def test_fast_rasterizer_matches_reference_on_face_meshes(ict_face, mediapipe_face, yaw):
    for model, size in ((ict_face, (64, 64)), (mediapipe_face, (96, 96))):
        camera = PerspectiveCamera.for_image_size(size)
        clip = np.asarray(camera.to_clip(posed(model, yaw)))
        fragments = assert_matches_reference(clip, model.faces, size)
        assert np.mean(np.asarray(fragments.tri_id) >= 0) > 0.15


def test_painted_uv_texture_survives_render_and_resampling(ict_face):
    """Thesis Fig. 4.2: a known UV pattern, rendered and sampled back, on visible texels."""
    camera = PerspectiveCamera()
    uv_frags = uv_fragments(ict_face.uvs, ict_face.uv_faces, UV_SIZE)
    tex = painted()
    verts = posed(ict_face, 0.0)
    image, covered = render_uv_texture(tex, verts, ict_face.faces, ict_face.uvs, ict_face.uv_faces, camera)
    assert 0.2 < float(covered.mean()) < 0.9
    sample = sample_uv_texture(image, verts, ict_face.faces, camera, uv_frags)
    visible = np.asarray(sample.visible[0])
    in_layout = np.asarray(uv_frags.tri_id[0]) >= 0
    assert visible[in_layout].mean() > 0.6
    error = np.abs(np.asarray(sample.texture[0]) - np.asarray(tex[0]))[visible]
    assert error.mean() < 0.01
    assert np.quantile(error, 0.99) < 0.1
    assert np.all(np.asarray(sample.texture[0])[~visible] == 0)


def test_turning_the_head_hides_one_cheek_and_keeps_the_other(ict_face):
    camera = PerspectiveCamera()
    uv_frags = uv_fragments(ict_face.uvs, ict_face.uv_faces, UV_SIZE)
    image = jnp.ones((1, 224, 224, 3))
    left_right = []
    for yaw in (0.0, 60.0):
        visible = np.asarray(
            sample_uv_texture(image, posed(ict_face, yaw), ict_face.faces, camera, uv_frags).visible[0]
        )
        left_right.append((visible[:, :128].mean(), visible[:, 128:].mean()))
    (frontal_left, frontal_right), (turned_left, turned_right) = left_right
    assert min(frontal_left, frontal_right) / max(frontal_left, frontal_right) > 0.85
    assert min(turned_left, turned_right) / max(turned_left, turned_right) < 0.5


def test_image_mask_is_eroded_before_sampling(ict_face):
    camera = PerspectiveCamera()
    uv_frags = uv_fragments(ict_face.uvs, ict_face.uv_faces, UV_SIZE)
    verts = posed(ict_face, 0.0)
    image = jnp.ones((1, 224, 224, 3))
    mask = jnp.zeros((1, 224, 224)).at[:, :, :112].set(1.0)  # the image's left half only
    full = sample_uv_texture(image, verts, ict_face.faces, camera, uv_frags).visible
    masked = sample_uv_texture(image, verts, ict_face.faces, camera, uv_frags, image_mask=mask).visible
    eroded = sample_uv_texture(image, verts, ict_face.faces, camera, uv_frags, image_mask=mask, erode_pixels=10).visible
    assert float(full.mean()) > float(masked.mean()) > float(eroded.mean()) > 0
    coords_x = np.asarray(sample_uv_texture(image, verts, ict_face.faces, camera, uv_frags).image_coords[0, ..., 0])
    assert np.all(coords_x[np.asarray(eroded[0])] * 224 - 0.5 < 112 - 10 + 0.5)


def test_vertex_visibility_scores(ict_face):
    """MvInvert eq. 4: cosines toward the camera, 0 when back-facing, hidden or near the silhouette."""
    camera = PerspectiveCamera()
    nose_tip = int(ict_face.landmarks[30])
    frontal = np.asarray(vertex_visibility(posed(ict_face, 0.0), ict_face.faces, camera)[0])
    assert frontal[nose_tip] > 0.8
    assert np.all((frontal >= 0) & (frontal <= 1))
    strict = np.asarray(vertex_visibility(posed(ict_face, 0.0), ict_face.faces, camera, boundary_pixels=8)[0])
    assert np.count_nonzero(strict) < np.count_nonzero(frontal)
    assert np.all(strict[strict > 0] == frontal[strict > 0])
    turned = np.asarray(vertex_visibility(posed(ict_face, 70.0), ict_face.faces, camera)[0])
    x = np.asarray(ict_face.mean[:, 0])
    # At 70 degrees one half of the face loses most of its visible vertices, the other does not.
    halves = (np.count_nonzero(turned[x < -0.2]), np.count_nonzero(turned[x > 0.2]))
    assert min(halves) < 0.3 * max(halves)


def test_uv_and_vertex_colours_convert_both_ways(ict_face):
    positions = np.asarray(ict_face.mean)
    colours = jnp.asarray(0.5 + 0.5 * np.tanh(positions / 0.6), jnp.float32)[None]
    uv_frags = uv_fragments(ict_face.uvs, ict_face.uv_faces, (512, 512))
    tex = vertex_colors_to_uv(colours, ict_face.faces, uv_frags)
    back = uv_to_vertex_colors(tex, ict_face.uvs, ict_face.faces, ict_face.uv_faces, len(positions))
    error = np.abs(np.asarray(back - colours))[0]
    assert np.quantile(error, 0.9) < 0.01
    assert np.all(np.asarray(tex)[0][np.asarray(uv_frags.tri_id[0]) < 0] == 0)


def test_erode_matches_scipy():
    mask = np.random.default_rng(0).uniform(size=(2, 30, 40)) > 0.2
    mask = ndimage.binary_closing(mask, iterations=2)
    for radius in (1, 3):
        structure = np.ones((1, 2 * radius + 1, 2 * radius + 1), bool)
        expected = ndimage.binary_erosion(mask, structure, border_value=0)
        np.testing.assert_array_equal(erode(jnp.asarray(mask), radius), expected)
