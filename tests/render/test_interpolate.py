"""Attribute interpolation and texture sampling: oracles, perspective correctness, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from faceflax.render import interpolate, rasterize, texture
from tests.render.scenes import pinhole_clip, pixel_rays

SIZE = (32, 32)


def tilted_quad():
    """A quad leaning away from the camera (depths 3..5), two triangles, with UVs and colours."""
    view = np.array([[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [1.2, 1.1, 5.0], [-1.2, 1.1, 5.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uvs = np.array([[0.1, 0.9], [0.9, 0.9], [0.9, 0.1], [0.1, 0.1]], np.float32)
    return view, faces, uvs


def central_difference(loss, x, direction, eps):
    return (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)


def test_texture_matches_scipy_bilinear_with_edge_clamping():
    rng = np.random.default_rng(0)
    tex = rng.uniform(size=(2, 9, 13, 3)).astype(np.float32)
    uv = rng.uniform(-0.2, 1.2, size=(2, 7, 5, 2)).astype(np.float32)
    ours = np.asarray(texture(tex, uv))
    for b in range(2):
        rows = uv[b, ..., 1] * 9 - 0.5
        cols = uv[b, ..., 0] * 13 - 0.5
        for c in range(3):
            expected = ndimage.map_coordinates(tex[b, ..., c], [rows, cols], order=1, mode="nearest")
            np.testing.assert_allclose(ours[b, ..., c], expected, atol=1e-5)


def test_texture_is_shared_across_the_batch_when_unbatched():
    tex = np.random.default_rng(1).uniform(size=(4, 4, 2)).astype(np.float32)
    uv = np.random.default_rng(2).uniform(size=(3, 5, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(texture(tex, uv), texture(np.broadcast_to(tex, (3, 4, 4, 2)), uv))
    with pytest.raises(ValueError, match="tex must be batched"):
        texture(np.zeros((2, 4, 4, 2)), uv)


def test_interpolated_positions_lie_on_the_camera_rays():
    """Perspective-correct barycentrics: interpolating view-space positions gives the ray hit."""
    view, faces, _ = tilted_quad()
    fragments = rasterize(pinhole_clip(view[None]), faces, SIZE)
    points = np.asarray(interpolate(view[None].astype(np.float32), fragments, faces))[0]
    covered = np.asarray(fragments.tri_id[0]) >= 0
    assert covered.mean() > 0.1
    rays = pixel_rays(SIZE)
    np.testing.assert_allclose(points[covered], rays[covered] * points[covered][:, 2:], atol=1e-4)
    # Screen-space (affine) interpolation would miss the rays by far more than that.
    depth_range = points[covered][:, 2]
    assert depth_range.max() - depth_range.min() > 1.0


def test_uv_triangles_may_index_a_different_vertex_set():
    view, faces, uvs = tilted_quad()
    fragments = rasterize(pinhole_clip(view[None]), faces, SIZE)
    seam_uvs = np.concatenate([uvs, uvs + 5.0])  # a second copy, as at a UV seam
    seam_faces = faces + 4
    np.testing.assert_allclose(
        interpolate(seam_uvs, fragments, seam_faces) - 5.0 * (fragments.tri_id[..., None] >= 0),
        interpolate(uvs, fragments, faces),
        atol=1e-5,
    )


def render_loss_fn(faces, uvs, weights, size=SIZE):
    """Sum of weighted textured-and-coloured pixels: smooth in everything away from edges."""

    def loss(view, colours, tex):
        fragments = rasterize(pinhole_clip(view), faces, size)
        shaded = texture(tex, interpolate(uvs, fragments, faces)) * interpolate(colours, fragments, faces)
        return jnp.sum(weights * shaded)

    return loss


def test_gradients_match_central_differences_away_from_silhouettes():
    view, faces, uvs = tilted_quad()
    rng = np.random.default_rng(3)
    view = jnp.asarray(view[None], jnp.float32)
    colours = jnp.asarray(rng.uniform(0.2, 1, (1, 4, 3)), jnp.float32)
    tex = jnp.asarray(rng.uniform(0.2, 1, (1, 8, 8, 3)), jnp.float32)
    base = rasterize(pinhole_clip(view), faces, SIZE)
    # Only pixels well inside a triangle count, so small perturbations change no coverage.
    interior = np.asarray(base.bary).min(-1) > 0.08
    weights = jnp.asarray(rng.uniform(size=(1, *SIZE, 3)) * interior[..., None], jnp.float32)
    loss = jax.jit(render_loss_fn(faces, uvs, weights))
    grads = jax.grad(loss, argnums=(0, 1, 2))(view, colours, tex)
    args = [view, colours, tex]
    for which, eps in ((0, 2e-3), (1, 1e-2), (2, 1e-2)):
        for trial in range(3):
            direction = jnp.asarray(
                np.random.default_rng(10 + trial).normal(size=args[which].shape),
                jnp.float32,
            )

            def along(x, which=which):
                return loss(*[x if i == which else a for i, a in enumerate(args)])

            numeric = central_difference(along, args[which], direction, eps)
            analytic = jnp.sum(grads[which] * direction)
            np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-2 * abs(float(numeric)) + 1e-3)
    # The position perturbations kept every interior pixel on its triangle (else the check is void).
    for trial in range(3):
        direction = np.random.default_rng(10 + trial).normal(size=view.shape)
        for sign in (-1, 1):
            moved = rasterize(pinhole_clip(view + sign * 2e-3 * direction), faces, SIZE)
            assert np.array_equal(np.asarray(moved.tri_id)[interior], np.asarray(base.tri_id)[interior])


def test_texture_gradient_w_r_t_uv_matches_central_differences():
    rng = np.random.default_rng(4)
    tex = jnp.asarray(rng.uniform(size=(1, 6, 6, 3)), jnp.float32)
    # Keep samples away from texel centres, where bilinear interpolation has kinks.
    cells = rng.integers(0, 5, (1, 4, 4, 2)) + rng.uniform(0.6, 0.9, (1, 4, 4, 2))
    uv = jnp.asarray(cells / 6, jnp.float32)
    weights = jnp.asarray(rng.uniform(size=(1, 4, 4, 3)), jnp.float32)

    def loss(uv):
        return jnp.sum(weights * texture(tex, uv))

    direction = jnp.asarray(rng.normal(size=uv.shape), jnp.float32)
    numeric = central_difference(loss, uv, direction, 1e-3)
    np.testing.assert_allclose(jnp.sum(jax.grad(loss)(uv) * direction), numeric, rtol=1e-2)
