"""Screened Poisson fusion on meshes (MvInvert eq. 4-6) against an independent scipy assembly.

The reference below builds ``G`` from the defining property of a piecewise-linear gradient
(``g . (p_b - p_a) = f_b - f_a`` on two edges, ``g . n = 0``: a 3x3 solve per triangle),
stacks the rows of eq. 6 (selected gradients, zero gradients for the extra selection,
``lambda`` screening rows) and solves the least-squares problem in float64 with SuperLU. The
solver runs in float32 with its default ``tol=1e-4`` on the Jacobi-scaled normal equations;
colours are in [0, 1] and agree with the reference to 2e-4 (measured: ~2e-5).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse import csgraph

from faceflax.geometry.mesh import vertex_normals
from faceflax.render.rasterizer import Fragments
from faceflax.render.uv import vertex_colors_to_uv
from faceflax.solvers import poisson_mesh as pm

TOLERANCE = 2e-4  # float32 PCG at tol 1e-4 vs float64 direct, colours in [0, 1]
YAWS = (0.0, -45.0, 45.0)  # frontal (the reference view), left, right
OFFSETS = np.array([[0.0, 0.0, 0.0], [0.1, -0.05, 0.02], [-0.08, 0.04, 0.1]], np.float32)


# ----------------------------------------------------------------------------- meshes and scenes


@functools.cache
def sphere(subdivisions: int = 3, seed: int = 0):
    """An icosphere with radii jittered by 10% (uneven triangles): ``(verts, faces)``."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    jitter = 1 + 0.1 * np.random.default_rng(seed).random((len(mesh.vertices), 1))
    return (mesh.vertices * jitter).astype(np.float32), np.asarray(mesh.faces, np.int32)


def scene(verts, faces, normals=None):
    """Scores ``max(n . d_k, 0)`` for view directions at ``YAWS`` and smooth colours with
    per-view offsets (what a miscalibrated view would add): ``(colors [3, V, 3], scores [3, V])``."""
    if normals is None:
        normals = np.asarray(vertex_normals(jnp.asarray(verts), jnp.asarray(faces)))
    yaw = np.deg2rad(YAWS)
    directions = np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], 1)
    scores = np.maximum(normals @ directions.T, 0.0).T.astype(np.float32)
    x, y, z = verts.T / np.abs(verts).max()
    base = 0.5 + 0.3 * np.stack([np.sin(3 * x), np.cos(2 * y), np.sin(2 * x + z)], -1)
    return (base[None] + OFFSETS[:, None]).astype(np.float32), scores


@functools.cache
def fuser(name: str, weighting: str = "uniform", tol: float = 1e-4, max_iters: int = 100):
    """A jitted ``(verts, colors, scores) -> (fused, info)`` for one of the test meshes."""
    verts, faces = MESHES[name]()
    hierarchy = pm.mesh_hierarchy(faces, len(verts), verts, weighting=weighting)
    return jax.jit(
        lambda v, c, s: pm.fuse_views(
            v, faces, c, s, hierarchy=hierarchy, weighting=weighting, tol=tol, max_iters=max_iters
        )
    )


@functools.cache
def spheres():
    """Two jittered icospheres side by side (324 vertices, two connected components)."""
    verts, faces = sphere(2)
    other, _ = sphere(2, seed=1)
    return np.concatenate([verts, other + [3.0, 0.0, 0.0]]).astype(np.float32), np.concatenate(
        [faces, faces + len(verts)]
    ).astype(np.int32)


MESHES = {"spheres": spheres}


# ----------------------------------------------------------------------------- independent reference


