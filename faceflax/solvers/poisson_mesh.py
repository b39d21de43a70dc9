"""Screened Poisson fusion of per-vertex colours from several views (MvInvert sec. 3.2, eq. 4-6).

Each view ``k`` gives colours ``I^k [V,3]`` at the vertices of one mesh and visibility scores
``s^k [V]`` (eq. 4, :func:`faceflax.render.uv.vertex_visibility`). :func:`fuse_views` stitches
them into one set of per-vertex colours ``T`` that follows, in every triangle, the colour
gradient of the view that sees that triangle best, with the colour offset fixed by view 0.

**Gradient operator (eq. 6).** ``G`` (3F x V) maps a piecewise-linear function on the vertices
to its constant gradient in each triangle: ``(G f)_t = sum_a f[t_a] grad(phi_a)`` with the hat
gradients ``grad(phi_a) = N x e_a / (2 A) = c x e_a / |c|^2`` (``c = (p1 - p0) x (p2 - p0)``,
``N = c / |c|``, ``A = |c| / 2``, ``e_a`` the edge opposite corner ``a``, counter-clockwise).
:func:`gradient_operator` builds it matrix-free (``G f`` gathers, ``G^T g`` scatter-adds);
zero-area triangles get zero gradients. Since ``c`` is normal to the edges,
``grad(phi_a) . grad(phi_b) = (e_a . e_b) / |c|^2``: each triangle adds to ``G^T G`` a
Laplacian with weight ``w_t,c = (u . v) / |u x v|^2 = cot(theta_c) / (2 A_t)`` on the edge
opposite corner ``c`` (``u, v`` the edges leaving ``c``), which is how the solver assembles it.

**View selection (eq. 5).** Triangle confidence in view ``k`` is the minimum of its corners'
scores; each triangle is selected by the view of highest confidence (ties: the lower view
index, so the reference view 0 wins ties); triangles with zero confidence in every view go to
the extra selection ``K`` (the paper's ``c_{k+1}``), whose target gradient is zero. So the
``K + 1`` selection matrices partition the triangles. Vertices likewise: the view of highest
score, ``K`` ("none") where every score is 0. Selection is piecewise constant in the scores
and carries no gradient (``stop_gradient``).

**The system solved.** With ``sel(t)`` the view of triangle ``t``, ``rho_t`` the row weight
(below), ``S`` the screened vertices and ``lambda`` = ``screening`` (0.1 in the paper), per
colour channel

    minimise_T  sum_t rho_t |(G T)_t - g_t|^2 + lambda^2 sum_{i in S} (T_i - J_i)^2,
    g_t = (G I^{sel(t)})_t (0 for the extra selection),

i.e. the least-squares problem (6), solved through its normal equations

    (G^T R G + lambda^2 D_S) T = G^T R g + lambda^2 D_S J,     R = diag(rho) (x I_3), D_S = diag(1_S).

Here ``S`` = the vertices that view 0 selects and ``J = I^0`` there (eq. 6's screening rows),
plus the singular-case rule: a connected component of the mesh (static, from ``faces``) with
no vertex selected by view 0 would leave its colour offset undetermined (the normal matrix is
singular there), so in such a component every vertex selected by some view is screened toward
that view's colour (``J_i = I^{sel(i)}_i``, same weight ``lambda^2``), and if no vertex of the
component is seen at all, all its vertices are screened toward view 0's colours. This never
changes the solution where view 0 screens a vertex of the component, and makes the system
positive definite (up to components held together only by zero-area triangles, which are
not detected). Both sides use the same triangle weights, so the right-hand side is
``sum_t rho_t L_t I^{sel(t)}`` (each triangle's Laplacian applied to the selected view's
colours); the solution is exactly ``I^k`` wherever one view is selected everywhere and is
consistent with the screening.

**Row weighting.** ``weighting="uniform"`` (default) is the paper's eq. 6: every triangle's
three gradient rows have weight 1 (``rho_t = 1``), so the normal matrix is the sum of
``cot / (2 A)`` Laplacians and small triangles weigh more per unit area (their gradient
residuals are in colour per length, ``1/h`` larger). ``weighting="area"`` uses
``rho_t = A_t / mean(A)``: the discretisation of ``integral |grad T - g|^2 dA`` (the cotangent
Laplacian), independent of the tessellation, equal to the paper's rows on a mesh of equal
triangles. The default follows the paper so the fused colours reproduce eq. 6; choose
``"area"`` for meshes with very uneven triangles. Either way ``G`` is in units of 1/length of
``verts``, so the strength of ``lambda`` relative to the gradient rows depends on the units
(model units here: about 1.8 across a face).

**Solver.** The normal matrix is a weighted graph Laplacian on the mesh edges plus a
diagonal; on the ICT face (uniform rows) its diagonal spans 5 orders of magnitude (tiny
triangles around the eyes: weights up to 1e8) and the offset mode is held only by
``lambda^2 = 0.01``, so plain or Jacobi PCG needs hundreds of iterations (SuperLU takes about
240 ms at 37k vertices on the 2-core development CPU). The preconditioner is a
smoothed-aggregation algebraic multigrid V-cycle:

* setup, once per mesh topology (:func:`mesh_hierarchy`, numpy, about 1 s at 37k vertices,
  cached): the edge graph, aggregates (greedy: a root and its strongly connected neighbours,
  ``|a_ij| >= strength sqrt(a_ii a_jj)`` judged on a reference shape's weights, or unit weights
  without one), and every static index map: the sparsity of the prolongator ``P`` (own
  aggregate plus neighbours' aggregates), of ``A P`` and of ``P^T A P``, down to a level of at
  most ``coarsest`` (300) nodes. Nodes are renumbered by decreasing degree (then reverse
  Cuthill-McKee / aggregate order), so each neighbour slot is used by a prefix of the rows and
  every sparse product is a few gathers over prefixes with no padding read (``_RowTable``):
  no scatter anywhere in the V-cycle;
* numeric phase, every call, in JAX (so it follows the geometry, the weighting and the
  screening): ``P = (I - 4/3 D_l1^-1 L) P_tent`` (``D_l1`` the l1 row norms of the Laplacian
  part ``L``, so ``P`` keeps constants exactly), the Galerkin off-diagonals of ``P^T L P`` by
  gathers and segment sums over the static term lists, the coarse diagonal from the
  Laplacian row sums plus the restricted screening ``P^T m`` (a lumped Galerkin mass, exact on
  constants), and the inverse of the coarsest matrix (Cholesky, then the factor inverted row
  by row: XLA:CPU's triangular solve is 40x slower at this size);
* V(1,1)-cycle with a degree-2 Chebyshev smoother on ``D_l1^-1 A`` over ``[0.1, 1]`` (its
  spectrum lies in ``(0, 1]``: no eigenvalue estimate), the same polynomial before and after
  the coarse correction, so the preconditioner is symmetric positive definite, as PCG needs.
  Plain aggregation (coarse operators by summing edge weights) needed about 3x the
  iterations, aggregation without the reference shape's strengths about 2x.

PCG (:func:`faceflax.solvers.linear.solve_spd`) runs on the Jacobi-scaled system
``D^-1/2 A D^-1/2 y = D^-1/2 b`` (``D = diag(A)``): ``tol`` then bounds a residual in which
every row counts alike (the raw rows of tiny triangles are 1e4 times larger), which tracks the
colour error (about 0.3 ``tol``) down to the float32 floor. On the ICT face subdivided once
(37k vertices, 74k triangles, 3 views) it takes 10 iterations at the default ``tol=1e-4``,
float32 colours within 2e-5 of a float64 direct solve; ``tol=1e-5`` takes 12 and is no more
accurate (that is the float32 floor). The Laplacian part is applied in difference form
``sum_j w_ij (x_i - x_j)``, so constants are in its null space exactly in float32 too.
``SolveInfo.residual`` is the float32 true residual of the scaled system: where tiny
triangles meet a weak screening (uniform rows on the ICT face) rounding the solution to
float32 alone leaves about 1e-3, above ``tol`` while the colours are accurate; ``converged``
reports PCG's own criterion.

The colour channels are independent systems with one matrix and one V-cycle, solved by one
PCG per channel in a single loop (``solve_spd(..., batch_axes=1)``: per-channel step sizes,
stopping and diagnostics). The operators work on ``[V, C]`` rows, so every neighbour gather
reads ``C`` adjacent floats; ``vmap`` over the channels instead (batch axis first inside
PCG's loop) gathers strided elements and adds transposes, measured 2x slower. XLA:CPU details
that matter here: a value is written to a buffer (``_materialize``) before it is gathered from,
or XLA fuses its producer into the gather and recomputes it per element (nested over the
V-cycle: 10-60x); reductions over short axes are written as explicit sums; the VJPs of
permutations and of the right-hand side gather instead of scatter-adding (custom VJPs).
``benchmarks/poisson_mesh.py`` measures it all against SuperLU.

**Batches and differentiation.** :func:`fuse_views_batch` vmaps :func:`fuse_views` over a
leading batch axis (one shared topology and hierarchy; PCG then runs until every item has
converged). Gradients w.r.t. the view colours and the vertex positions come from implicit
differentiation (one more PCG solve of the same symmetric system); the preconditioner and
the Jacobi scaling are ``stop_gradient``-ed (they change the iterates, not the solution),
and the view selection is piecewise constant (no gradient w.r.t. the scores).

Usage::

    hierarchy = mesh_hierarchy(model.faces, reference_verts=model.mean)  # once per mesh (numpy)
    fused, info = fuse_views(verts, model.faces, colors, scores, hierarchy=hierarchy)
    texture = fused_uv_texture(fused, model.faces, uv_fragments(model.uvs, model.uv_faces, (512, 512)))
"""

