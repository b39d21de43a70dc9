"""PCG against dense solves, its diagnostics, and implicit gradients against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.solvers.linear import conjugate_gradient, solve_spd


def spd_matrix(n, seed, condition=50.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1, condition, n)) @ q.T


def test_pcg_matches_a_dense_solve_and_reports_its_residual():
    a = spd_matrix(40, 0)
    b = np.random.default_rng(1).normal(size=40)
    x, info = conjugate_gradient(lambda v: jnp.asarray(a, jnp.float32) @ v, jnp.asarray(b, jnp.float32), tol=1e-6)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-4, atol=1e-4)
    assert bool(info.converged) and float(info.residual) <= 1e-5  # true residual; float32 drift
    assert int(info.iterations) <= 40 + 5


def test_preconditioning_cuts_iterations_and_non_convergence_is_flagged():
    diag = np.geomspace(1, 1e4, 200)
    a = jnp.asarray(np.diag(diag) + 0.01 * spd_matrix(200, 2), jnp.float32)
    b = jnp.ones(200)
    _, plain = conjugate_gradient(lambda v: a @ v, b, tol=1e-5, max_iters=1000)
    _, jacobi = conjugate_gradient(lambda v: a @ v, b, preconditioner=lambda r: r / jnp.diag(a), tol=1e-5)
    assert bool(plain.converged) and bool(jacobi.converged)
    assert int(jacobi.iterations) < int(plain.iterations) / 3
    _, capped = conjugate_gradient(lambda v: a @ v, b, tol=1e-5, max_iters=3)
    assert not bool(capped.converged) and int(capped.iterations) == 3 and float(capped.residual) > 1e-5


def test_implicit_gradients_match_finite_differences():
    base = jnp.asarray(spd_matrix(12, 3, condition=10.0), jnp.float32)
    b = jnp.asarray(np.random.default_rng(4).normal(size=12), jnp.float32)
    weights = jnp.asarray(np.random.default_rng(5).normal(size=12), jnp.float32)

    def loss(scale, b):
        x, _ = solve_spd(lambda v: base @ v + scale * v, b, tol=1e-7, max_iters=100)
        return jnp.dot(weights, x)

    grad_scale, grad_b = jax.grad(loss, argnums=(0, 1))(0.5, b)
    eps = 1e-2
    numeric_scale = (loss(0.5 + eps, b) - loss(0.5 - eps, b)) / (2 * eps)
    np.testing.assert_allclose(grad_scale, numeric_scale, rtol=1e-3)
    expected_b = np.linalg.solve(np.asarray(base) + 0.5 * np.eye(12), np.asarray(weights))
    np.testing.assert_allclose(grad_b, expected_b, rtol=1e-4, atol=1e-5)


def test_vmap_over_right_hand_sides_equals_a_loop():
    a = jnp.asarray(spd_matrix(20, 6), jnp.float32)
    bs = jnp.asarray(np.random.default_rng(7).normal(size=(4, 20)), jnp.float32)
    batched, info = jax.vmap(lambda b: solve_spd(lambda v: a @ v, b, tol=1e-6))(bs)
    for i in range(4):
        single, _ = solve_spd(lambda v: a @ v, bs[i], tol=1e-6)
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)
    assert info.converged.shape == (4,) and bool(info.converged.all())