def gradient_matrix(verts, faces):
    """``G`` (3F x V), row ``3 t + x``, from ``g . (p1 - p0) = f1 - f0``, ``g . (p2 - p0) = f2 - f0``, ``g . n = 0``."""
    p = verts[faces].astype(np.float64)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    frame = np.stack([e1, e2, np.cross(e1, e2)], 1)
    differences = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    local = np.linalg.solve(frame, np.broadcast_to(differences, frame.shape))  # [F, xyz, corner]
    rows = np.broadcast_to(np.arange(len(faces))[:, None, None] * 3 + np.arange(3)[None, :, None], local.shape)
    cols = np.broadcast_to(faces[:, None, :], local.shape)
    return sp.csr_matrix((local.ravel(), (rows.ravel(), cols.ravel())), shape=(3 * len(faces), len(verts)))


def fuse_reference(verts, faces, colors, scores, screening=0.1, weighting="uniform"):
    """Eq. 6 stacked as a sparse least-squares problem, solved in float64 through SuperLU."""
    num_views, num_vertices, _ = colors.shape
    num_faces = len(faces)
    g = gradient_matrix(verts, faces)
    confidence = scores[:, faces].min(-1)
    triangle = np.where(confidence.max(0) > 0, confidence.argmax(0), num_views)
    vertex = np.where(scores.max(0) > 0, scores.argmax(0), num_views)
    p = verts[faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    rho = np.ones(num_faces) if weighting == "uniform" else area / area.mean()
    rows = sp.diags(np.repeat(np.sqrt(rho), 3))
    target = np.zeros((3 * num_faces, colors.shape[-1]))  # the extra selection: zero gradients
    for k in range(num_views):
        picked = np.repeat(triangle == k, 3)
        target[picked] = (g @ colors[k].astype(np.float64))[picked]
    # Screening rows: view 0's vertices; a component without one screens its seen vertices
    # toward their own view (all toward view 0 if none is seen), as documented.
    adjacency = sp.coo_matrix(
        (np.ones(faces.size), (faces.ravel(), np.roll(faces, 1, 1).ravel())), shape=(num_vertices,) * 2
    )
    _, component = csgraph.connected_components(adjacency, directed=False)
    screened, seen = vertex == 0, vertex < num_views
    has_screened = np.bincount(component, screened, component.max() + 1)[component] > 0
    has_seen = np.bincount(component, seen, component.max() + 1)[component] > 0
    index = np.flatnonzero(screened | (~has_screened & (seen | ~has_seen)))
    select = sp.csr_matrix((np.ones(len(index)), (np.arange(len(index)), index)), shape=(len(index), num_vertices))
    anchor = colors[np.where(seen, vertex, 0), np.arange(num_vertices)].astype(np.float64)[index]
    system = sp.vstack([rows @ g, screening * select]).tocsr()
    rhs = np.concatenate([rows @ target, screening * anchor])
    return spla.splu((system.T @ system).tocsc()).solve(system.T @ rhs), triangle, vertex


# ----------------------------------------------------------------------------- gradient operator


def test_gradient_operator_is_exact_on_linear_functions_and_its_transpose_is_the_adjoint():
    verts, faces = sphere(2)
    op = pm.gradient_operator(verts, faces)
    a = np.array([0.3, -1.2, 0.7], np.float32)
    grads = np.asarray(op(jnp.asarray(verts @ a)))  # [F, 3]
    p = verts[faces].astype(np.float64)
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    projected = a[None] - (normal @ a)[:, None] * normal  # a projected onto each triangle plane
    np.testing.assert_allclose(grads, projected, atol=2e-5)

    # Any f: the gradient reproduces the differences along the edges and lies in the plane.
    f = np.random.default_rng(0).normal(size=len(verts)).astype(np.float32)
    grads = np.asarray(op(jnp.asarray(f)), np.float64)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        along = np.einsum("tx,tx->t", grads, p[:, j] - p[:, i])
        np.testing.assert_allclose(along, f[faces[:, j]] - f[faces[:, i]], atol=2e-5)
    np.testing.assert_allclose(np.einsum("tx,tx->t", grads, normal), 0.0, atol=2e-5)
    np.testing.assert_allclose(grads.ravel(), gradient_matrix(verts, faces) @ f, rtol=1e-4, atol=1e-4)

    # G^T is the adjoint of G (multi-channel too): <G f, g> = <f, G^T g>.
    rng = np.random.default_rng(1)
    f = jnp.asarray(rng.normal(size=(len(verts), 2)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(len(faces), 3, 2)), jnp.float32)
    lhs = float(jnp.sum(op(f) * g))
    rhs = float(jnp.sum(f * op.transpose(g)))
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs)