import functools
import hashlib
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from faceflax.render.rasterizer import Fragments
from faceflax.render.uv import vertex_colors_to_uv
from faceflax.solvers.linear import SolveInfo, solve_spd

_OMEGA = 4.0 / 3.0  # prolongator smoothing weight over the l1 bound rho(D_l1^-1 L) <= 1
_CHEBYSHEV_LOW = 0.1  # smoother interval [0.1, 1] of D_l1^-1 A
_CHEBYSHEV_DEGREE = 2
_MAX_DENSE = 2048  # largest coarsest level inverted densely
_HIGHEST = jax.lax.Precision.HIGHEST
WEIGHTINGS = ("uniform", "area")


# ----------------------------------------------------------------------------- gradient operator


def _corners(verts: jax.Array, faces: jax.Array):
    """Corner positions as explicit components: three ``(x, y, z)`` tuples of ``[F]`` arrays."""
    columns = [verts[:, d] for d in range(3)]
    return [tuple(col[faces[:, a]] for col in columns) for a in range(3)]


def _sub(p, q):
    return tuple(a - b for a, b in zip(p, q))


def _dot(p, q):
    return p[0] * q[0] + p[1] * q[1] + p[2] * q[2]


def _cross(p, q):
    return (p[1] * q[2] - p[2] * q[1], p[2] * q[0] - p[0] * q[2], p[0] * q[1] - p[1] * q[0])


def _safe_inverse(x):
    positive = x > 0
    return jnp.where(positive, 1.0 / jnp.where(positive, x, 1.0), 0.0)


@flax.struct.dataclass
class GradientOperator:
    """``G`` (3F x V) of MvInvert eq. 6 at one shape, matrix-free.

    ``G @ f`` for ``f [V, ...]`` is ``op(f) -> [F, 3, ...]`` (row ``3 t + x`` of the matrix is
    ``op(f)[t, x]``); ``G^T @ g`` is ``op.transpose(g)``. Differentiable w.r.t. the positions it
    was built from (through ``hat``).
    """

    faces: jax.Array  # [F, 3] int32
    hat: jax.Array  # [F, 3, 3] float32: hat[t, a] = grad(phi_a) on triangle t (x, y, z)
    num_vertices: int = flax.struct.field(pytree_node=False)

    def __call__(self, values: jax.Array) -> jax.Array:
        corner = jnp.asarray(values)[self.faces]  # [F, 3, ...]
        return jnp.einsum("ta...,tax->tx...", corner, self.hat)

    def transpose(self, grads: jax.Array) -> jax.Array:
        per_corner = jnp.einsum("tx...,tax->ta...", jnp.asarray(grads), self.hat)
        out = jnp.zeros((self.num_vertices, *per_corner.shape[2:]), per_corner.dtype)
        return out.at[self.faces].add(per_corner)


def gradient_operator(verts: jax.Array, faces: jax.Array) -> GradientOperator:
    """The per-triangle gradient operator of ``verts [V, 3]`` / ``faces [F, 3]``.

    ``grad(phi_a) = c x e_a / |c|^2`` (``c = (p1 - p0) x (p2 - p0)``, ``e_a`` the edge opposite
    corner ``a``), i.e. ``N x e_a / (2 A)``; zero on zero-area triangles.
    """
    verts = jnp.asarray(verts, jnp.float32)
    faces = jnp.asarray(faces, jnp.int32)
    p0, p1, p2 = _corners(verts, faces)
    c = _cross(_sub(p1, p0), _sub(p2, p0))
    inv = _safe_inverse(_dot(c, c))
    opposite = (_sub(p2, p1), _sub(p0, p2), _sub(p1, p0))
    hat = jnp.stack([jnp.stack([g * inv for g in _cross(c, e)], -1) for e in opposite], 1)
    return GradientOperator(faces=faces, hat=hat, num_vertices=verts.shape[0])


def triangle_weights(verts: jax.Array, faces: jax.Array, weighting: str = "uniform") -> jax.Array:
    """``rho_t w_t,c`` ``[F, 3]``: the weight triangle ``t`` puts on its edge opposite corner ``c``
    in ``G^T R G`` (``(u . v) / |u x v|^2 = cot(theta_c) / (2 A_t)`` times the row weight)."""
    return _triangle_weights(jnp.asarray(verts, jnp.float32), jnp.asarray(faces, jnp.int32), weighting, jnp)


def _triangle_weights(verts, faces, weighting: str, xp):
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    columns = [verts[:, d] for d in range(3)]
    p = [tuple(col[faces[:, a]] for col in columns) for a in range(3)]
    u, v = _sub(p[1], p[0]), _sub(p[2], p[0])
    c = _cross(u, v)
    c2 = _dot(c, c)
    if xp is jnp:
        inv = _safe_inverse(c2)
    else:
        inv = np.where(c2 > 0, 1.0 / np.where(c2 > 0, c2, 1.0), 0.0)
    dots = [_dot(_sub(p[(a + 1) % 3], p[a]), _sub(p[(a + 2) % 3], p[a])) for a in range(3)]
    weights = xp.stack([d * inv for d in dots], 1)
    if weighting == "area":
        area = xp.where(c2 > 0, 0.5 * xp.sqrt(xp.where(c2 > 0, c2, 1.0)), 0.0)
        mean = xp.mean(area)
        weights = weights * (area / xp.where(mean > 0, mean, 1.0))[:, None]
    return weights


# ----------------------------------------------------------------------------- view selection


class ViewSelection(NamedTuple):
    """Eq. 5. ``K`` (the number of views) marks the extra selection / "none"."""

    triangle: jax.Array  # [F] int32 in [0, K]: the view selecting each triangle, K = none
    vertex: jax.Array  # [V] int32 in [0, K]: the view selecting each vertex, K = none
    confidence: jax.Array  # [K, F] float32: min of the corners' scores per view


def select_views(faces: jax.Array, scores: jax.Array) -> ViewSelection:
    """Per-triangle and per-vertex view selection from visibility ``scores [K, V]`` (eq. 5).

    Triangle confidence = min of its three vertex scores per view; each triangle goes to the
    view of highest confidence (ties to the lower view index), or to the extra selection ``K``
    when its confidence is 0 in every view; each vertex to the view of highest score, or ``K``
    when all are 0. Piecewise constant: no gradient flows to ``scores``.
    """
    scores = jax.lax.stop_gradient(jnp.asarray(scores, jnp.float32))
    faces = jnp.asarray(faces, jnp.int32)
    confidence = jnp.minimum(jnp.minimum(scores[:, faces[:, 0]], scores[:, faces[:, 1]]), scores[:, faces[:, 2]])
    return ViewSelection(_first_argmax(confidence), _first_argmax(scores), confidence)


