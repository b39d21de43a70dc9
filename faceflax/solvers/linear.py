"""Matrix-free symmetric positive definite solves: preconditioned conjugate gradients.

:func:`solve_spd` is jit-able (static iteration cap), reports its residual and whether it
converged, and is differentiable by implicit differentiation: ``jax.lax.custom_linear_solve``
solves the adjoint system ``A^T y = g`` with the same PCG instead of unrolling the iterations,
so gradients w.r.t. the right-hand side and w.r.t. anything the operator closes over cost one
more solve. Operators and vectors may be any pytree of arrays; one call solves one system (vmap
for a batch, e.g. over images or colour channels).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Operator = Callable[[Any], Any]


class SolveInfo(NamedTuple):
    """Diagnostics of a solve: never silent about non-convergence."""

    residual: jax.Array  # ||b - A x|| / ||b||, the true residual recomputed at the end
    iterations: jax.Array  # int32
    converged: jax.Array  # bool: CG's residual reached tol before the iteration cap


def _dot(a, b) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(alpha, x, y):
    """alpha * x + y over pytrees."""
    return jax.tree.map(lambda a, b: alpha * a + b, x, y)


def _sub(x, y):
    return jax.tree.map(jnp.subtract, x, y)


def conjugate_gradient(
    matvec: Operator,
    b,
    *,
    preconditioner: Operator | None = None,
    x0=None,
    tol: float = 1e-5,
    max_iters: int = 500,
):
    """PCG for ``A x = b`` (A symmetric positive definite, ``preconditioner`` ~ A^-1, SPD).

    Stops when CG's recursive residual ``||r|| <= tol ||b||`` or after ``max_iters``
    iterations. Returns ``(x, SolveInfo)``; the reported residual is recomputed as
    ``b - A x`` (in float32 it can sit slightly above ``tol`` near 1e-6). Not differentiable
    itself; use :func:`solve_spd`.
    """
    precondition = preconditioner or (lambda r: r)
    x = jax.tree.map(jnp.zeros_like, b) if x0 is None else x0
    r = _sub(b, matvec(x))
    z = precondition(r)
    b_norm = jnp.sqrt(_dot(b, b))
    threshold = (tol * b_norm) ** 2

    def cond(state):
        _, r, _, _, _, k = state
        return (_dot(r, r) > threshold) & (k < max_iters)

    def body(state):
        x, r, z, p, rz, k = state
        ap = matvec(p)
        alpha = rz / _dot(p, ap)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        z = precondition(r)
        rz_next = _dot(r, z)
        p = _axpy(rz_next / rz, p, z)
        return x, r, z, p, rz_next, k + 1

    rz = _dot(r, z)
    x, r, *_, k = jax.lax.while_loop(cond, body, (x, r, z, z, rz, jnp.int32(0)))
    true_residual = _sub(b, matvec(x))
    relative = jnp.sqrt(_dot(true_residual, true_residual)) / jnp.where(b_norm > 0, b_norm, 1.0)
    return x, SolveInfo(relative, k, _dot(r, r) <= threshold)


def solve_spd(
    matvec: Operator,
    b,
    *,
    preconditioner: Operator | None = None,
    tol: float = 1e-5,
    max_iters: int = 500,
):
    """Differentiable ``A^-1 b`` for a symmetric positive definite ``matvec``: ``(x, SolveInfo)``.

    Gradients come from implicit differentiation (the adjoint system is solved by the same
    PCG), w.r.t. ``b`` and every array ``matvec`` closes over.
    """

    def solve(operator, rhs):
        return conjugate_gradient(operator, rhs, preconditioner=preconditioner, tol=tol, max_iters=max_iters)

    return jax.lax.custom_linear_solve(matvec, b, solve, symmetric=True, has_aux=True)