# ----------------------------------------------------------------------------- view selection


def test_each_triangle_and_vertex_is_selected_exactly_once():
    verts, faces = sphere(2)
    rng = np.random.default_rng(2)
    scores = rng.random((3, len(verts))).astype(np.float32)
    scores[rng.random(scores.shape) < 0.4] = 0.0  # occlusion: many zeros, some all-zero vertices
    scores[:, :20] = 0.0
    selection = pm.select_views(faces, scores)
    triangles, vertices = (np.asarray(m) for m in pm.selection_matrices(selection))
    assert triangles.shape == (4, len(faces)) and vertices.shape == (4, len(verts))
    np.testing.assert_array_equal(triangles.sum(0), 1)  # the K + 1 selections partition the triangles
    np.testing.assert_array_equal(vertices.sum(0), 1)
    confidence = scores[:, faces].min(-1)
    expected = np.where(confidence.max(0) > 0, confidence.argmax(0), 3)
    np.testing.assert_array_equal(np.asarray(selection.triangle), expected)
    assert np.all(np.asarray(selection.triangle)[confidence.max(0) == 0] == 3)  # -> the extra selection
    assert (expected == 3).sum() > 0 and all((expected == k).sum() > 0 for k in range(3))
    np.testing.assert_array_equal(np.asarray(selection.vertex), np.where(scores.max(0) > 0, scores.argmax(0), 3))
    np.testing.assert_allclose(np.asarray(selection.confidence), confidence)
    # Ties go to the lower view (the reference).
    tied = pm.select_views(faces, np.ones((3, len(verts)), np.float32))
    assert np.all(np.asarray(tied.triangle) == 0) and np.all(np.asarray(tied.vertex) == 0)


# ----------------------------------------------------------------------------- fusion vs scipy


@pytest.mark.parametrize("weighting", ["uniform", "area"])
def test_fusion_matches_scipy_least_squares_on_a_generated_mesh(weighting):
    verts, faces = spheres()
    colors, scores = scene(verts, faces)
    fused, info = fuser("spheres", weighting)(verts, colors, scores)
    expected, triangle, _ = fuse_reference(verts, faces, colors, scores, weighting=weighting)
    assert info.converged.shape == (3,) and bool(info.converged.all())  # one PCG per channel
    assert {0, 1, 2, 3} <= set(np.unique(triangle))  # every view and the extra selection are used
    np.testing.assert_allclose(np.asarray(fused), expected, atol=TOLERANCE)


def test_a_mesh_below_the_coarsest_size_is_solved_by_the_dense_inverse():
    verts, faces = sphere(1)  # 42 vertices: no multigrid level, the preconditioner is exact
    colors, scores = scene(verts, faces)
    hierarchy = pm.mesh_hierarchy(faces, len(verts), verts)
    assert hierarchy.levels == () and hierarchy.sizes == (len(verts),)
    fused, info = jax.jit(lambda v, c, s: pm.fuse_views(v, faces, c, s, hierarchy=hierarchy))(verts, colors, scores)
    assert bool(info.converged.all()) and int(info.iterations.max()) <= 2
    np.testing.assert_allclose(np.asarray(fused), fuse_reference(verts, faces, colors, scores)[0], atol=TOLERANCE)