def _first_argmax(values: jax.Array) -> jax.Array:
    """Per column of ``values [K, N]``: the first index of the largest value, or ``K`` where all
    are <= 0 (explicit comparisons: XLA:CPU reduces over a short major axis slowly)."""
    best, index = values[0], jnp.zeros(values.shape[1], jnp.int32)
    for k in range(1, values.shape[0]):
        better = values[k] > best
        best, index = jnp.where(better, values[k], best), jnp.where(better, k, index)
    return jnp.where(best > 0, index, values.shape[0]).astype(jnp.int32)


def selection_matrices(selection: ViewSelection) -> tuple[jax.Array, jax.Array]:
    """The 0/1 selection matrices as rows: ``([K + 1, F], [K + 1, V])`` float32, row ``K`` the
    extra selection. Every column has exactly one 1."""
    count = selection.confidence.shape[0] + 1
    return jax.nn.one_hot(selection.triangle, count).T, jax.nn.one_hot(selection.vertex, count).T


# ----------------------------------------------------------------------------- hierarchy (numpy)

_i32 = functools.partial(np.asarray, dtype=np.int32)


@flax.struct.dataclass
class _RowTable:
    """A sparse matrix with a static pattern as a row-sorted, slot-grouped ELL table.

    Rows are stored in order of decreasing entry count, so slot ``k`` holds entries for the
    first ``counts[k]`` (sorted) rows only. Consecutive slots of similar counts form a group,
    applied as one kernel over the group's first count of rows (at most ``1 / _GROUP_FILL``
    padding); the slots used by fewer than an eighth of the rows form one last group over the
    rows of its first slot. ``cols [W, m]`` are the columns and ``values [W, m]`` indices into a
    flat array of the matrix's values (padding: column 0 and index ``pad``, read as 0);
    ``unsort [m]`` maps each row to its sorted position (None: rows already sorted).
    """

    cols: Any
    values: Any
    unsort: Any
    counts: tuple = flax.struct.field(pytree_node=False)
    groups: tuple = flax.struct.field(pytree_node=False)  # (first slot, end slot, rows)

    @property
    def num_rows(self) -> int:
        return len(self.cols[0])

    def gather_values(self, flat: jax.Array) -> jax.Array:
        """This pattern's ``[W, m]`` values from ``flat`` (index ``pad`` is past its end)."""
        flat = _materialize(jnp.concatenate([flat, jnp.zeros(1, flat.dtype)]))
        return _materialize(flat[jnp.asarray(self.values)])

    def apply(self, values: jax.Array | None, x: jax.Array, init: jax.Array | None = None) -> jax.Array:
        """``init + M x`` for ``x [n]`` or ``[n, C]`` (``init`` in sorted row order, default 0).

        ``x`` must be a buffer (:func:`_materialize`): it is gathered from. ``values``: from
        :meth:`gather_values`, or None for a 0/1 pattern whose padding columns point one past
        the end of ``x`` (a zero row is appended)."""
        if values is None:
            x = _materialize(jnp.concatenate([x, jnp.zeros((1, *x.shape[1:]), x.dtype)]))
        y = jnp.zeros((self.num_rows, *x.shape[1:]), x.dtype) if init is None else init
        for first, end, rows in self.groups:
            terms = [x[self.cols[k, :rows]] for k in range(first, end)]
            if values is not None:
                terms = [_col(values[k, :rows], x) * term for k, term in zip(range(first, end), terms)]
            y = y.at[:rows].add(functools.reduce(lambda a, b: a + b, terms))
        return y if self.unsort is None else y[jnp.asarray(self.unsort)]


_GROUP_FILL = 0.6  # a slot joins the current group if it fills at least this share of its rows


def _col(v: jax.Array, x: jax.Array) -> jax.Array:
    """Per-row ``v [m]`` broadcast against ``x [m, ...]``."""
    return v.reshape(v.shape + (1,) * (x.ndim - 1))


