"""Matrix-free symmetric positive definite solves: preconditioned conjugate gradients.

:func:`solve_spd` is jit-able (static iteration cap), reports its residual and whether it
converged, and is differentiable by implicit differentiation: ``jax.lax.custom_linear_solve``
solves the adjoint system ``A^T y = g`` with the same PCG instead of unrolling the iterations,
so gradients w.r.t. the right-hand side and w.r.t. anything the operator closes over cost one
more solve. Operators and vectors may be any pytree of arrays; one call solves one system (vmap
for a batch, e.g. over images or colour channels), or, with ``batch_axes=k``, one independent system
per index of the leading ``k`` axes of every leaf (per-system step sizes and diagnostics, one loop
that runs until all have converged, no per-iteration ``select`` of the loop state as under vmap).
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


def _dot(a, b, batch_axes: int = 0) -> jax.Array:
    if batch_axes == 0:
        return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    return sum(
        jnp.sum(jnp.conj(x) * y, axis=tuple(range(batch_axes, x.ndim)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def _axpy(alpha, x, y):
    """alpha * x + y over pytrees; ``alpha`` is a scalar or has the leaves' leading (batch) shape."""
    if jnp.ndim(alpha) == 0:
        return jax.tree.map(lambda a, b: alpha * a + b, x, y)
    return jax.tree.map(lambda a, b: jnp.reshape(alpha, alpha.shape + (1,) * (a.ndim - alpha.ndim)) * a + b, x, y)


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
    batch_axes: int = 0,
):
    """PCG for ``A x = b`` (A symmetric positive definite, ``preconditioner`` ~ A^-1, SPD).

    Stops when CG's recursive residual ``||r|| <= tol ||b||`` or after ``max_iters``
    iterations. Returns ``(x, SolveInfo)``; the reported residual is recomputed as
    ``b - A x`` (in float32 it can sit slightly above ``tol`` near 1e-6). Not differentiable
    itself; use :func:`solve_spd`.

    ``batch_axes=k``: the leading ``k`` axes of every leaf index independent systems (``matvec``
    and ``preconditioner`` must not mix them); SolveInfo fields then have that batch shape and a
    converged system stops moving while the others iterate.
    """
    if batch_axes:
        return _batched_cg(matvec, b, preconditioner, x0, tol, max_iters, batch_axes)
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


def _batched_cg(matvec, b, preconditioner, x0, tol, max_iters, batch_axes):
    """:func:`conjugate_gradient` for independent systems along the leading ``batch_axes`` axes."""
    precondition = preconditioner or (lambda r: r)

    def dot(u, v):
        return _dot(u, v, batch_axes)

    x = jax.tree.map(jnp.zeros_like, b) if x0 is None else x0
    r = _sub(b, matvec(x))
    z = precondition(r)
    b_norm = jnp.sqrt(dot(b, b).real)
    threshold = (tol * b_norm) ** 2
    rr, rz = dot(r, r).real, dot(r, z)
    iterations = jnp.zeros(b_norm.shape, jnp.int32)

    def cond(state):
        *_, active, _ = state
        return jnp.any(active)

    def body(state):
        x, r, p, rz, _, active, k = state
        ap = matvec(p)
        # Frozen systems take zero steps (no select of the loop state); 0/0 there is masked too.
        alpha = jnp.where(active, rz / dot(p, ap), 0)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        z = precondition(r)
        rz_next, rr = dot(r, z), dot(r, r).real
        beta = jnp.where(active, rz_next / rz, 0)
        p = _axpy(beta, p, z)
        k = k + active
        return x, r, p, rz_next, rr, (rr > threshold) & (k < max_iters), k

    active = (rr > threshold) & (max_iters > 0)
    x, r, *_, rr, _, k = jax.lax.while_loop(cond, body, (x, r, z, rz, rr, active, iterations))
    true_residual = _sub(b, matvec(x))
    relative = jnp.sqrt(dot(true_residual, true_residual).real) / jnp.where(b_norm > 0, b_norm, 1.0)
    return x, SolveInfo(relative, k, rr <= threshold)


def solve_spd(
    matvec: Operator,
    b,
    *,
    preconditioner: Operator | None = None,
    tol: float = 1e-5,
    max_iters: int = 500,
    batch_axes: int = 0,
):
    """Differentiable ``A^-1 b`` for a symmetric positive definite ``matvec``: ``(x, SolveInfo)``.

    Gradients come from implicit differentiation (the adjoint system is solved by the same
    PCG), w.r.t. ``b`` and every array ``matvec`` closes over. ``batch_axes``: as in
    :func:`conjugate_gradient` (independent systems along the leading axes).
    """

    def solve(operator, rhs):
        return conjugate_gradient(
            operator, rhs, preconditioner=preconditioner, tol=tol, max_iters=max_iters, batch_axes=batch_axes
        )

    return jax.lax.custom_linear_solve(matvec, b, solve, symmetric=True, has_aux=True)
