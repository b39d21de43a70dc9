"""Poisson image blending against an independent scipy.sparse direct solve, OpenCV, and its own invariants.

Most tests share one image size and one set of solver options so that XLA compiles each program once.
"""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import skimage.data

from faceflax.solvers.linear import conjugate_gradient
from faceflax.solvers.poisson_image import harmonic_fill, poisson_blend, symmetric_fill

H, W, C = 24, 30, 3
TOL = 1e-6
OPTIONS = {"tol": TOL, "max_iters": 100}
blend = jax.jit(poisson_blend, static_argnames=("mixed", "tol", "max_iters"))


def images(seed, shape=(H, W, C)):
    rng = np.random.default_rng(seed)
    return rng.random(shape, np.float32), rng.random(shape, np.float32)


# ----------------------------------------------------------------------------- reference


def reference_blend(source, target, mask, mixed=False):
    """Pérez 2003 eq. 7 assembled as a sparse matrix (Neumann image border) and solved by spsolve."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    h, w, c = source.shape
    n = int(mask.sum())
    index = np.full((h, w), -1)
    index[mask] = np.arange(n)
    diagonal = np.zeros(n)
    rows, cols = [], []
    rhs = np.zeros((n, c))
    ii, jj = np.nonzero(mask)
    for di, dj in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        qi, qj = ii + di, jj + dj
        inside = (qi >= 0) & (qi < h) & (qj >= 0) & (qj < w)
        p, qi, qj = index[ii[inside], jj[inside]], qi[inside], qj[inside]
        diagonal[p] += 1
        ds = source[ii[inside], jj[inside]] - source[qi, qj]
        dt = target[ii[inside], jj[inside]] - target[qi, qj]
        rhs[p] += np.where(np.abs(dt) > np.abs(ds), dt, ds) if mixed else ds
        in_mask = mask[qi, qj]
        rows.append(p[in_mask])
        cols.append(index[qi[in_mask], qj[in_mask]])
        rhs[p[~in_mask]] += target[qi[~in_mask], qj[~in_mask]]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    matrix = sp.csc_matrix((-np.ones(rows.size), (rows, cols)), shape=(n, n)) + sp.diags(diagonal)
    out = target.copy()
    out[mask] = spla.spsolve(matrix.tocsc(), rhs).reshape(n, c)
    return out


def random_masks():
    """Masks with several components, holes, and components touching the image border."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:H, :W]
    blobs = ndi.gaussian_filter(rng.random((H, W)), 2.0)
    masks = {
        "blobs": blobs > np.quantile(blobs, 0.45),
        "ring_at_border": (np.hypot(yy - 3, xx - 15) < 11) & (np.hypot(yy - 3, xx - 15) > 4),
        "noise": rng.random((H, W)) < 0.75,
        "two_parts_and_border": (np.hypot(yy - 12, xx - 8) < 5) | ((yy > 15) & (xx > 20)) | (xx == 0),
    }
    for name, mask in masks.items():  # the properties the test claims to cover
        assert 0 < mask.sum() < mask.size, name
    assert any(ndi.label(m)[1] >= 2 for m in masks.values())
    assert any((ndi.binary_fill_holes(m) != m).any() for m in masks.values())
    assert all(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() for m in masks.values())
    return masks


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("mixed", [False, True])
def test_matches_scipy_spsolve_on_random_masks(mixed):
    for k, (name, mask) in enumerate(random_masks().items()):
        source, target = images(k)
        out, info = blend(source, target, mask, mixed=mixed, **OPTIONS)
        np.testing.assert_allclose(out, reference_blend(source, target, mask, mixed), atol=1e-4, err_msg=name)
        np.testing.assert_array_equal(np.asarray(out)[~mask], target[~mask])  # exactly the target outside
        assert info.converged.shape == (C,) and bool(info.converged.all()) and float(info.residual.max()) < 1e-5
        assert int(info.iterations.max()) <= 15, name  # the multigrid preconditioner at work


