"""SH lighting against Deep3DFaceRecon's compute_color written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.geometry.lighting import SH_A, SH_C, sh_basis, shade

K0 = np.pi / np.sqrt(4 * np.pi)  # a0 * c0


def unit_normals(rng: np.random.Generator, *shape: int) -> np.ndarray:
    n = rng.normal(size=(*shape, 3))
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)


def dfr_compute_color(texture, norm, gamma, init_lit=0.8):
    """Deep3DFaceRecon models/bfm.py compute_color (B, N, 3), gamma (B, 27), in numpy."""
    a = [np.pi, 2 * np.pi / np.sqrt(3.0), 2 * np.pi / np.sqrt(8.0)]
    c = [
        1 / np.sqrt(4 * np.pi),
        np.sqrt(3.0) / np.sqrt(4 * np.pi),
        3 * np.sqrt(5.0) / np.sqrt(12 * np.pi),
    ]
    gamma = gamma.reshape(-1, 3, 9) + np.array([init_lit] + [0] * 8).reshape(1, 1, 9)
    gamma = gamma.transpose(0, 2, 1)
    x, y, z = norm[..., :1], norm[..., 1:2], norm[..., 2:]
    big_y = np.concatenate(
        [
            a[0] * c[0] * np.ones_like(x),
            -a[1] * c[1] * y,
            a[1] * c[1] * z,
            -a[1] * c[1] * x,
            a[2] * c[2] * x * y,
            -a[2] * c[2] * y * z,
            0.5 * a[2] * c[2] / np.sqrt(3.0) * (3 * z**2 - 1),
            -a[2] * c[2] * x * z,
            0.5 * a[2] * c[2] * (x**2 - y**2),
        ],
        axis=-1,
    )
    rgb = [big_y @ gamma[..., k : k + 1] for k in range(3)]
    return np.concatenate(rgb, axis=-1) * texture, big_y


def test_matches_deep3dfacerecon_compute_color():
    rng = np.random.default_rng(0)
    albedo = rng.uniform(size=(2, 40, 3)).astype(np.float32)
    normals = unit_normals(rng, 2, 40)
    gamma = rng.normal(scale=0.3, size=(2, 27)).astype(np.float32)
    expected, basis = dfr_compute_color(albedo, normals, gamma)
    np.testing.assert_allclose(sh_basis(normals), basis, atol=1e-6)
    np.testing.assert_allclose(shade(albedo, normals, gamma), expected, atol=2e-6)
    np.testing.assert_allclose(shade(albedo, normals, gamma.reshape(2, 3, 9)), expected, atol=2e-6)


def test_basis_is_orthogonal_on_the_sphere():
    # Fibonacci-sphere quadrature: (4 pi / N) sum B B^T = diag(a_l^2), independent of the signs.
    n = 20000
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + np.sqrt(5.0)) * i
    r = np.sqrt(1 - z**2)
    points = np.stack([r * np.cos(phi), r * np.sin(phi), z], -1).astype(np.float32)
    b = np.asarray(sh_basis(points), np.float64)
    gram = 4 * np.pi / n * b.T @ b
    a2 = np.array([SH_A[0]] + [SH_A[1]] * 3 + [SH_A[2]] * 5) ** 2
    np.testing.assert_allclose(gram, np.diag(a2), atol=2e-3 * a2.max())
    # The normalisation constants are the real-SH ones.
    np.testing.assert_allclose(
        SH_C,
        [np.sqrt(1 / (4 * np.pi)), np.sqrt(3 / (4 * np.pi)), np.sqrt(15 / (4 * np.pi))],
    )


@pytest.mark.parametrize("gamma_shape", [(27,), (9,)])
@pytest.mark.parametrize("init_lit", [0.8, 0.25])
def test_zero_gamma_is_constant_ambient(gamma_shape, init_lit):
    rng = np.random.default_rng(1)
    albedo = rng.uniform(size=(30, 3)).astype(np.float32)
    out = shade(albedo, unit_normals(rng, 30), np.zeros(gamma_shape), init_lit=init_lit)
    np.testing.assert_allclose(out, init_lit * K0 * albedo, rtol=1e-6)


def test_dc_term_is_independent_of_the_normal():
    rng = np.random.default_rng(2)
    gamma = np.zeros((3, 9), np.float32)
    gamma[:, 0] = [0.5, -0.2, 1.0]
    out = shade(np.ones((50, 3)), unit_normals(rng, 50), gamma, init_lit=0.0)
    np.testing.assert_allclose(out, np.broadcast_to(K0 * gamma[:, 0], (50, 3)), rtol=1e-6)
    # A first-band term is not: light from +z (gamma_2) brightens normals facing +z.
    gamma[:, 2] = 1.0
    out = np.asarray(shade(np.ones((2, 3)), [[0, 0, 1.0], [0, 0, -1.0]], gamma))
    assert np.all(out[0] > out[1])


def test_monochrome_equals_equal_per_channel():
    rng = np.random.default_rng(3)
    albedo = rng.uniform(size=(3, 25, 3)).astype(np.float32)
    normals = unit_normals(rng, 3, 25)
    mono = rng.normal(size=(3, 9)).astype(np.float32)
    expected = np.asarray(shade(albedo, normals, np.repeat(mono[:, None], 3, axis=1)))
    # A batch of exactly three monochrome vectors needs the explicit layout.
    got = shade(albedo, normals, mono, per_channel=False)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # Shared (unbatched) lighting broadcasts over the batch.
    shared = shade(albedo, normals, mono[0])
    np.testing.assert_allclose(
        shared,
        shade(albedo, normals, np.broadcast_to(mono[0], (3, 9)), per_channel=False),
        atol=1e-6,
    )
    np.testing.assert_allclose(shared[0], expected[0], atol=1e-6)


def test_bad_gamma_shapes_raise():
    with pytest.raises(ValueError, match="monochrome"):
        shade(np.ones((2, 3)), np.ones((2, 3)), np.zeros(10))
    with pytest.raises(ValueError, match="per-channel"):
        shade(np.ones((2, 3)), np.ones((2, 3)), np.zeros(9), per_channel=True)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    albedo = rng.uniform(size=(12, 3))
    normals = unit_normals(rng, 12).astype(np.float64)
    gamma = rng.normal(scale=0.3, size=27)
    weights = rng.normal(size=(12, 3))

    def loss(gamma, normals):
        return jnp.sum(weights * shade(albedo, normals, gamma) ** 2)

    with jax.enable_x64(True):
        g_gamma, g_normals = jax.jit(jax.grad(loss, argnums=(0, 1)))(gamma, normals)
        loss = jax.jit(loss)
        assert g_gamma.dtype == jnp.float64
        eps = 1e-6
        for arg, grad in ((0, g_gamma), (1, g_normals)):
            x = (gamma, normals)[arg]
            for idx in [np.unravel_index(k, x.shape) for k in rng.choice(x.size, 8)]:
                delta = np.zeros_like(x)
                delta[idx] = eps
                args_plus = [gamma, normals]
                args_minus = [gamma, normals]
                args_plus[arg] = x + delta
                args_minus[arg] = x - delta
                fd = (loss(*args_plus) - loss(*args_minus)) / (2 * eps)
                np.testing.assert_allclose(grad[idx], fd, rtol=1e-6, atol=1e-9)

    # float32 (arrays cast explicitly: jit's dispatch cache may still hold the float64
    # signature): the gradient w.r.t. gamma of sum(w * colour) is sum_v w albedo Y.
    w32, albedo32, normals32 = (x.astype(np.float32) for x in (weights, albedo, normals))
    grad = jax.grad(lambda g: jnp.sum(w32 * shade(albedo32, normals32, g)))(gamma.astype(np.float32))
    basis = np.asarray(sh_basis(normals32))
    expected = np.einsum("vc,vc,vk->ck", w32, albedo32, basis)
    np.testing.assert_allclose(grad.reshape(3, 9), expected, rtol=1e-5, atol=1e-5)
