import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from faceflax.nn.conv import Conv, Dense
from faceflax.nn.spectral_norm import SPECTRAL_STATS, as_matrix, spectral_normalize


def _power_iterate(kernel, steps, seed=0):
    u = jax.random.normal(jax.random.key(seed), (kernel.shape[-1],))
    u = u / jnp.linalg.norm(u)
    for _ in range(steps):
        normalized, u, sigma = spectral_normalize(kernel, u)
    return normalized, u, sigma


def _ill_conditioned(rng, m, n, condition):
    q1, _ = np.linalg.qr(rng.normal(size=(m, m)))
    q2, _ = np.linalg.qr(rng.normal(size=(n, n)))
    singular = np.geomspace(1.0, 1.0 / condition, min(m, n)) * 7.0
    return (q1[:, : len(singular)] * singular) @ q2[: len(singular)]


@pytest.mark.parametrize(
    "kernel",
    [
        np.random.default_rng(0).normal(size=(64, 32)),
        np.random.default_rng(1).normal(size=(3, 3, 16, 8)) * 5.0,
        _ill_conditioned(np.random.default_rng(2), 40, 30, 1e6),
    ],
    ids=["dense", "conv", "ill-conditioned"],
)
def test_sigma_of_normalized_kernel_is_one(kernel):
    kernel = jnp.asarray(kernel, jnp.float32)
    true_sigma = np.linalg.svd(np.asarray(as_matrix(kernel)), compute_uv=False)[0]
    normalized, _, sigma = _power_iterate(kernel, steps=30)
    assert float(sigma) == pytest.approx(true_sigma, rel=1e-2)
    top = np.linalg.svd(np.asarray(as_matrix(normalized)), compute_uv=False)[0]
    assert top == pytest.approx(1.0, rel=1e-2)


def test_one_iteration_per_call_converges_across_calls():
    kernel = jnp.asarray(np.random.default_rng(3).normal(size=(50, 20)), jnp.float32)
    true_sigma = np.linalg.svd(np.asarray(kernel), compute_uv=False)[0]
    errors = [abs(float(_power_iterate(kernel, steps)[2]) - true_sigma) for steps in (1, 3, 30)]
    assert errors[0] > errors[2] and errors[2] < 1e-2 * true_sigma


def test_gradient_matches_finite_differences_at_converged_u():
    # u and v are constants for the gradient (as in SN-GAN); at a converged u, sigma = u^T W v is
    # stationary in u and v, so this gradient is the true derivative of W / sigma_max(W).
    with jax.enable_x64():
        kernel = jnp.asarray(np.random.default_rng(4).normal(size=(6, 5)), jnp.float64)
        _, u, _ = _power_iterate(kernel, steps=200)
        check_grads(lambda w: spectral_normalize(w, u)[0], (kernel,), order=1, modes=("rev",))


@pytest.mark.parametrize(
    "layer, x",
    [(Dense(7, spectral_norm=True), jnp.ones((2, 5))), (Conv(4, spectral_norm=True), jnp.ones((2, 6, 6, 3)))],
)
def test_u_is_state_that_persists_across_steps(layer, x):
    variables = layer.init(jax.random.key(0), x)
    assert SPECTRAL_STATS in variables and "batch_stats" not in variables
    u0 = variables[SPECTRAL_STATS]["sn"]["u"]
    _, updated = layer.apply(variables, x, mutable=[SPECTRAL_STATS])
    u1 = updated[SPECTRAL_STATS]["sn"]["u"]
    assert not np.allclose(u0, u1)
    _, again = layer.apply({**variables, **updated}, x, mutable=[SPECTRAL_STATS])
    expected = spectral_normalize(variables["params"]["sn"]["kernel"], u1)[1]
    np.testing.assert_allclose(again[SPECTRAL_STATS]["sn"]["u"], expected, rtol=1e-6)
    frozen = layer.apply(variables, x, update_stats=False, mutable=[SPECTRAL_STATS])[1]
    np.testing.assert_array_equal(frozen[SPECTRAL_STATS]["sn"]["u"], u0)