def test_constants_and_ramps_are_reproduced():
    mask = random_masks()["blobs"]
    constant = np.full((H, W, C), 0.3, np.float32)
    out, _ = blend(constant, constant, mask, **OPTIONS)
    np.testing.assert_array_equal(out, constant)
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    ramp = np.stack([0.02 * yy + 0.01 * xx, 0.5 - 0.015 * xx, 0.01 * yy], -1).astype(np.float32)
    out, _ = blend(ramp, ramp, mask, **OPTIONS)
    np.testing.assert_allclose(out, ramp, atol=1e-6)
    out, _ = blend(ramp + 0.25, ramp, mask, **OPTIONS)  # a constant offset of the source disappears
    np.testing.assert_allclose(out, ramp, atol=1e-6)


def test_full_mask_fixes_the_mean_to_the_targets_and_empty_mask_is_the_target():
    source, target = images(11)
    out, info = blend(source, target, np.ones((H, W), bool), **OPTIONS)
    expected = source - source.mean((0, 1)) + target.mean((0, 1))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert bool(info.converged.all())
    out, info = blend(source, target, np.zeros((H, W), bool), **OPTIONS)
    np.testing.assert_array_equal(out, target)
    assert int(info.iterations.max()) == 0 and bool(info.converged.all())


def test_mixed_gradients_keep_the_targets_stronger_edges():
    yy, xx = np.mgrid[:H, :W]
    stripes = np.where((xx // 3) % 2 == 0, 0.2, 0.8).astype(np.float32)  # strong target edges every 3 px
    target = np.repeat(stripes[..., None], C, -1)
    source = np.repeat((0.4 + 0.005 * yy + 0.03 * np.sin(yy + xx))[..., None], C, -1).astype(np.float32)
    mask = (yy > 3) & (yy < H - 4) & (xx > 4) & (xx < W - 5)
    # Pixel and right neighbour across a stripe edge, >= 4 px inside the mask (the boundary's stripes decay
    # like exp(-pi d / 3) into a harmonic correction).
    edges = ndi.binary_erosion(mask, iterations=4) & ((xx % 3) == 2)

    def jump(image):
        image = np.asarray(image)[..., 0]
        return np.abs(image - np.roll(image, -1, 1))[edges]

    mixed, _ = blend(source, target, mask, mixed=True, **OPTIONS)
    normal, _ = blend(source, target, mask, **OPTIONS)
    # The stripes survive inside the mask (a mixed field is no gradient: least squares bends it slightly).
    np.testing.assert_allclose(jump(mixed), 0.6, atol=0.03)
    assert jump(normal).max() < 0.1  # plain cloning replaces them by the source's weak gradients


# ----------------------------------------------------------------------------- OpenCV


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_agrees_with_opencv_seamless_clone_on_natural_images(name):
    """OpenCV solves on the mask's bounding rectangle with guidance switching at the mask eroded by 3 px.

    So we compare with our blend into that eroded mask (a rectangle, where both problems nearly coincide),
    inside it. Measured: mean |difference| 2.0 (chelsea) and 2.5 (coffee) grey levels, 95th percentile 7-8.
    """
    size = 256
    target8 = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    source8 = cv2.resize(getattr(skimage.data, name)(), (size, size), interpolation=cv2.INTER_AREA)
    top, bottom, left, right = 64, 192, 50, 206
    mask8 = np.zeros((size, size), np.uint8)
    mask8[top:bottom, left:right] = 255
    centre = (left + (right - left) // 2, top + (bottom - top) // 2)
    # OpenCV 5.0 overwrites the mask it is given (eroded and inverted): hand it a copy.
    opencv = cv2.seamlessClone(source8, target8, mask8.copy(), centre, cv2.NORMAL_CLONE).astype(np.float64)
    eroded = cv2.erode(mask8, np.ones((3, 3), np.uint8), iterations=3) > 0
    # The blend is local: a crop holding the mask and its neighbours gives the same result, faster.
    crop = (slice(top - 2, bottom + 2), slice(left - 2, right + 2))
    out, info = jax.jit(poisson_blend)(source8[crop] / 255.0, target8[crop] / 255.0, eroded[crop])
    ours = np.clip(np.asarray(out, np.float64) * 255, 0, 255)
    difference = np.abs(ours - opencv[crop])[eroded[crop]]
    assert bool(info.converged.all())
    assert difference.mean() < 3.5 and np.percentile(difference, 95) < 10.0
    np.testing.assert_array_equal(opencv[~(mask8 > 0)], target8[~(mask8 > 0)])  # OpenCV keeps outside the rect


# ----------------------------------------------------------------------------- fills


def test_harmonic_fill_reproduces_linear_functions_and_is_harmonic():
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    linear = np.stack([0.01 * yy + 0.02 * xx, 0.9 - 0.01 * xx, 0.2 + 0.015 * yy], -1).astype(np.float32)
    hole = random_masks()["blobs"]
    hole[0], hole[-1], hole[:, 0], hole[:, -1] = False, False, False, False  # Neumann border: keep off it
    fill = jax.jit(lambda image, hole: harmonic_fill(image, hole, **OPTIONS))
    out, info = fill(np.where(hole[..., None], 0.0, linear), hole)
    np.testing.assert_allclose(out, linear, atol=1e-5)
    assert bool(info.converged.all())
    noisy = images(3)[0]
    out = np.asarray(fill(noisy, hole)[0], np.float64)
    laplacian = 4 * out[1:-1, 1:-1] - out[:-2, 1:-1] - out[2:, 1:-1] - out[1:-1, :-2] - out[1:-1, 2:]
    assert np.abs(laplacian[hole[1:-1, 1:-1]]).max() < 1e-5
    np.testing.assert_array_equal(out[~hole], noisy[~hole])


def test_symmetric_fill_restores_a_symmetric_texture():
    rng = np.random.default_rng(5)
    half = ndi.gaussian_filter(rng.random((H, W // 2, C)), (2, 2, 0)).astype(np.float32)
    texture = np.concatenate([half, half[:, ::-1]], axis=1)  # left-right symmetric
    yy, xx = np.mgrid[:H, :W]
    known = (xx < W // 2) | (np.hypot(yy - 12, xx - 24) < 3)  # left half and a patch on the right
    both_missing = (yy < 3) & ((xx < 4) | (xx >= W - 4))
    known &= ~both_missing
    corrupted = np.where(known[..., None], texture, rng.random(texture.shape).astype(np.float32))
    out, new_known, info = jax.jit(lambda t, k: symmetric_fill(t, k, **OPTIONS))(corrupted, known)
    np.testing.assert_array_equal(new_known, ~both_missing)
    np.testing.assert_allclose(np.asarray(out)[~both_missing], texture[~both_missing], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(out)[both_missing], corrupted[both_missing])
    assert bool(info.converged.all())


# ----------------------------------------------------------------------------- gradients, batching


def test_gradients_match_central_finite_differences():
    source, target = images(21)
    mask = random_masks()["two_parts_and_border"]
    weights = np.random.default_rng(22).normal(size=(H, W, C)).astype(np.float32)

    def loss(s, t):
        return jnp.sum(weights * blend(s, t, mask, **OPTIONS)[0])

    grad_s, grad_t = jax.jit(jax.grad(loss, argnums=(0, 1)))(source, target)
    rng = np.random.default_rng(23)
    eps = 0.05  # the blend is affine in (source, target): central differences are exact up to rounding
    for _ in range(2):
        ds, dt = rng.normal(size=(2, H, W, C)).astype(np.float32)
        numeric_s = (loss(source + eps * ds, target) - loss(source - eps * ds, target)) / (2 * eps)
        numeric_t = (loss(source, target + eps * dt) - loss(source, target - eps * dt)) / (2 * eps)
        np.testing.assert_allclose(np.sum(grad_s * ds), numeric_s, rtol=2e-3)
        np.testing.assert_allclose(np.sum(grad_t * dt), numeric_t, rtol=2e-3)
    far = ~ndi.binary_dilation(mask, iterations=2)
    np.testing.assert_allclose(np.asarray(grad_t)[far], weights[far], atol=1e-6)  # identity outside
    np.testing.assert_array_equal(np.asarray(grad_s)[far], 0.0)


def test_vmap_and_batch_path_equal_per_image_calls():
    masks = list(random_masks().values())[:3]
    pairs = [images(30 + k) for k in range(3)]
    sources, targets = (np.stack(x) for x in zip(*pairs))
    stacked = np.stack(masks)
    singles = [blend(s, t, m, **OPTIONS) for (s, t), m in zip(pairs, masks)]
    vmapped, vinfo = jax.jit(jax.vmap(lambda s, t, m: poisson_blend(s, t, m, **OPTIONS)))(sources, targets, stacked)
    batched, binfo = blend(sources, targets, stacked.astype(np.float32), **OPTIONS)  # float masks: > 0.5
    shared, _ = blend(sources, targets, masks[0], **OPTIONS)
    assert binfo.iterations.shape == vinfo.iterations.shape == (3, C)
    for k, (out, info) in enumerate(singles):
        np.testing.assert_allclose(vmapped[k], out, atol=1e-6)
        np.testing.assert_allclose(batched[k], out, atol=1e-6)
        np.testing.assert_array_equal(binfo.iterations[k], info.iterations)
        np.testing.assert_allclose(shared[k], blend(*pairs[k], masks[0], **OPTIONS)[0], atol=1e-6)


def test_non_convergence_is_flagged():
    source, target = images(41)
    _, info = blend(source, target, random_masks()["blobs"], tol=1e-7, max_iters=1)
    assert not bool(info.converged.any())
    assert (np.asarray(info.iterations) == 1).all() and float(info.residual.min()) > 1e-7


def test_batched_conjugate_gradient_solves_independent_systems():
    rng = np.random.default_rng(50)
    q = np.linalg.qr(rng.normal(size=(3, 12, 12)))[0]
    matrices = jnp.asarray(q * np.geomspace(1, [10, 100, 5], 12)[None].transpose(2, 0, 1) @ q.transpose(0, 2, 1))
    b = jnp.asarray(rng.normal(size=(3, 12)), jnp.float32).at[2].set(0.0)
    x, info = conjugate_gradient(lambda v: jnp.einsum("sij,sj->si", matrices, v), b, tol=1e-6, batch_axes=1)
    for k in range(2):
        np.testing.assert_allclose(x[k], np.linalg.solve(matrices[k], b[k]), rtol=1e-4, atol=1e-5)
    assert info.iterations.shape == (3,) and int(info.iterations[2]) == 0 and bool(info.converged.all())
    assert int(info.iterations[0]) != int(info.iterations[1])  # each system stops on its own


def test_bad_shapes_raise_value_errors():
    image = np.zeros((H, W, C), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        poisson_blend(image, image[:, :-1], np.ones((H, W), bool))
    with pytest.raises(ValueError, match="NHWC"):
        poisson_blend(image[..., 0], image[..., 0], np.ones((H, W), bool))
    with pytest.raises(ValueError, match="mask must have shape"):
        poisson_blend(image, image, np.ones((H, W + 1), bool))
    with pytest.raises(ValueError, match="mask must have shape"):
        poisson_blend(image, image, np.ones((2, H, W), bool))
    with pytest.raises(ValueError, match="known_mask"):
        symmetric_fill(image, np.ones((W, H), bool))