def test_fusion_matches_scipy_least_squares_on_the_ict_face(ict_face):
    verts, faces = np.asarray(ict_face.mean, np.float32), np.asarray(ict_face.faces, np.int32)
    colors, scores = scene(verts, faces)
    hierarchy = pm.mesh_hierarchy(faces, len(verts), verts)
    assert len(hierarchy.levels) >= 2
    fused, info = jax.jit(lambda v, c, s: pm.fuse_views(v, faces, c, s, hierarchy=hierarchy))(verts, colors, scores)
    expected, _, _ = fuse_reference(verts, faces, colors, scores)
    assert bool(info.converged.all()) and int(info.iterations.max()) <= 30
    np.testing.assert_allclose(np.asarray(fused), expected, atol=TOLERANCE)


def test_components_without_a_reference_vertex_are_screened_toward_their_own_views():
    verts, faces = spheres()
    colors, scores = scene(verts, faces)
    half = len(verts) // 2
    scores[0, half:] = 0.0  # the reference view does not see the second sphere at all
    fused, info = fuser("spheres")(verts, colors, scores)
    expected, _, vertex = fuse_reference(verts, faces, colors, scores)
    assert bool(info.converged.all()) and np.all(vertex[half:] != 0)
    np.testing.assert_allclose(np.asarray(fused), expected, atol=TOLERANCE)


# ----------------------------------------------------------------------------- properties


def test_one_view_selected_everywhere_returns_its_colours():
    verts, faces = spheres()
    colors, _ = scene(verts, faces)
    fuse = fuser("spheres")
    for best in (0, 1):  # view 1 everywhere: no reference vertex, screened toward view 1
        scores = np.full((3, len(verts)), 0.2, np.float32)
        scores[best] = 0.9
        fused, info = fuse(verts, colors, scores)
        assert bool(info.converged.all())
        np.testing.assert_allclose(np.asarray(fused), colors[best], atol=1e-4)


def test_a_constant_colour_offset_between_views_is_removed():
    verts, faces = spheres()
    colors, scores = scene(verts, faces)
    scores = scores + 0.01  # every triangle seen (an unseen one would take a zero gradient)
    consistent = colors[:1] + OFFSETS[:, None]  # every view = view 0 + a constant per view
    fused, _ = fuser("spheres")(verts, consistent, scores)
    selection = pm.select_views(faces, scores)
    assert set(np.unique(np.asarray(selection.triangle))) == {0, 1, 2}  # the offsets meet at seams
    np.testing.assert_allclose(np.asarray(fused), consistent[0], atol=1e-4)
    # With the offsets the fused colours are not a plain pick of each vertex's own view.
    picked = consistent[np.asarray(selection.vertex), np.arange(len(verts))]
    assert np.abs(picked - consistent[0]).max() > 0.05


# ----------------------------------------------------------------------------- differentiation


def test_gradients_match_central_finite_differences():
    """Implicit gradients w.r.t. the view colours and the vertex positions vs central differences.

    Colours: differences of the solver itself (the map is linear). Positions: differences of
    the float64 reference (exact), since float32 rounding of the fused colours (~1e-6) divided
    by eps would dominate; the float32 gradient is good to ~1e-4 of its norm. The loss weights
    have zero mean and the directions are smooth: the offset mode is held only by lambda^2, so
    float32 fixes it to ~1e-4 for rough data (forward noise, not a gradient error)."""
    verts, faces = spheres()
    colors, scores = scene(verts, faces)
    weights = np.random.default_rng(3).normal(size=(len(verts), 3))
    weights -= weights.mean(0)
    x, y, z = verts.T
    dc = np.stack([np.stack([np.sin(2 * x + k), np.cos(3 * y - k), np.sin(x * y + z)], -1) for k in range(3)])
    dv = 0.1 * np.stack([np.cos(4 * y), np.sin(3 * z), np.cos(2 * x + y)], -1)
    fuse = fuser("spheres")

    def loss(c, v):
        return jnp.sum(weights * fuse(v, c, scores)[0])

    grad_c, grad_v = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(colors), jnp.asarray(verts))

    def loss32(c):  # summed in float64 on the host
        return np.sum(weights * np.asarray(fuse(verts, c.astype(np.float32), scores)[0], np.float64))

    numeric = (loss32(colors + 0.3 * dc) - loss32(colors - 0.3 * dc)) / 0.6
    analytic = float(jnp.sum(grad_c * dc))
    assert abs(numeric - analytic) <= 1e-3 * abs(analytic), (numeric, analytic)

    def loss64(v):
        return np.sum(weights * fuse_reference(v, faces, colors.astype(np.float64), scores)[0])

    numeric = (loss64(verts + 1e-4 * dv) - loss64(verts - 1e-4 * dv)) / 2e-4
    analytic = float(jnp.sum(grad_v * dv))
    bound = 1e-3 * abs(numeric) + 1e-4 * float(jnp.linalg.norm(grad_v)) * np.linalg.norm(dv)
    assert abs(numeric - analytic) <= bound, (numeric, analytic, bound)
    assert abs(numeric) > 0.05 * float(jnp.linalg.norm(grad_v)) * np.linalg.norm(dv) / np.sqrt(dv.size)