def _row_table(rows, cols, values, num_rows: int, pad: int, keep_order: bool = False) -> _RowTable:
    rows, cols, values = (np.asarray(a, np.int64) for a in (rows, cols, values))
    count = np.bincount(rows, minlength=num_rows)
    if keep_order:
        if np.any(np.diff(count) > 0):
            raise AssertionError("rows are not sorted by decreasing entry count")
        position = np.arange(num_rows)
    else:
        order = np.argsort(-count, kind="stable")
        position = np.empty(num_rows, np.int64)
        position[order] = np.arange(num_rows)
    srow = position[rows]
    order = np.lexsort((cols, srow))
    srow, cols, values = srow[order], cols[order], values[order]
    sorted_count = np.bincount(srow, minlength=num_rows)
    width = int(sorted_count.max(initial=0))
    slot = np.arange(len(srow)) - (np.cumsum(sorted_count) - sorted_count)[srow]
    counts = [int((sorted_count > k).sum()) for k in range(width)]
    small = max(num_rows // 8, 1)
    groups, k = [], 0
    while k < width:
        end = k + 1
        if counts[k] < small:  # the tail: one group over the rows of its first slot
            end = width
        while end < width and counts[end] >= max(_GROUP_FILL * counts[k], small):
            end += 1
        groups.append((k, end, counts[k]))
        k = end
    table_cols = np.zeros((max(width, 1), num_rows), np.int64)
    table_values = np.full((max(width, 1), num_rows), pad, np.int64)
    table_cols[slot, srow] = cols
    table_values[slot, srow] = values
    return _RowTable(
        cols=_i32(table_cols),
        values=_i32(table_values),
        unsort=None if keep_order else _i32(position),
        counts=tuple(counts),
        groups=tuple(groups),
    )


def _neighbours(edges: np.ndarray, n: int):
    """Neighbour tables of a graph whose nodes are numbered by decreasing degree.

    Returns the padded ``nbr [K, n]`` / ``eid [K, n]`` (slot ``k``: the ``k``-th neighbour and
    the edge id; padding: the node itself and ``len(edges)``), used by the numeric setup, and
    the :class:`_RowTable` of the same entries (values: edge ids), used to apply the operator.
    """
    ids = np.arange(len(edges))
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    table = _row_table(rows, cols, np.concatenate([ids, ids]), n, len(edges), keep_order=True)
    order = np.lexsort((cols, rows))
    rows, cols, ids = rows[order], cols[order], np.concatenate([ids, ids])[order]
    count = np.bincount(rows, minlength=n)
    width = max(int(count.max(initial=0)), 1)
    slot = np.arange(len(rows)) - (np.cumsum(count) - count)[rows]
    nbr = np.tile(np.arange(n), (width, 1))
    eid = np.full((width, n), len(edges))
    nbr[slot, rows] = cols
    eid[slot, rows] = ids
    return _i32(nbr), _i32(eid), table


@flax.struct.dataclass
class _Level:
    """Static structure of one multigrid level above the coarsest, nodes numbered by decreasing
    degree (so :attr:`graph` has no padding in use). ``P`` is computed in a padded ``[Pw, n]``
    layout (``p_cols``: the coarse node of each slot, padding the own aggregate with value 0)
    and applied through the row tables :attr:`prolong` and :attr:`restrict` (``P^T``)."""

    graph: _RowTable  # neighbours; values: edge ids
    nbr: Any  # [K, n] padded neighbours (padding: self)
    eid: Any  # [K, n] padded edge ids (padding: num_edges)
    p_slot: Any  # [n + K n]: flat [n, Pw] P entry of each node's own aggregate, then of each neighbour's
    p_cols: Any  # [Pw, n]
    prolong: _RowTable  # P: values index the flat [n, Pw] P
    restrict: _RowTable  # P^T
    lp_target: Any  # [T1]: flat [n, LPw] index of the A P terms (sorted)
    lp_a: Any  # [T1]: index into concat(L_ii [n], -w [n, K])
    lp_p: Any  # [T1]: flat [n, Pw] index into P
    ce_target: Any  # [T2]: coarse edge of the P^T (A P) terms (read order: by fine node)
    ce_p: Any  # [T2]
    ce_lp: Any  # [T2]
    n: int = flax.struct.field(pytree_node=False)
    num_edges: int = flax.struct.field(pytree_node=False)
    num_coarse: int = flax.struct.field(pytree_node=False)
    num_coarse_edges: int = flax.struct.field(pytree_node=False)
    lp_width: int = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class MeshHierarchy:
    """Everything static about one mesh topology for :func:`fuse_views` (from :func:`mesh_hierarchy`).

    A pytree of numpy index arrays: close over it or pass it through ``jit`` as an argument.
    Vertex ``perm[i]`` is node ``i`` of the finest level (numbered by decreasing degree).
    """

    faces: Any  # [F, 3]
    edges: Any  # [E, 2]: the mesh edges (vertex ids, i < j); ScreenedSystem.edge_weights follow them
    edge_corners: Any  # [Tm, E]: flat (triangle, corner) indices of the corners opposite each edge; pad 3F
    vertex_corners: _RowTable  # 0/1 pattern summing the (triangle, corner) rows at each vertex
    component: Any  # [V]: connected component of each vertex
    perm: Any  # [V]: the vertex at each finest-level node
    position: Any  # [V]: the finest-level node of each vertex
    fine: _RowTable  # the finest level's neighbour table (values: edge ids)
    fine_eid: Any  # [K, V]: its padded edge ids
    levels: tuple  # of _Level, finest first
    coarsest_edges: Any  # [Ec, 2]
    num_vertices: int = flax.struct.field(pytree_node=False)
    num_components: int = flax.struct.field(pytree_node=False)
    coarsest_size: int = flax.struct.field(pytree_node=False)
    weighting: str = flax.struct.field(pytree_node=False)
    strength: float = flax.struct.field(pytree_node=False)
    reference: bool = flax.struct.field(pytree_node=False)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Nodes per level, finest first (the last is inverted densely)."""
        return (*(level.n for level in self.levels), self.coarsest_size)


def _edge_list(faces: np.ndarray, n: int):
    """Unique edges ``i < j`` ``[E, 2]`` and, per triangle corner, the edge opposite it (-1 if degenerate)."""
    a = faces[:, [1, 2, 0]].astype(np.int64)
    b = faces[:, [2, 0, 1]].astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    valid = lo != hi
    unique, inverse = np.unique((lo * n + hi)[valid], return_inverse=True)
    opposite = np.full(faces.shape, -1, np.int64)
    opposite[valid] = inverse.ravel()
    return np.stack([unique // n, unique % n], 1), opposite


def _table(owner: np.ndarray, n: int, pad: int) -> np.ndarray:
    """Slot-major ``[W, n]`` table of the indices ``t`` with ``owner[t] == i`` (padding ``pad``)."""
    valid = np.flatnonzero(owner >= 0)
    owner = owner[valid]
    order = np.argsort(owner, kind="stable")
    owner, valid = owner[order], valid[order]
    counts = np.bincount(owner, minlength=n)
    width = max(int(counts.max(initial=0)), 1)
    pos = np.arange(len(owner)) - (np.cumsum(counts) - counts)[owner]
    table = np.full((width, n), pad)
    table[pos, owner] = valid
    return table


def _aggregate(edges: np.ndarray, strong: np.ndarray, n: int, order: np.ndarray) -> tuple[np.ndarray, int]:
    """Greedy aggregation: roots with all strong neighbours free take them; leftovers join the
    neighbouring aggregate they are most strongly (then most weakly) linked to; the rest start
    their own aggregates."""

    def csr(e):
        rows = np.concatenate([e[:, 0], e[:, 1]])
        cols = np.concatenate([e[:, 1], e[:, 0]])
        order = np.argsort(rows, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        return indptr, cols[order]

    s_ptr, s_idx = csr(edges[strong])
    a_ptr, a_idx = csr(edges)
    agg = np.full(n, -1, np.int64)
    count = 0
    for i in order:
        if agg[i] >= 0:
            continue
        nb = s_idx[s_ptr[i] : s_ptr[i + 1]]
        if len(nb) and (agg[nb] < 0).all():
            agg[i] = count
            agg[nb] = count
            count += 1
    for ptr, idx in ((s_ptr, s_idx), (a_ptr, a_idx)):
        snapshot = agg.copy()
        for i in np.flatnonzero(agg < 0):
            near = snapshot[idx[ptr[i] : ptr[i + 1]]]
            near = near[near >= 0]
            if len(near):
                agg[i] = np.bincount(near).argmax()
    for i in np.flatnonzero(agg < 0):
        if agg[i] >= 0:
            continue
        nb = a_idx[a_ptr[i] : a_ptr[i + 1]]
        agg[i] = count
        agg[nb[agg[nb] < 0]] = count
        count += 1
    return agg, count


def _coarse_degrees(edges: np.ndarray, n: int, agg: np.ndarray, num_coarse: int) -> np.ndarray:
    """Degrees in the pattern of ``P^T (I + Adj) P`` (``P``: own and neighbours' aggregates)."""
    import scipy.sparse

    adjacency = scipy.sparse.coo_matrix(
        (
            np.ones(2 * len(edges) + n),
            (np.r_[edges[:, 0], edges[:, 1], np.arange(n)], np.r_[edges[:, 1], edges[:, 0], np.arange(n)]),
        ),
        shape=(n, n),
    ).tocsr()
    tentative = scipy.sparse.csr_matrix((np.ones(n), (np.arange(n), agg)), shape=(n, num_coarse))
    pattern = (adjacency @ tentative).astype(bool).astype(np.float64)
    coarse = (pattern.T @ adjacency @ pattern).tocoo()
    off = coarse.row != coarse.col
    return np.bincount(coarse.row[off], minlength=num_coarse)


def _ranks(candidates: np.ndarray, invalid: np.ndarray):
    """Per column of ``candidates [R, n]``: the slot (rank among the distinct valid values) of
    every entry (-1 where invalid), the slot-major table of distinct values (-1 padding) and its width."""
    sentinel = np.iinfo(np.int64).max
    values = np.where(invalid, sentinel, candidates)
    order = np.argsort(values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, 0)
    new = np.ones_like(ordered, bool)
    new[1:] = ordered[1:] != ordered[:-1]
    new &= ordered != sentinel
    rank = np.cumsum(new, 0) - 1
    rank[ordered == sentinel] = -1
    slot = np.empty_like(rank)
    np.put_along_axis(slot, order, rank, 0)
    width = max(int(rank.max(initial=0)) + 1, 1)
    table = np.full((width, values.shape[1]), -1, np.int64)
    keep = rank >= 0
    table[rank[keep], np.nonzero(keep)[1]] = ordered[keep]
    return slot, table, width


def _coarsen_structure(neighbours, num_edges: int, agg: np.ndarray, num_coarse: int):
    """The static index maps of ``P``, ``A P`` and ``P^T A P`` for one level: ``(_Level, coarse edges)``."""
    nbr_table, eid_table, graph = neighbours
    nbr = np.asarray(nbr_table, np.int64)
    width, n = nbr.shape
    nbr_valid = np.asarray(eid_table) < num_edges
    cand = np.concatenate([agg[None], agg[nbr]])  # [K+1, n]
    invalid = np.concatenate([np.zeros((1, n), bool), ~nbr_valid])
    slot, p_table, p_width = _ranks(cand, invalid)
    p_valid = p_table >= 0
    p_cols = np.where(p_valid, p_table, agg[None])
    own_slot = slot[0]
    nbr_slot = np.where(nbr_valid, slot[1:], own_slot[None])

    # A P: row i gathers the P rows of i (coefficient L_ii) and of its neighbours (-w_ik).
    node = np.concatenate([np.arange(n)[None], np.where(nbr_valid, nbr, np.arange(n)[None])])  # [K+1, n]
    # Flat layouts are node-major (a node's entries adjacent): w [n, K], P [n, Pw], A P [n, LPw].
    a_index = np.concatenate([np.arange(n)[None], n + np.arange(n)[None] * width + np.arange(width)[:, None]])
    src_valid = np.concatenate([np.ones((1, n), bool), nbr_valid])
    lp_cand = p_cols[:, node]  # [Pw, K+1, n]
    lp_invalid = ~(p_valid[:, node] & src_valid[None])
    lp_slot, lp_table, lp_width = _ranks(lp_cand.reshape(-1, n), lp_invalid.reshape(-1, n))
    lp_slot = lp_slot.reshape(p_width, width + 1, n)
    keep = lp_slot >= 0
    s_idx, k_idx, i_idx = np.nonzero(keep)
    lp_target = i_idx * lp_width + lp_slot[keep]
    lp_a = a_index[k_idx, i_idx]
    lp_p = node[k_idx, i_idx] * p_width + s_idx
    order = np.argsort(lp_target, kind="stable")
    lp_target, lp_a, lp_p = lp_target[order], lp_a[order], lp_p[order]

    # P^T (A P), upper off-diagonal entries only: sum_i P_iI (A P)_iJ for I < J.
    big_i = np.where(p_valid, p_table, -1)[:, None, :]  # [Pw, 1, n]
    big_j = lp_table[None, :, :]  # [1, LPw, n]
    pair = (big_i >= 0) & (big_j >= 0) & (big_i < big_j)
    s_idx, t_idx, i_idx = np.nonzero(pair)
    key = big_i[s_idx, 0, i_idx] * num_coarse + big_j[0, t_idx, i_idx]
    coarse_keys, ce_target = np.unique(key, return_inverse=True)
    order = np.lexsort((t_idx, s_idx, i_idx))  # node-major reads; the targets are scattered
    ce_target, ce_p, ce_lp = (
        ce_target.ravel()[order],
        (i_idx * p_width + s_idx)[order],
        (i_idx * lp_width + t_idx)[order],
    )
    coarse_edges = np.stack([coarse_keys // num_coarse, coarse_keys % num_coarse], 1)

    s_idx, i_idx = np.nonzero(p_valid)
    flat = i_idx * p_width + s_idx
    level = _Level(
        graph=graph,
        nbr=nbr_table,
        eid=eid_table,
        p_slot=_i32(
            np.concatenate([np.arange(n) * p_width + own_slot, (np.arange(n)[None] * p_width + nbr_slot).ravel()])
        ),
        p_cols=_i32(p_cols),
        prolong=_row_table(i_idx, p_table[s_idx, i_idx], flat, n, p_width * n),
        restrict=_row_table(p_table[s_idx, i_idx], i_idx, flat, num_coarse, p_width * n),
        lp_target=_i32(lp_target),
        lp_a=_i32(lp_a),
        lp_p=_i32(lp_p),
        ce_target=_i32(ce_target),
        ce_p=_i32(ce_p),
        ce_lp=_i32(ce_lp),
        n=n,
        num_edges=num_edges,
        num_coarse=num_coarse,
        num_coarse_edges=len(coarse_edges),
        lp_width=lp_width,
    )
    return level, coarse_edges


def _np_segment_sum(data, ids, n, sorted_ids=True):
    return np.bincount(ids, data, n)


def _jnp_segment_sum(data, ids, n, sorted_ids=True):
    return jax.ops.segment_sum(data, ids, n, indices_are_sorted=sorted_ids)


def _rows_sum(rows) -> jax.Array:
    """Sum over the leading (slot) axis as explicit adds: XLA:CPU reduces a fused major axis slowly."""
    return functools.reduce(lambda a, b: a + b, [rows[k] for k in range(rows.shape[0])])


def _galerkin(level: _Level, w_pad, xp, segment_sum):
    """Numeric phase of one level: ``(P [n, Pw], coarse edge weights [Ec])``.

    ``w_pad [K, n]`` are the level's edge weights in its neighbour-table layout (0 on padding),
    its Laplacian part ``L(w)``. ``P = (I - 4/3 D_l1^-1 L) P_tent``; the coarse Laplacian
    weights are minus the off-diagonals of ``P^T L P``.
    """
    n = level.n
    p_width = level.p_cols.shape[0]
    keep = _materialize if xp is jnp else (lambda x: x)
    diag = keep(_rows_sum(w_pad))
    l1 = xp.abs(diag) + _rows_sum(xp.abs(w_pad))
    scale = keep(_OMEGA * xp.where(l1 > 0, 1.0 / xp.where(l1 > 0, l1, 1.0), 0.0))
    # P_iJ = [J = agg(i)] (1 - s_i L_ii) + s_i sum_{k ~ i, agg(k) = J} w_ik, s_i = omega / l1_i:
    # one segment sum of the diagonal and every neighbour entry into its aggregate's P slot.
    data = keep(xp.concatenate([1.0 - scale * diag, (scale[None] * w_pad).reshape(-1)]))
    p = keep(segment_sum(data, level.p_slot, n * p_width, sorted_ids=False).reshape(n, p_width))
    entries = keep(xp.concatenate([diag, -keep(w_pad.T).reshape(-1)]))
    p_flat = p.reshape(-1)
    lp = keep(segment_sum(entries[level.lp_a] * p_flat[level.lp_p], level.lp_target, level.lp_width * n))
    terms = p_flat[level.ce_p] * lp[level.ce_lp]
    coarse_w = -segment_sum(terms, level.ce_target, level.num_coarse_edges, sorted_ids=False)
    return p, coarse_w


def _strong(edges: np.ndarray, weights: np.ndarray, n: int, strength: float) -> np.ndarray:
    diag = np.abs(np.bincount(edges[:, 0], weights, n) + np.bincount(edges[:, 1], weights, n))
    return np.abs(weights) >= strength * np.sqrt(diag[edges[:, 0]] * diag[edges[:, 1]])


def _by_degree(edges: np.ndarray, n: int, degree: np.ndarray, locality: np.ndarray | None = None):
    """Renumber nodes by decreasing degree, then by ``locality`` (a key that keeps neighbours
    close in memory): ``(perm, position, relabelled edges i < j)``."""
    locality = np.arange(n) if locality is None else locality
    perm = np.lexsort((locality, -degree))
    position = np.empty(n, np.int64)
    position[perm] = np.arange(n)
    relabelled = np.sort(position[edges], axis=1) if len(edges) else edges.reshape(0, 2)
    return perm, position, relabelled


_CACHE: dict = {}
_CACHE_SIZE = 8


def mesh_hierarchy(
    faces,
    num_vertices: int | None = None,
    reference_verts=None,
    *,
    weighting: str = "uniform",
    strength: float = 0.1,
    coarsest: int = 300,
) -> MeshHierarchy:
    """The multigrid hierarchy of a mesh topology (numpy, about 1-2 s at 37k vertices; cached).

    Args:
      faces: ``[F, 3]`` concrete integer triangles.
      num_vertices: ``V`` (default ``faces.max() + 1``).
      reference_verts: optional ``[V, 3]`` concrete reference shape (e.g. the model's mean): its
        triangle weights (with ``weighting``) decide which edges are strong for aggregation.
        Without it every edge counts as a unit weight, which on meshes of uneven triangles
        (the ICT face) costs about twice the PCG iterations. Any shape of the same topology may
        be solved with the result; only the speed depends on this choice.
      weighting: ``"uniform"`` or ``"area"``, as for :func:`fuse_views` (for the strength only).
      strength: aggregation threshold ``|a_ij| >= strength sqrt(a_ii a_jj)``.
      coarsest: coarsen until a level has at most this many nodes (inverted densely).
    """
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be an [F, 3] integer array, got {faces.shape} {faces.dtype}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    n = int(faces.max(initial=-1)) + 1 if num_vertices is None else int(num_vertices)
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        raise ValueError(f"faces index outside [0, {n})")
    reference = None if reference_verts is None else np.asarray(reference_verts, np.float64)
    if reference is not None and reference.shape != (n, 3):
        raise ValueError(f"reference_verts must be [{n}, 3], got {reference.shape}")
    digest = hashlib.sha1(faces.astype(np.int64).tobytes())
    if reference is not None:
        digest.update(reference.tobytes())
    key = (digest.hexdigest(), faces.shape, n, reference is None, weighting, float(strength), int(coarsest))
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build_hierarchy(faces.astype(np.int64), n, reference, weighting, strength, coarsest)
    return _CACHE[key]


def _build_hierarchy(faces, n, reference, weighting, strength, coarsest) -> MeshHierarchy:
    import scipy.sparse
    import scipy.sparse.csgraph

    num_faces = len(faces)
    edges, opposite = _edge_list(faces, n)
    edge_corners = _table(opposite.ravel(), len(edges), 3 * num_faces)
    corners = np.arange(3 * num_faces)
    vertex_corners = _row_table(faces.ravel(), corners, corners, n, 3 * num_faces)
    vertex_corners = vertex_corners.replace(
        cols=_i32(np.where(vertex_corners.values == 3 * num_faces, 3 * num_faces, vertex_corners.cols))
    )
    graph = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    num_components, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
    if reference is not None:
        triangle = _triangle_weights(reference, faces, weighting, np).ravel()
        weights = np.concatenate([triangle, [0.0]])[edge_corners].sum(0)
    else:
        weights = np.ones(len(edges))

    # Within a degree class, nodes follow a reverse Cuthill-McKee order (neighbours close in memory).
    locality = np.empty(n, np.int64)
    locality[scipy.sparse.csgraph.reverse_cuthill_mckee((graph + graph.T).tocsr(), symmetric_mode=True)] = np.arange(n)
    degree = np.bincount(edges.ravel(), minlength=n)
    perm, position, level_edges = _by_degree(edges, n, degree, locality)
    traversal = position[np.lexsort((np.arange(n), -degree))]  # aggregation visits high degrees first
    neighbours = _neighbours(level_edges, n)
    fine_eid, fine = neighbours[1], neighbours[2]
    levels, size = [], n
    while size > coarsest:
        strong = _strong(level_edges, weights, size, strength)
        agg, num_coarse = _aggregate(level_edges, strong, size, traversal)
        if num_coarse >= size:  # nothing left to merge (isolated nodes): stop here
            break
        first_member = np.full(num_coarse, size, np.int64)
        np.minimum.at(first_member, agg, np.arange(size))  # aggregates in the order of their nodes
        coarse_degree = _coarse_degrees(level_edges, size, agg, num_coarse)
        _, coarse_position, _ = _by_degree(np.zeros((0, 2), np.int64), num_coarse, coarse_degree, first_member)
        traversal = coarse_position[np.lexsort((np.arange(num_coarse), -coarse_degree))]
        level, coarse_edges = _coarsen_structure(neighbours, len(level_edges), coarse_position[agg], num_coarse)
        levels.append(level)
        w_pad = np.concatenate([weights, [0.0]])[np.asarray(level.eid)]
        _, weights = _galerkin(level, w_pad, np, _np_segment_sum)
        level_edges, size = coarse_edges, num_coarse
        neighbours = _neighbours(level_edges, size)
    if size > _MAX_DENSE:
        raise ValueError(
            f"the mesh coarsens to {size} nodes (> {_MAX_DENSE}): too many connected components or isolated vertices"
        )
    return MeshHierarchy(
        faces=_i32(faces),
        edges=_i32(edges),
        edge_corners=_i32(edge_corners),
        vertex_corners=vertex_corners,
        component=_i32(component),
        perm=_i32(perm),
        position=_i32(position),
        fine=fine,
        fine_eid=fine_eid,
        levels=tuple(levels),
        coarsest_edges=_i32(level_edges.reshape(-1, 2)),
        num_vertices=n,
        num_components=int(num_components),
        coarsest_size=size,
        weighting=weighting,
        strength=float(strength),
        reference=reference is not None,
    )


# ----------------------------------------------------------------------------- multigrid (JAX)


def _materialize(x: jax.Array) -> jax.Array:
    """``x`` unchanged, but computed into a buffer before anything reads it.

    XLA:CPU fuses a value's producer into a gather that reads it, so every gathered element
    recomputes the producer; when the producer itself gathers (a previous matrix-vector product)
    the work multiplies at every level of nesting (a Chebyshev step, a V-cycle: 10-60x). An
    optimisation barrier does not survive to fusion; a one-element scatter-add of 0 does (its
    output is a buffer updated in place), at the cost of one pass over ``x``.
    """
    return x.at[(0,) * x.ndim].add(jnp.zeros((), x.dtype))


class _Operator:
    """One level's ``A = L(w) + diag(mass)`` on its neighbour table, and its l1 smoother diagonal.

    Applies to buffers (:func:`_materialize`) ``x [n]`` or ``x [n, C]`` (independent columns).
    """

    def __init__(self, table: _RowTable, eid, weights: jax.Array, mass: jax.Array):
        self.table = table
        self.w_pad = _materialize(jnp.concatenate([weights, jnp.zeros(1, weights.dtype)]))[jnp.asarray(eid)]
        self.mass = mass
        self.diag = _materialize(_rows_sum(self.w_pad) + mass)
        self.inv_l1 = _materialize(_safe_inverse(jnp.abs(self.diag) + _rows_sum(jnp.abs(self.w_pad))))
        self.values = table.gather_values(weights)
        self.minus_values = _materialize(-self.values)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.table.apply(self.minus_values, x, _col(self.diag, x) * x)

    def difference_form(self, x: jax.Array) -> jax.Array:
        """``mass x + sum_j w_ij (x_i - x_j)``: exactly 0 on constants where the mass is 0."""
        table, values = self.table, self.values
        y = _col(self.mass, x) * x
        for first, end, rows in table.groups:
            terms = [_col(values[k, :rows], x) * (x[:rows] - x[table.cols[k, :rows]]) for k in range(first, end)]
            y = y.at[:rows].add(functools.reduce(lambda a, b: a + b, terms))
        return y


class _SparseTransfer:
    def __init__(self, level: _Level, p_flat: jax.Array):
        self.level = level
        self.prolong_values = level.prolong.gather_values(p_flat)
        self.restrict_values = level.restrict.gather_values(p_flat)

    def restrict(self, r: jax.Array) -> jax.Array:
        return _materialize(self.level.restrict.apply(self.restrict_values, r))

    def prolong(self, c: jax.Array) -> jax.Array:
        return self.level.prolong.apply(self.prolong_values, c)


class _Preconditioner:
    """The symmetric V-cycle on ``r [n]`` or ``[n, C]`` (finest-level numbering): ``z ~ A^-1 r``."""

    def __init__(self, operators, transfers, coarse_inverse):
        self.operators = operators  # per level above the coarsest
        self.transfers = transfers  # per level above the coarsest
        self.coarse_inverse = coarse_inverse  # [nc, nc]

    def __call__(self, r: jax.Array) -> jax.Array:
        return self._cycle(0, _materialize(r))

    def _cycle(self, index: int, r: jax.Array) -> jax.Array:
        """The V-cycle from level ``index`` down; ``r`` is a buffer, so is the result."""
        if index == len(self.operators):
            return _materialize(jnp.dot(self.coarse_inverse, r, precision=_HIGHEST))
        op, transfer = self.operators[index], self.transfers[index]
        z = _chebyshev(op, r, None)
        correction = self._cycle(index + 1, transfer.restrict(_materialize(r - op(z))))
        return _chebyshev(op, r, _materialize(z + transfer.prolong(correction)))


def _chebyshev(op: _Operator, r: jax.Array, z: jax.Array | None) -> jax.Array:
    """Degree-``_CHEBYSHEV_DEGREE`` Chebyshev smoothing of ``A z = r`` on ``D_l1^-1 A`` over [low, 1]
    (``r`` and ``z`` buffers; the result is one)."""
    theta, delta = (1 + _CHEBYSHEV_LOW) / 2, (1 - _CHEBYSHEV_LOW) / 2
    inv_l1 = _col(op.inv_l1, r)
    residual = r if z is None else r - op(z)
    step = inv_l1 * residual / theta
    z = _materialize(step if z is None else z + step)
    rho = delta / theta
    for _ in range(1, _CHEBYSHEV_DEGREE):
        rho_next = 1.0 / (2 * theta / delta - rho)
        step = rho_next * rho * step + (2 * rho_next / delta) * inv_l1 * (r - op(z))
        z = _materialize(z + step)
        rho = rho_next
    return z


def _preconditioner(hierarchy: MeshHierarchy, edge_weights: jax.Array, mass: jax.Array) -> _Preconditioner:
    """The numeric phase for ``A = L(edge_weights) + diag(mass)`` (finest-level numbering):
    every level's operator and transfers and the coarsest inverse."""
    operators, transfers = [], []
    weights = edge_weights
    for level in hierarchy.levels:
        op = _Operator(level.graph, level.eid, weights, mass)
        p, weights = _galerkin(level, op.w_pad, jnp, _jnp_segment_sum)
        transfer = _SparseTransfer(level, p.reshape(-1))
        operators.append(op)
        transfers.append(transfer)
        mass = transfer.restrict(_materialize(mass))
    weights, mass = _materialize(weights), _materialize(mass)
    size = hierarchy.coarsest_size
    edges = jnp.asarray(hierarchy.coarsest_edges)
    dense = jnp.zeros((size, size), jnp.float32)
    dense = dense.at[edges[:, 0], edges[:, 1]].add(-weights).at[edges[:, 1], edges[:, 0]].add(-weights)
    degree = jax.ops.segment_sum(weights, edges[:, 0], size) + jax.ops.segment_sum(weights, edges[:, 1], size)
    dense = dense + jnp.diag(degree + mass)
    inverse = _spd_inverse(dense)
    fallback = jnp.diag(_safe_inverse(jnp.diag(dense)))  # not positive definite in float32: Jacobi
    inverse = jnp.where(jnp.all(jnp.isfinite(inverse)), inverse, fallback)
    return _Preconditioner(operators, transfers, inverse)


def _spd_inverse(matrix: jax.Array) -> jax.Array:
    """``matrix^-1`` by Cholesky (LAPACK) and a row-by-row inverse of the factor: XLA:CPU's
    triangular solve takes about 8 ms on a 100 x 100 factor, this loop 0.2 ms."""
    factor = jnp.linalg.cholesky(matrix)
    eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype)

    def row(i, inv):
        return inv.at[i].set((eye[i] - jnp.dot(factor[i], inv, precision=_HIGHEST)) / factor[i, i])

    inv = jax.lax.fori_loop(0, matrix.shape[0], row, jnp.zeros_like(matrix))
    return jnp.dot(inv.T, inv, precision=_HIGHEST)


# ----------------------------------------------------------------------------- the fused system


class ScreenedSystem(NamedTuple):
    """The normal equations ``(L(edge_weights) + diag(mass)) T = rhs`` of eq. 6 (module docstring),
    vertices in their own order, edges those of ``MeshHierarchy.edges``."""

    edge_weights: jax.Array  # [E]: sum over the edge's triangles of rho_t w_t,c
    mass: jax.Array  # [V]: lambda^2 on screened vertices, else 0
    target: jax.Array  # [V, C]: the screening colours J (each vertex's own view; view 0 where unseen)
    rhs: jax.Array  # [V, C]: G^T R g + lambda^2 D_S J
    selection: ViewSelection


def screened_system(
    verts: jax.Array,
    colors: jax.Array,
    scores: jax.Array,
    hierarchy: MeshHierarchy,
    *,
    screening: float = 0.1,
    weighting: str = "uniform",
) -> ScreenedSystem:
    """Assemble the normal equations of eq. 6 for ``verts [V, 3]``, ``colors [K, V, C]``,
    ``scores [K, V]`` on ``hierarchy``'s topology (see the module docstring for the exact system)."""
    verts = jnp.asarray(verts, jnp.float32)
    colors = jnp.asarray(colors, jnp.float32)
    if colors.ndim != 3:
        raise ValueError(f"colors must be [K, V, C], got {colors.shape}")
    num_views, num_vertices, _ = colors.shape
    if verts.shape != (hierarchy.num_vertices, 3) or num_vertices != hierarchy.num_vertices:
        raise ValueError(
            f"verts {verts.shape} / colors {colors.shape} do not match the mesh's {hierarchy.num_vertices} vertices"
        )
    if jnp.shape(scores) != (num_views, num_vertices):
        raise ValueError(f"scores must be [{num_views}, {num_vertices}], got {jnp.shape(scores)}")
    faces = jnp.asarray(hierarchy.faces)
    selection = select_views(faces, scores)
    triangle = _materialize(_triangle_weights(verts, faces, weighting, jnp))  # [F, 3]
    flat_weights = _materialize(jnp.concatenate([triangle.reshape(-1), jnp.zeros(1, triangle.dtype)]))
    edge_weights = _rows_sum(flat_weights[jnp.asarray(hierarchy.edge_corners)])

    # G^T R g_sel = sum_t rho_t L_t I^{sel(t)} (see _selected_laplacian). (Solving for a correction
    # to an anchor instead would put view offsets inside triangles where the anchor switches
    # views: with the 1e8 weights of tiny triangles, float32 then loses the offset.)
    gradient_rhs = _selected_laplacian(triangle, colors, selection.triangle, faces, hierarchy.vertex_corners)
    vertex = selection.vertex
    seen = vertex < num_views
    own = jnp.where(seen, vertex, 0)
    target = functools.reduce(
        lambda a, b: a + b, [jnp.where((own == k)[:, None], colors[k], 0.0) for k in range(num_views)]
    )

    # Screening: view 0's vertices; in a component without one, the seen vertices toward their
    # own view (or, if none is seen, all toward view 0).
    component = jnp.asarray(hierarchy.component)
    count = hierarchy.num_components
    screened = vertex == 0
    has_screened = jax.ops.segment_max(screened.astype(jnp.int32), component, count)[component] > 0
    has_seen = jax.ops.segment_max(seen.astype(jnp.int32), component, count)[component] > 0
    fallback = ~has_screened & (seen | ~has_seen)
    mass = (screening**2) * (screened | fallback).astype(jnp.float32)
    rhs = gradient_rhs + mass[:, None] * target
    return ScreenedSystem(edge_weights, mass, target, rhs, selection)


@jax.custom_vjp
def _selected_laplacian(triangle, colors, view, faces, table: _RowTable) -> jax.Array:
    """``sum_t rho_t L_t I^{view(t)}`` ``[V, C]``: per triangle its Laplacian (weights ``triangle
    [F, 3]``) applied to the corner colours of its view (none: 0), difference form, summed onto
    the vertices through ``table``. Its VJP gathers (the default transpose of these gathers
    would scatter, the slow operation of XLA:CPU)."""
    return _selected_laplacian_fwd(triangle, colors, view, faces, table)[0]


def _corner_values(colors, view, faces):
    num_views, num_vertices, channels = colors.shape
    flat = colors.reshape(num_views * num_vertices, channels)
    active = (view < num_views).astype(colors.dtype)[:, None, None]
    return _materialize(active * flat[jnp.minimum(view, num_views - 1)[:, None] * num_vertices + faces])


def _corner_laplacian(triangle, corner):
    """Per triangle ``L_t v`` at its corners ``[F, 3, ...]`` from corner values ``v [F, 3, ...]``."""
    d = [_col(triangle[:, k], corner[:, 0]) * (corner[:, (k + 1) % 3] - corner[:, (k + 2) % 3]) for k in range(3)]
    return jnp.stack([d[2] - d[1], d[0] - d[2], d[1] - d[0]], 1)


def _selected_laplacian_fwd(triangle, colors, view, faces, table):
    corner = _corner_values(colors, view, faces)
    per_corner = _corner_laplacian(triangle, corner).reshape(-1, colors.shape[-1])
    return table.apply(None, per_corner), (triangle, corner, view, faces, table, colors.shape[0])


def _selected_laplacian_bwd(residuals, cotangent):
    triangle, corner, view, faces, table, num_views = residuals
    channels = corner.shape[-1]
    local = _materialize(_materialize(cotangent)[faces])  # [F, 3, C]
    laplacian = _corner_laplacian(triangle, local)  # L_t is symmetric
    # d/d colors[k, v]: the corners at v of the triangles of view k, gathered in one pass per
    # table group into [V, K, C] (no per-view copies, no scatter).
    flat = _materialize(jnp.concatenate([laplacian.reshape(-1, channels), jnp.zeros((1, channels), laplacian.dtype)]))
    cols = jnp.asarray(table.cols)  # flat corner 3 t + a; padding 3 F -> "triangle" F of view K
    corner_view = _materialize(jnp.concatenate([view, jnp.full((1,), num_views, view.dtype)])[cols // 3])
    grad = jnp.zeros((table.num_rows, num_views, channels), flat.dtype)
    views = jnp.arange(num_views)
    for first, end, rows in table.groups:
        terms = [
            (corner_view[k, :rows, None, None] == views[:, None]) * flat[table.cols[k, :rows]][:, None, :]
            for k in range(first, end)
        ]
        grad = grad.at[:rows].add(functools.reduce(lambda a, b: a + b, terms))
    grad = _materialize(grad if table.unsort is None else _materialize(grad)[jnp.asarray(table.unsort)])
    # d/d w_{t,k} of w_{t,k} (I_a - I_b) (x) (e_a - e_b) against the cotangent.
    grad_triangle = jnp.stack(
        [
            jnp.sum(
                (local[:, (k + 1) % 3] - local[:, (k + 2) % 3]) * (corner[:, (k + 1) % 3] - corner[:, (k + 2) % 3]), -1
            )
            for k in range(3)
        ],
        1,
    )
    return grad_triangle, _materialize(jnp.transpose(grad, (1, 0, 2))), None, None, None


_selected_laplacian.defvjp(_selected_laplacian_fwd, _selected_laplacian_bwd)


def solve_screened(
    system: ScreenedSystem, hierarchy: MeshHierarchy, *, tol: float = 1e-4, max_iters: int = 100
) -> tuple[jax.Array, SolveInfo]:
    """Solve ``system`` with the multigrid-preconditioned PCG: ``(T [V, C], info)``.

    One PCG per channel (independent step sizes and stopping; ``info`` fields are ``[C]``) on
    the Jacobi-scaled system ``D^-1/2 A D^-1/2 y = D^-1/2 b`` (``D = diag(A)``,
    ``T = D^-1/2 y``), so ``tol`` bounds a residual in which every row counts alike (the raw
    rows of tiny triangles are 1e4 times larger); see the module docstring, Solver.
    """
    perm, position = jnp.asarray(hierarchy.perm), jnp.asarray(hierarchy.position)
    mass = _permute(system.mass, perm, position)
    frozen = jax.lax.stop_gradient((system.edge_weights, mass))
    matrix = _Operator(hierarchy.fine, hierarchy.fine_eid, system.edge_weights, mass)
    preconditioner = _preconditioner(hierarchy, *frozen)
    # Any fixed scaling gives the same solution, so it carries no gradient.
    diag = jax.lax.stop_gradient(matrix.diag)
    scale = jnp.where(diag > 0, jax.lax.rsqrt(jnp.where(diag > 0, diag, 1.0)), 1.0)[:, None]
    inv_scale = 1.0 / scale

    # One PCG per channel in one loop (solve_spd's batch_axes): PCG sees [C, n] vectors, the
    # operators work on [n, C] rows (a neighbour gather then reads C adjacent floats).
    def matvec(y):
        return (scale * matrix.difference_form(_materialize(scale * y.T))).T

    def precondition(r):
        return (inv_scale * preconditioner(_materialize(inv_scale * r.T))).T

    rhs = (scale * _permute(system.rhs, perm, position)).T
    y, info = solve_spd(matvec, rhs, preconditioner=precondition, tol=tol, max_iters=max_iters, batch_axes=1)
    return _permute(scale * y.T, position, perm), info


@jax.custom_vjp
def _permute(x: jax.Array, order: jax.Array, inverse: jax.Array) -> jax.Array:
    """``x[order]`` for a permutation ``order`` with inverse ``inverse``; its VJP gathers by the
    inverse (the default transpose of a gather is a scatter-add, slow on XLA:CPU)."""
    return x[order]


def _permute_fwd(x, order, inverse):
    return x[order], inverse


def _permute_bwd(inverse, cotangent):
    return cotangent[inverse], None, None


_permute.defvjp(_permute_fwd, _permute_bwd)


def fuse_views(
    verts: jax.Array,
    faces,
    colors: jax.Array,
    scores: jax.Array,
    *,
    screening: float = 0.1,
    weighting: str = "uniform",
    hierarchy: MeshHierarchy | None = None,
    tol: float = 1e-4,
    max_iters: int = 100,
) -> tuple[jax.Array, SolveInfo]:
    """Fuse per-view vertex colours by screened Poisson (MvInvert eq. 6): ``(fused [V, C], info)``.

    Args:
      verts: ``[V, 3]`` positions (differentiable).
      faces: ``[F, 3]`` concrete triangles (the topology; used only to find ``hierarchy``).
      colors: ``[K, V, C]`` per-view vertex colours (differentiable); view 0 is the reference.
      scores: ``[K, V]`` visibility scores (eq. 4); only which view is largest matters.
      screening: ``lambda`` (0.1 in the paper).
      weighting: ``"uniform"`` (the paper's unweighted rows) or ``"area"`` (module docstring).
      hierarchy: from :func:`mesh_hierarchy` (default: built from ``faces`` with ``verts`` as
        the reference shape when concrete; cached). Pass one under ``jit``/``vmap``.
      tol: PCG's relative residual of the Jacobi-scaled normal equations (:func:`solve_screened`).
      max_iters: PCG iteration cap.

    Returns:
      The fused colours and the :class:`~faceflax.solvers.linear.SolveInfo` per channel
      (``[C]`` arrays; ``converged`` False where PCG hit ``max_iters``; see the module
      docstring for what ``residual`` means here).
    """
    if hierarchy is None:
        if isinstance(faces, jax.core.Tracer):
            raise TypeError("faces are traced: build mesh_hierarchy(faces, ...) outside jit and pass hierarchy=")
        reference = None if isinstance(verts, jax.core.Tracer) else np.asarray(verts)
        hierarchy = mesh_hierarchy(np.asarray(faces), np.shape(verts)[0], reference, weighting=weighting)
    system = screened_system(verts, colors, scores, hierarchy, screening=screening, weighting=weighting)
    return solve_screened(system, hierarchy, tol=tol, max_iters=max_iters)


def fuse_views_batch(
    verts: jax.Array,
    faces,
    colors: jax.Array,
    scores: jax.Array,
    *,
    hierarchy: MeshHierarchy | None = None,
    **kwargs,
) -> tuple[jax.Array, SolveInfo]:
    """:func:`fuse_views` over a leading batch axis (``jax.vmap``): ``verts [B, V, 3]``,
    ``colors [B, K, V, C]``, ``scores [B, K, V]`` -> ``([B, V, C], SolveInfo of [B] arrays)``.

    One topology for the batch; the default hierarchy takes the first shape as its reference.
    Under ``vmap`` PCG runs until every item has converged (the others keep their solution).
    """
    if hierarchy is None:
        reference = None if isinstance(verts, jax.core.Tracer) else np.asarray(verts[0])
        weighting = kwargs.get("weighting", "uniform")
        hierarchy = mesh_hierarchy(np.asarray(faces), np.shape(verts)[1], reference, weighting=weighting)

    def one(v, c, s):
        return fuse_views(v, faces, c, s, hierarchy=hierarchy, **kwargs)

    return jax.vmap(one)(verts, colors, scores)


def fused_uv_texture(fused: jax.Array, faces: jax.Array, uv_frags: Fragments) -> jax.Array:
    """Fused vertex colours ``[V, C]`` (or ``[B, V, C]``) -> UV texture ``[Ht, Wt, C]`` (``[B, ...]``).

    A thin wrapper of :func:`faceflax.render.uv.vertex_colors_to_uv` with
    ``uv_frags = uv_fragments(uvs, uv_faces, size)`` of the same triangles (seams are handled
    there: each UV triangle interpolates its 3D triangle's vertex colours).
    """
    fused = jnp.asarray(fused)
    if fused.ndim == 2:
        return vertex_colors_to_uv(fused[None], faces, uv_frags)[0]
    return vertex_colors_to_uv(fused, faces, uv_frags)
