import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from faceflax.nn.grid_sample import grid_sample

MODES = list(itertools.product([False, True], ["zeros", "border"]))
IDS = [f"align_corners={a}-{p}" for a, p in MODES]


def _reference(image, grid, align_corners, padding_mode):
    """Slow NumPy grid_sample, one output pixel and one tap at a time (torch's bilinear rules)."""
    _, h, w, c = image.shape
    out = np.zeros((*grid.shape[:3], c))
    for n, i, j in np.ndindex(*grid.shape[:3]):
        x, y = grid[n, i, j]
        if align_corners:
            x, y = (x + 1) / 2 * (w - 1), (y + 1) / 2 * (h - 1)
        else:
            x, y = ((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2
        if padding_mode == "border":
            x, y = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        for xi, yi in itertools.product([x0, x0 + 1], [y0, y0 + 1]):
            if 0 <= xi < w and 0 <= yi < h:
                out[n, i, j] += (1 - abs(x - xi)) * (1 - abs(y - yi)) * image[n, yi, xi]
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, size=(2, 4, 6, 2)).astype(np.float32)  # about half the points out of range
    grid[0, 0, :4] = [[-1, -1], [1, 1], [-1, 1], [1.0, -1]]  # the corners exactly
    return image, grid


@pytest.mark.parametrize("align_corners, padding_mode", MODES, ids=IDS)
def test_matches_numpy_reference(data, align_corners, padding_mode):
    image, grid = data
    out = grid_sample(image, grid, align_corners=align_corners, padding_mode=padding_mode)
    assert out.shape == (2, 4, 6, 3) and out.dtype == jnp.float32
    expected = _reference(image.astype(np.float64), grid.astype(np.float64), align_corners, padding_mode)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align_corners, padding_mode", MODES, ids=IDS)
def test_matches_torch_values_and_gradients(data, align_corners, padding_mode):
    torch = pytest.importorskip("torch")
    image, grid = data
    cotangent = np.random.default_rng(1).normal(size=(2, 4, 6, 3)).astype(np.float32)
    timage = torch.tensor(image.transpose(0, 3, 1, 2), requires_grad=True)
    tgrid = torch.tensor(grid, requires_grad=True)
    tout = torch.nn.functional.grid_sample(
        timage, tgrid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners
    )
    (tout * torch.tensor(cotangent.transpose(0, 3, 1, 2))).sum().backward()

    def f(im, g):
        return grid_sample(im, g, align_corners=align_corners, padding_mode=padding_mode)

    out, vjp = jax.vjp(f, jnp.asarray(image), jnp.asarray(grid))
    d_image, d_grid = vjp(jnp.asarray(cotangent))
    np.testing.assert_allclose(out, tout.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_image, timage.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_grid, tgrid.grad.numpy(), rtol=1e-5, atol=2e-5)  # grid units: x W/2


@pytest.mark.parametrize("align_corners", [False, True])
def test_pixel_centre_grid_is_identity(align_corners):
    image = jax.random.normal(jax.random.key(0), (1, 4, 6, 2))
    if align_corners:
        ys, xs = jnp.linspace(-1, 1, 4), jnp.linspace(-1, 1, 6)
    else:
        ys, xs = (2 * jnp.arange(4) + 1) / 4 - 1, (2 * jnp.arange(6) + 1) / 6 - 1
    grid = jnp.stack(jnp.meshgrid(xs, ys), axis=-1)[None]
    np.testing.assert_allclose(grid_sample(image, grid, align_corners=align_corners), image, atol=1e-6)


@pytest.mark.parametrize("align_corners, padding_mode", MODES, ids=IDS)
def test_gradients_match_finite_differences(align_corners, padding_mode):
    # Pixel coordinates at integer + [0.2, 0.8], from two texels outside the image on each side, so
    # no point (or its finite-difference step) crosses a texel kink or the border clamp.
    h, w = 4, 5
    rng = np.random.default_rng(2)
    px = rng.integers(-2, w + 1, size=(2, 3, 3)) + rng.uniform(0.2, 0.8, size=(2, 3, 3))
    py = rng.integers(-2, h + 1, size=(2, 3, 3)) + rng.uniform(0.2, 0.8, size=(2, 3, 3))
    if align_corners:
        gx, gy = px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1
    else:
        gx, gy = (2 * px + 1) / w - 1, (2 * py + 1) / h - 1
    with jax.enable_x64():
        grid = jnp.asarray(np.stack([gx, gy], axis=-1), jnp.float64)
        image = jnp.asarray(rng.normal(size=(2, h, w, 2)), jnp.float64)

        def f(im, g):
            return grid_sample(im, g, align_corners=align_corners, padding_mode=padding_mode)

        check_grads(f, (image, grid), order=1, modes=("rev",), eps=1e-5)


def test_jit_and_vmap_agree_with_eager(data):
    image, grid = data
    eager = grid_sample(image, grid, padding_mode="border")
    jitted = jax.jit(grid_sample, static_argnames="padding_mode")
    np.testing.assert_allclose(jitted(image, grid, padding_mode="border"), eager, atol=1e-6)
    stacked = jax.vmap(lambda i, g: grid_sample(i, g, padding_mode="border"))(
        jnp.stack([image, image[::-1]]), jnp.stack([grid, grid])
    )
    np.testing.assert_allclose(stacked[0], eager, atol=1e-6)
    np.testing.assert_allclose(stacked[1], grid_sample(image[::-1], grid, padding_mode="border"), atol=1e-6)


@pytest.mark.parametrize(
    "image_shape, grid_shape, padding_mode, match",
    [
        ((5, 7, 3), (1, 4, 6, 2), "zeros", "NHWC"),
        ((2, 5, 7, 3), (2, 4, 6, 3), "zeros", r"\[B, Ho, Wo, 2\]"),
        ((2, 5, 7, 3), (1, 4, 6, 2), "zeros", "B = 2"),
        ((2, 5, 7, 3), (2, 4, 6, 2), "reflection", "use one of"),
    ],
)
def test_bad_arguments_raise(image_shape, grid_shape, padding_mode, match):
    with pytest.raises(ValueError, match=match):
        grid_sample(jnp.zeros(image_shape), jnp.zeros(grid_shape), padding_mode=padding_mode)