def test_batched_fusion_equals_a_loop_and_non_convergence_is_flagged():
    verts, faces = spheres()
    colors, scores = scene(verts, faces)
    rng = np.random.default_rng(4)
    batch_verts = np.stack([verts, verts * 1.1 + 0.05 * rng.normal(size=verts.shape)]).astype(np.float32)
    batch_colors = np.stack([colors, colors[::-1] + 0.1]).astype(np.float32)
    batch_scores = np.stack([scores, np.roll(scores, 1, 0)]).astype(np.float32)
    hierarchy = pm.mesh_hierarchy(faces, len(verts), verts)
    fused, info = jax.jit(lambda v, c, s: pm.fuse_views_batch(v, faces, c, s, hierarchy=hierarchy))(
        batch_verts, batch_colors, batch_scores
    )
    assert fused.shape == (2, len(verts), 3) and info.converged.shape == (2, 3) and bool(info.converged.all())
    fuse = fuser("spheres")
    for i in range(2):
        single, _ = fuse(batch_verts[i], batch_colors[i], batch_scores[i])
        # Under vmap PCG runs until every item has converged: equal to the solver accuracy.
        np.testing.assert_allclose(np.asarray(fused[i]), np.asarray(single), atol=1e-4)

    capped, info = fuser("spheres", max_iters=1)(verts, colors, scores)
    assert not bool(info.converged.any()) and np.all(np.asarray(info.iterations) == 1)
    assert np.abs(np.asarray(capped) - np.asarray(fuse(verts, colors, scores)[0])).max() > 1e-4


# ----------------------------------------------------------------------------- UV texture


def test_fused_colours_become_a_uv_texture():
    # Two triangles over a 2x2 texture; texel (i, j) sees triangle i with barycentrics b_ij.
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    tri_id = jnp.asarray([[[0, 0], [1, -1]]], jnp.int32)
    bary = jnp.asarray([[[[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]]]], jnp.float32)
    frags = Fragments(tri_id, bary, jnp.zeros((1, 2, 2), jnp.float32))
    fused = jnp.asarray(np.random.default_rng(5).random((4, 3)), jnp.float32)
    texture = np.asarray(pm.fused_uv_texture(fused, faces, frags))
    expected = np.zeros((2, 2, 3), np.float32)
    expected[0, 0] = fused[0]
    expected[0, 1] = 0.2 * fused[0] + 0.3 * fused[1] + 0.5 * fused[2]
    expected[1, 0] = 0.5 * fused[2] + 0.5 * fused[3]  # triangle 1 = (0, 2, 3)
    np.testing.assert_allclose(texture, expected, atol=1e-6)  # 0 outside the layout
    np.testing.assert_allclose(np.asarray(vertex_colors_to_uv(fused[None], faces, frags)[0]), texture)
    np.testing.assert_allclose(np.asarray(pm.fused_uv_texture(fused[None], faces, frags))[0], texture)
