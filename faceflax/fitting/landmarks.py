"""Fit a morphable model's pose, identity and expression to 68 detected 2D landmarks.

Stage 3 of ``faceflax reconstruct`` (thesis ch. 4-5; Deep3DFaceRecon's landmark term): find
Euler angles ``(pitch, yaw, roll)``, a translation ``t``, identity coefficients ``alpha`` and
expression coefficients ``beta`` minimising (a MAP estimate: Gaussian landmark noise and priors)

    E = sum_i w_i |M_i (Pi(R S_i(alpha, beta) + t) - l_i)|^2 / sigma^2
        + lambda_id |alpha|^2 + lambda_exp |beta|^2,                                    (1)

where ``S = mean + alpha B_id + beta B_exp`` (MvInvert eq. 1), ``S_i`` the model point of
landmark ``i``, ``R = euler_to_matrix(angles)``, ``Pi`` the projection of
:class:`~faceflax.geometry.camera.PerspectiveCamera` with Deep3DFaceRecon's camera (focal 1015,
principal point 112 at 224 px, camera at ``z = 10``) rescaled to the image
(``PerspectiveCamera.for_image_size``), ``l_i`` the detections (pixels, x right, y down, dlib
convention), ``sigma`` the landmark noise in pixels and ``M_i`` the identity, except for sliding
contour landmarks (below). Identity coefficients are unit variance, so ``lambda_id = 1`` is the
Gaussian prior; PCA expressions (BFM) get the same Gaussian prior; blendshape expressions
(ICT-FaceKit, nominally in ``[0, 1]``) get the prior pulling toward 0 and, by default, the box
``0 <= beta <= 1``.

Algorithm (JAX throughout; one compilation per model, image size and batch shape; ``vmap``s
over faces):

1. **Initial pose** (:func:`initial_pose`), from a neutral shape: the affine camera that best
   maps the mean shape's inner landmarks (iBUG 17-67) to the detections, by linear least
   squares, orthonormalised by SVD into a rotation and a scale (the affine "Gold Standard" of
   Hartley & Zisserman, Alg. 7.2, as eos ``fitting/orthographic_camera_estimation_linear.hpp``).
   The scale gives the depth ``focal / scale`` and the offset the translation: the initial yaw,
   pitch and roll come from the landmark geometry, so yaws of +-60 degrees start close.
2. **Outer loop**: update the jaw contour correspondences (below), then
3. **inner loop, Levenberg-Marquardt** on the stacked residual vector of (1): 136 landmark
   residuals plus ``sqrt(lambda) alpha`` and ``sqrt(lambda) beta`` (``6 + K_id + K_exp``
   parameters). The Jacobian is ``jax.jacfwd`` of the residuals; a step solves
   ``(J^T J + mu D) delta = -J^T r`` with Marquardt's scaling ``D = diag(J^T J)``, as the
   least-squares problem ``[J D^-1/2; sqrt(mu) I] (D^1/2 delta) = [-r; 0]`` by QR (float32
   normal equations would square the poor conditioning of depth against face size). A step is
   accepted when the cost drops (``mu /= 3``), else ``mu *= 4``; the run stops when the
   (achieved or predicted) relative decrease is below ``tolerance``. Blendshape coefficients
   are projected onto ``[0, 1]`` after each step, and those held at a bound by the gradient
   are frozen for the step (projected Gauss-Newton, Bertsekas 1982).
4. **Stopping.** Each outer iteration first evaluates eq. (1) with fresh correspondences at the
   current parameters (for sliding landmarks: the squared distance to the silhouette) and keeps
   the best state seen: the silhouette is re-estimated on a discrete mesh, so the alternation
   can end in a short cycle between near-equal correspondences. It has converged
   (``LandmarkFit.converged``) when an update moves no landmark point by more than
   ``contour_tolerance`` pixels after an LM run that converged, or when two updates in a row
   do not improve on the best state; otherwise it stops after ``outer_iterations`` LM runs.
   The best state is returned.

**Jaw contour (iBUG 0-16).** A detector puts jaw landmarks on the face's outline in the image.
At a large yaw the outline on the side turning away is the occluding contour (silhouette), not
the anatomical points behind it, so fixed vertex correspondences pull a profile fit toward a
frontal one. As eos does (Huber et al., "A Multiresolution 3D Morphable Face Model and Fitting
Framework", VISAPP 2016; ``fitting/contour_correspondence.hpp``: for each contour landmark the
model contour vertex whose projection is nearest to the detection, on the occluding side,
recomputed every outer iteration), contour correspondences here slide along the silhouette,
while the inner landmarks (17-67) and the chin (8, as in eos's contour lists) keep their
vertices. Zhu et al. ("High-Fidelity Pose and Expression Normalization", CVPR 2015; 3DDFA)
call the same idea landmark marching. eos reads its contour candidates from a hand-made list
per model; here they are built from the model, so ICT, BFM and MediaPipe work alike:

- *Rays* (:func:`contour_rays`, host NumPy, once per model in :func:`prepare`): in the mean
  shape seen from the front, polar coordinates about the midpoint of landmarks 0 and 16 split
  each jaw landmark's sector into thin angular rays of ``"face"``-region vertices, ordered from
  the inside out, between the convex hull of the inner landmarks (the nose and lips form a
  profile's outline but never carry jaw landmarks) and the jaw outline, and not behind the jaw
  (ears, neck).
- *Silhouette* (:func:`ray_silhouettes`, every outer iteration, at the current pose and shape):
  with vertex normals ``n`` of the posed shape and unit directions ``d`` to the camera, each
  ray's silhouette vertex is its outermost vertex with ``n . d > 0``: beyond it the ray only
  faces away, so that is where the ray crosses the occluding contour (the ray's outer end
  when it faces the camera throughout, e.g. on the side turning toward the camera).
- *Correspondence*: consecutive rays' silhouette vertices form a polyline in the image per side
  of the face (rays of sectors 0-8, 8-16). A jaw landmark whose own vertex is near or past the
  silhouette (``n . d < slide_threshold``: the side turning away) corresponds to the nearest
  point of its side's polyline to its detection, ``(1 - w) v_a + w v_b``, and its residual
  keeps only the offset across the contour (``M_i = u^T``, ``u`` the unit vector from that
  point to the detection: point-to-line, as point-to-plane ICP), so sliding along the contour
  is free and left to the next update. Other landmarks keep their vertex and ``M_i = I``.

Cost: per LM step a 68-point projection, its Jacobian and a small QR; per outer iteration the
shape and vertex normals of the sub-mesh around the rays. For ICT (20 + 12 coefficients, 38
parameters) a fit takes ~5-20 ms on CPU after compilation (which takes a few seconds).

Accuracy (``tests/fitting/test_landmarks.py``: random ICT faces at yaw 0 to +-60 and pitch to
+-15, jaw landmarks of the turned-away side placed on the silhouette by landmark marching):
noise-free, rotations within ~1-2 degrees and sub-pixel reprojection; with 2 px noise at
224 px, within a few degrees. Fixed jaw correspondences give 5-12 degrees at +-60 yaw.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import scipy.spatial
from jax.typing import ArrayLike

from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.mesh import vertex_normals
from faceflax.geometry.morphable import MorphableModel
from faceflax.geometry.rotation import euler_to_matrix, matrix_to_euler

NUM_LANDMARKS = 68
JAW = np.arange(17)  # iBUG 0-16: the contour landmarks
CHIN = 8
INNER = np.arange(17, 68)  # iBUG 17-67: brows, nose, eyes, mouth (fixed correspondences)

_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------- configuration


@flax.struct.dataclass
class LandmarkFitConfig:
    """Options of :func:`fit_landmarks`, eq. (1) and the module docstring.

    A pytree: numeric fields are traced, so changing them does not recompile the fit;
    ``expression_box`` and whether ``landmark_sigma`` is None are static.

    Attributes:
      landmark_sigma: landmark noise ``sigma`` in pixels; None: ``W / 112`` (2 px at
        Deep3DFaceRecon's 224-px crop). Balances the landmarks against the priors.
      id_prior: ``lambda_id``: 1 is the unit-variance Gaussian prior, 0 none.
      exp_prior: ``lambda_exp``: Gaussian prior (PCA) or pull toward 0 (blendshapes).
      expression_box: keep expression coefficients in ``[0, 1]``; None: when the model has
        named blendshapes (``model.expression_names``, e.g. ICT), not for PCA (BFM).
      slide_contour: let jaw landmarks slide along the silhouette; False keeps every landmark
        on its model vertex.
      slide_threshold: a jaw landmark slides when its own vertex has ``n . d`` below this.
      outer_iterations: maximum contour updates, each followed by an LM run (>= 1).
      contour_tolerance: pixels; the contour has converged when an update moves no landmark's
        model point by more than this.
      inner_iterations: maximum LM steps per outer iteration (>= 1).
      tolerance: LM stops when the cost drops by less than this fraction.
      initial_damping: LM's starting ``mu``.
    """

    landmark_sigma: float | None = None
    id_prior: float = 1.0
    exp_prior: float = 1.0
    expression_box: bool | None = flax.struct.field(pytree_node=False, default=None)
    slide_contour: bool = True
    slide_threshold: float = 0.1
    outer_iterations: int = 10
    contour_tolerance: float = 0.5
    inner_iterations: int = 12
    tolerance: float = 1e-5
    initial_damping: float = 1e-3

    def check(self) -> None:
        """Raise ``ValueError`` on values that cannot work (called by :func:`fit_landmarks`)."""
        if self.landmark_sigma is not None and not float(self.landmark_sigma) > 0:
            raise ValueError(f"landmark_sigma must be a positive number of pixels, got {self.landmark_sigma}")
        if int(self.outer_iterations) < 1 or int(self.inner_iterations) < 1:
            raise ValueError("outer_iterations and inner_iterations must be at least 1")
        if float(self.id_prior) < 0 or float(self.exp_prior) < 0:
            raise ValueError("id_prior and exp_prior must be >= 0")


# --------------------------------------------------------------------------- prepared model


@flax.struct.dataclass
class LandmarkModel:
    """The part of a :class:`MorphableModel` that landmark fitting touches (:func:`prepare`).

    A sub-mesh of the landmark vertices, the contour rays and the triangles around them
    (enough for exact vertex normals there); vertex indices below are into the sub-mesh.

    Attributes:
      mean: ``[Vs, 3]`` float32 mean shape of the sub-mesh.
      id_basis: ``[K_id, Vs, 3]`` float32.
      exp_basis: ``[K_exp, Vs, 3]`` float32.
      faces: ``[Fs, 3]`` int32 triangles touching a ray or jaw landmark vertex.
      landmarks: ``[68]`` int32 landmark vertices (iBUG order).
      rays: ``[R, M]`` int32 contour candidates, one row per ray, inside out (padded).
      ray_mask: ``[R, M]`` bool, False on padding.
      segments: ``[17, R - 1]`` bool: contour segments (ray ``r`` to ``r + 1``) that jaw
        landmark ``j`` may slide onto (its side of the face).
      vertex_ids: ``[Vs]`` int32 index of each sub-mesh vertex in the full model.
      blendshapes: the expression basis is blendshapes in ``[0, 1]`` (static).
      name: the model's name (static).
    """

    mean: Any
    id_basis: Any
    exp_basis: Any
    faces: Any
    landmarks: Any
    rays: Any
    ray_mask: Any
    segments: Any
    vertex_ids: Any
    blendshapes: bool = flax.struct.field(pytree_node=False, default=False)
    name: str = flax.struct.field(pytree_node=False, default="")

    @property
    def id_rank(self) -> int:
        return self.id_basis.shape[0]

    @property
    def exp_rank(self) -> int:
        return self.exp_basis.shape[0]


def contour_rays(
    model: MorphableModel,
    rays_per_landmark: int = 16,
    max_ratio: float = 1.0,
    depth_margin: float = 0.05,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Contour candidates of the jaw landmarks, as rays of vertices (host NumPy).

    In the frontal view (``x, y``) of the mean shape, polar coordinates about the midpoint of
    landmarks 0 and 16 give each jaw landmark ``j`` a sector, half-way to its neighbours' angles
    (the end sectors reach as far beyond 0 and 16), split into ``rays_per_landmark`` equal
    angular rays. A ray holds the ``"face"``-region vertices of its angular range that lie

    - outside the convex hull of the inner landmarks 17-67 (brows, eyes, nose, mouth: their
      outlines are a profile's silhouette but never carry a jaw landmark),
    - within ``max_ratio`` times the jaw outline's radius at that angle (linear between the jaw
      landmarks), and
    - no deeper than ``depth_margin * |x_16 - x_0|`` behind the jaw outline (linear between the
      landmarks' ``z``): ears and neck lie behind the jaw, while the silhouette of a face
      turning away moves forward, onto the cheek.

    Each ray is ordered from the inside out (by radius); empty rays (coarse meshes) are dropped.

    Args:
      model: a model with 68 landmarks.
      rays_per_landmark: rays per jaw landmark sector.
      max_ratio: outer radius bound relative to the jaw outline.
      depth_margin: depth slack, as a fraction of the jaw width.

    Returns:
      ``(rays, owners)``: int64 arrays of full-model vertex indices in angular order from
      landmark 0 round the chin to 16, and ``[R]`` int64 the jaw landmark of each ray's sector.

    Raises:
      ValueError: when the model has no 68 landmarks, they do not run round the face, or no
        vertex qualifies.
    """
    landmarks = np.asarray(model.landmarks).reshape(-1)
    if landmarks.shape != (NUM_LANDMARKS,):
        raise ValueError(f"model {model.name!r} has no 68 iBUG landmarks; landmark fitting needs them")
    mean = np.asarray(model.mean, np.float64)
    jaw = mean[landmarks[JAW]]
    centre = 0.5 * (jaw[0, :2] + jaw[16, :2])
    width = float(np.hypot(*(jaw[16, :2] - jaw[0, :2])))
    start = np.arctan2(*(jaw[0, :2] - centre)[::-1])

    def polar(points):
        # Angle from landmark 0's direction, counter-clockwise (x right, y up): chin, then 16.
        rel = points[..., :2] - centre
        angle = np.arctan2(rel[..., 1], rel[..., 0]) - start
        return np.mod(angle, 2 * np.pi), np.hypot(rel[..., 0], rel[..., 1])

    jaw_angle, jaw_radius = polar(jaw)
    jaw_angle[0] = 0.0
    if np.any(np.diff(jaw_angle) <= 0):
        raise ValueError(f"model {model.name!r}: jaw landmarks 0-16 do not run round the face in order")
    gaps = np.diff(jaw_angle)
    bounds = np.concatenate([[-gaps[0] / 2], jaw_angle[:-1] + gaps / 2, [jaw_angle[-1] + gaps[-1] / 2]])
    angle, radius = polar(mean)
    angle = np.where(angle > bounds[-1], angle - 2 * np.pi, angle)  # just above landmark 0
    ratio = radius / np.maximum(np.interp(angle, jaw_angle, jaw_radius), 1e-12)
    keep = np.asarray(model.regions["face"], bool) & (ratio <= max_ratio)
    keep &= mean[:, 2] >= np.interp(angle, jaw_angle, jaw[:, 2]) - depth_margin * width
    keep &= scipy.spatial.Delaunay(mean[landmarks[INNER], :2]).find_simplex(mean[:, :2]) < 0
    sector = np.searchsorted(bounds, angle, side="right") - 1  # jaw landmark of each vertex
    step = np.diff(bounds)[np.clip(sector, 0, 16)] / rays_per_landmark
    sub = np.floor((angle - bounds[np.clip(sector, 0, 16)]) / step).astype(np.int64)
    sub = np.clip(sub, 0, rays_per_landmark - 1)
    ray_id = np.where(keep & (sector >= 0) & (sector < 17), sector * rays_per_landmark + sub, -1)
    rays, owners = [], []
    for k in np.unique(ray_id[ray_id >= 0]):
        ray = np.flatnonzero(ray_id == k)
        rays.append(ray[np.argsort(radius[ray], kind="stable")])
        owners.append(k // rays_per_landmark)
    if not rays:
        raise ValueError(f"model {model.name!r}: no contour candidates between the jaw and the inner landmarks")
    return rays, np.asarray(owners, np.int64)


def prepare(
    model: MorphableModel,
    rays_per_landmark: int = 16,
    max_ratio: float = 1.0,
    depth_margin: float = 0.05,
) -> LandmarkModel:
    """The :class:`LandmarkModel` of a morphable model (host work; do it once per model).

    Args:
      model: a model with 68 iBUG landmarks (``model.landmarks``).
      rays_per_landmark, max_ratio, depth_margin: contour rays, see :func:`contour_rays`.

    Returns:
      A :class:`LandmarkModel` with jnp leaves.

    Raises:
      ValueError: when the model has no landmarks or no contour candidates.
    """
    rays, owners = contour_rays(model, rays_per_landmark, max_ratio, depth_margin)
    landmarks = np.asarray(model.landmarks, np.int64)
    faces = np.asarray(model.faces, np.int64)
    touched = np.zeros(len(np.asarray(model.mean)), bool)
    touched[landmarks[JAW]] = True
    touched[np.concatenate(rays)] = True  # vertex normals are needed exactly there
    sub_faces = faces[np.any(touched[faces], axis=1)]
    keep = np.unique(np.concatenate([sub_faces.reshape(-1), landmarks, *rays]))
    new_index = np.full(len(touched), -1, np.int64)
    new_index[keep] = np.arange(len(keep))
    if len(rays) == 1:  # one ray: a single degenerate segment
        rays, owners = rays * 2, np.concatenate([owners, owners])
    width = max(len(r) for r in rays)
    ray_vertices = np.zeros((len(rays), width), np.int32)
    mask = np.zeros((len(rays), width), bool)
    for k, ray in enumerate(rays):
        ray_vertices[k, : len(ray)] = new_index[ray]
        mask[k, : len(ray)] = True
    # As eos: a landmark slides along the contour of its side of the face (rays of sectors
    # 0-8 or 8-16); the contour is the polyline through consecutive rays' silhouette vertices.
    side = np.sign(np.arange(17) - CHIN)[:, None]
    on_side = np.sign(owners - CHIN)[None, :] * side >= 0  # [17, R]
    return LandmarkModel(
        mean=jnp.asarray(np.asarray(model.mean)[keep], jnp.float32),
        id_basis=jnp.asarray(np.asarray(model.id_basis)[:, keep], jnp.float32),
        exp_basis=jnp.asarray(np.asarray(model.exp_basis)[:, keep], jnp.float32),
        faces=jnp.asarray(new_index[sub_faces], jnp.int32),
        landmarks=jnp.asarray(new_index[landmarks], jnp.int32),
        rays=jnp.asarray(ray_vertices),
        ray_mask=jnp.asarray(mask),
        segments=jnp.asarray(on_side[:, :-1] & on_side[:, 1:]),
        vertex_ids=jnp.asarray(keep, jnp.int32),
        blendshapes=len(model.expression_names) > 0,
        name=model.name,
    )


# --------------------------------------------------------------------------- result


@flax.struct.dataclass
class LandmarkFit:
    """Result of :func:`fit_landmarks`; leading batch dims ``[...]`` as the landmarks'.

    Attributes:
      angles: ``[..., 3]`` float32 ``(pitch, yaw, roll)`` radians (``euler_to_matrix``).
      translation: ``[..., 3]`` float32, model units; the posed shape is ``R S + t``.
      id_coeffs: ``[..., K_id]`` float32.
      exp_coeffs: ``[..., K_exp]`` float32.
      landmarks: ``[..., 68, 2]`` float32 fitted landmark pixels: the projections of the final
        model points (for sliding jaw landmarks, points on the silhouette).
      errors: ``[..., 68]`` float32 per-landmark reprojection error ``|fitted - detected|``
        in pixels.
      mean_error: ``[...]`` float32 mean of ``errors``.
      correspondences: ``[..., 68]`` int32 full-model vertex of each landmark (for a sliding
        one, the nearer of the two contour vertices it interpolates).
      iterations: ``[...]`` int32 LM steps taken over all outer iterations.
      converged: ``[...]`` bool: the last LM run met its tolerance and the last contour update
        moved no landmark point by more than ``contour_tolerance`` pixels.
    """

    angles: jax.Array
    translation: jax.Array
    id_coeffs: jax.Array
    exp_coeffs: jax.Array
    landmarks: jax.Array
    errors: jax.Array
    mean_error: jax.Array
    correspondences: jax.Array
    iterations: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------- pieces


def _posed(angles, translation, points):
    """``R(angles) p + t`` for ``points [N, 3]``."""
    return jnp.matmul(points, euler_to_matrix(angles).T, precision=_HIGHEST) + translation


def _combine(mean, id_basis, exp_basis, alpha, beta):
    """``mean + alpha B_id + beta B_exp`` on ``[N, 3]`` rows (MvInvert eq. 1)."""
    out = mean + jnp.einsum("k,knc->nc", alpha, id_basis, precision=_HIGHEST)
    return out + jnp.einsum("k,knc->nc", beta, exp_basis, precision=_HIGHEST)


def initial_pose(lmodel: LandmarkModel, landmarks: ArrayLike, camera: PerspectiveCamera) -> tuple[jax.Array, jax.Array]:
    """Pose from the inner landmarks by an affine camera (Hartley & Zisserman Alg. 7.2; eos).

    Solves ``u_i = A X_i + b`` in least squares for the mean shape's landmarks 17-67 ``X_i``
    and the detections ``u_i`` (y flipped to point up), takes the rotation's first two rows
    as the orthonormal polar factor of ``A`` (SVD ``A = U S V^T -> U V^T``), the third as
    their cross product, and the scale ``s = mean(S)``. The perspective camera's depth is then
    ``focal / s``: ``t_z = distance - focal / s``, and ``t_xy = (b - c) / s``.

    Args:
      lmodel: the prepared model.
      landmarks: ``[68, 2]`` float32 detected pixels (x right, y down).
      camera: the perspective camera.

    Returns:
      ``(angles [3], translation [3])`` float32.
    """
    points = lmodel.mean[lmodel.landmarks[INNER]]
    pix = jnp.asarray(landmarks, jnp.float32)[INNER]
    up = jnp.stack([pix[:, 0], (camera.image_size[0] - 1) - pix[:, 1]], axis=-1)
    design = jnp.concatenate([points, jnp.ones_like(points[:, :1])], axis=-1)
    solution, *_ = jnp.linalg.lstsq(design, up)  # [4, 2]
    affine, offset = solution[:3].T, solution[3]
    u, singular, vt = jnp.linalg.svd(affine, full_matrices=False)
    rows = jnp.matmul(u, vt, precision=_HIGHEST)
    rotation = jnp.concatenate([rows, jnp.cross(rows[0], rows[1])[None]], axis=0)
    scale = jnp.maximum(jnp.mean(singular), 1e-6)  # degenerate detections: far away, not inf
    t_xy = (offset - jnp.stack([camera.cx, camera.cy])) / scale
    t_z = camera.distance - camera.focal / scale
    return matrix_to_euler(rotation), jnp.concatenate([t_xy, jnp.reshape(t_z, (1,))])


def ray_silhouettes(
    lmodel: LandmarkModel,
    angles: ArrayLike,
    translation: ArrayLike,
    id_coeffs: ArrayLike,
    exp_coeffs: ArrayLike,
    camera: PerspectiveCamera,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each contour ray's silhouette vertex at a pose and shape (module docstring).

    With ``s = n . d`` (vertex normal of the posed shape dotted with the unit direction to the
    camera), a ray's silhouette vertex is its outermost vertex with ``s > 0``: beyond it the ray
    only faces away, so that is where it crosses the occluding contour. A ray facing the camera
    throughout gives its outer end; one facing away throughout its inner end.

    Args:
      lmodel: the prepared model.
      angles, translation: ``[3]`` pose.
      id_coeffs, exp_coeffs: ``[K_id]``, ``[K_exp]`` coefficients.
      camera: the perspective camera.

    Returns:
      ``(vertices [R] int32, pix [Vs, 2] float32, facing [Vs] float32)``: the silhouette vertex
      of each ray, the projected sub-mesh and ``s`` per sub-mesh vertex.
    """
    verts = _posed(angles, translation, _combine(lmodel.mean, lmodel.id_basis, lmodel.exp_basis, id_coeffs, exp_coeffs))
    pix, _ = camera.project(verts)
    facing = jnp.sum(vertex_normals(verts, lmodel.faces) * camera.view_directions(verts), axis=-1)
    front = lmodel.ray_mask & (facing[lmodel.rays] > 0.0)
    stop = jnp.max(jnp.where(front, jnp.arange(lmodel.rays.shape[1]), 0), axis=1)
    return jnp.take_along_axis(lmodel.rays, stop[:, None], axis=1)[:, 0], pix, facing


def _contour_correspondences(lmodel, params, landmarks, camera, config, num_id):
    """Jaw correspondences at the current fit: ``(a, b, w [17], metric [17, 2, 2])``.

    Landmark ``j`` corresponds to the point ``(1 - w) v_a + w v_b`` of its side's silhouette
    polyline nearest to its detection in the image, or to its own vertex (``a = b``, ``w = 0``)
    when it does not slide; its residual is ``metric @ (projection - detection)``.
    """
    outer, pix, facing = ray_silhouettes(
        lmodel, params[:3], params[3:6], params[6 : 6 + num_id], params[6 + num_id :], camera
    )
    own = lmodel.landmarks[:17]
    slide = config.slide_contour & (facing[own] < config.slide_threshold) & (jnp.arange(17) != CHIN)
    start = pix[outer[:-1]]  # [R - 1, 2] segment starts
    edge = pix[outer[1:]] - start
    rel = landmarks[:17, None, :] - start[None]  # [17, R - 1, 2]
    length2 = jnp.maximum(jnp.sum(edge * edge, axis=-1), 1e-12)
    w = jnp.clip(jnp.sum(rel * edge[None], axis=-1) / length2, 0.0, 1.0)
    offset = rel - w[..., None] * edge[None]  # nearest segment point -> detection
    k = jnp.argmin(jnp.where(lmodel.segments, jnp.sum(offset * offset, axis=-1), jnp.inf), axis=1)
    w = jnp.take_along_axis(w, k[:, None], axis=1)[:, 0]
    offset = jnp.take_along_axis(offset, k[:, None, None], axis=1)[:, 0]
    # Point-to-line: only the offset across the contour counts, along the unit vector from the
    # contour point to the detection (the segment's normal when they coincide).
    tangent = edge[k] / jnp.sqrt(length2[k])[:, None]
    normal = jnp.stack([-tangent[:, 1], tangent[:, 0]], axis=-1)
    distance = jnp.linalg.norm(offset, axis=-1, keepdims=True)
    across = jnp.where(distance > 1e-3, offset / jnp.maximum(distance, 1e-3), normal)
    metric = jnp.where(slide[:, None, None], jnp.stack([across, jnp.zeros_like(across)], axis=1), jnp.eye(2))
    return jnp.where(slide, outer[k], own), jnp.where(slide, outer[k + 1], own), jnp.where(slide, w, 0.0), metric


def _fit_one(lmodel: LandmarkModel, landmarks, weights, camera: PerspectiveCamera, config: LandmarkFitConfig):
    """One face: ``landmarks [68, 2]``, ``weights [68]`` -> :class:`LandmarkFit`."""
    num_id, num_exp = lmodel.id_rank, lmodel.exp_rank
    num_params = 6 + num_id + num_exp
    sigma = camera.image_size[1] / 112.0 if config.landmark_sigma is None else config.landmark_sigma
    data_scale = jnp.sqrt(weights)[:, None] / sigma
    prior_scale = jnp.concatenate(
        [jnp.full((num_id,), jnp.sqrt(config.id_prior)), jnp.full((num_exp,), jnp.sqrt(config.exp_prior))]
    )
    box = (lmodel.blendshapes if config.expression_box is None else config.expression_box) and num_exp > 0

    def project_params(p):
        return p.at[6 + num_id :].set(jnp.clip(p[6 + num_id :], 0.0, 1.0)) if box else p

    def gather(corr):
        """Model rows of the landmark points ``(1 - w) v_a + w v_b``, and the residual metric."""
        a, b, w, metric = corr
        rows = tuple(
            (1.0 - w)[:, None] * x[..., a, :] + w[:, None] * x[..., b, :]
            for x in (lmodel.mean, lmodel.id_basis, lmodel.exp_basis)
        )
        return rows + (metric,)

    def project_points(p, parts):
        points = _combine(*parts[:3], p[6 : 6 + num_id], p[6 + num_id :])
        return camera.project(_posed(p[:3], p[3:6], points))[0]

    def residuals(p, parts):
        offsets = project_points(p, parts) - landmarks
        data = jnp.einsum("lij,lj->li", parts[3], offsets, precision=_HIGHEST) * data_scale
        return jnp.concatenate([data.reshape(-1), prior_scale * p[6:]])

    def cost(p, parts):
        r = residuals(p, parts)
        return jnp.sum(r * r)

    jacobian = jax.jacfwd(residuals)

    def levenberg_marquardt(p, mu, parts):
        """LM from ``p`` with fixed correspondences: ``(p, mu, steps, converged)``."""

        def body(state):
            p, c, mu, step, _ = state
            r, jac = residuals(p, parts), jacobian(p, parts)
            if box:
                # Projected Gauss-Newton: coefficients on a bound whose gradient points out of
                # the box are held there for this step (their columns dropped).
                gradient = jnp.matmul(jac.T, r, precision=_HIGHEST)[6 + num_id :]
                coeffs = p[6 + num_id :]
                held = ((coeffs <= 0.0) & (gradient > 0)) | ((coeffs >= 1.0) & (gradient < 0))
                jac = jnp.where(jnp.concatenate([jnp.ones((6 + num_id,), bool), ~held]), jac, 0.0)
            norms = jnp.linalg.norm(jac, axis=0)
            col_scale = 1.0 / jnp.maximum(norms, 1e-6 * jnp.max(norms))
            augmented = jnp.concatenate([jac * col_scale, jnp.sqrt(mu) * jnp.eye(num_params)], axis=0)
            q, upper = jnp.linalg.qr(augmented)
            rhs = -jnp.matmul(q[: r.shape[0]].T, r, precision=_HIGHEST)
            delta = col_scale * jax.scipy.linalg.solve_triangular(upper, rhs, lower=False)
            candidate = project_params(p + delta)
            c_new = cost(candidate, parts)
            accept = jnp.isfinite(c_new) & (c_new < c)
            # Achieved decrease, or when rejected the one the linear model predicts: when even
            # that is below the tolerance, the fit is at a (float32) minimum.
            predicted = c - jnp.sum((r + jnp.matmul(jac, delta, precision=_HIGHEST)) ** 2)
            done = (jnp.where(accept, c - c_new, predicted) <= config.tolerance * c) | (mu > 1e8)
            p = jnp.where(accept, candidate, p)
            mu = jnp.where(accept, jnp.maximum(mu / 3.0, 1e-9), mu * 4.0)
            return p, jnp.where(accept, c_new, c), mu, step + 1, done

        def cond(state):
            return (state[3] < config.inner_iterations) & ~state[4]

        init = (p, cost(p, parts), mu, jnp.int32(0), jnp.bool_(False))
        p, _, mu, steps, done = jax.lax.while_loop(cond, body, init)
        return p, mu, steps, done

    identity = jnp.broadcast_to(jnp.eye(2), (NUM_LANDMARKS, 2, 2))
    fixed = (lmodel.landmarks, lmodel.landmarks, jnp.zeros((NUM_LANDMARKS,)), identity)

    def correspondences(p):
        jaw = _contour_correspondences(lmodel, p, landmarks, camera, config, num_id)
        return tuple(x.at[:17].set(y) for x, y in zip(fixed, jaw))

    def evaluate(p):
        """Fresh correspondences at ``p`` and their cost: with point-to-line residuals along the
        offset, eq. (1) with each sliding landmark's squared distance to the silhouette
        polyline, the objective that the alternation minimises (and ``best`` tracks)."""
        corr = correspondences(p)
        return corr, cost(p, gather(corr))

    def outer_body(state):
        p, old, mu, steps, outer, lm_done, best, stall, _, _ = state
        corr, value = evaluate(p)
        # Keep the best state: the contour is re-estimated on a discrete mesh, and the
        # alternation can cycle between near-equal correspondences.
        improved = value < best[2] * (1.0 - 1e-4)
        best = jax.tree.map(lambda new, kept: jnp.where(improved, new, kept), (p, corr, value), best)
        stall = jnp.where(improved, 0, stall + 1)
        # Converged: the update moved no landmark's model point by more than the tolerance (in
        # pixels) after an LM run that converged, or two updates in a row did not improve.
        shift = jnp.max(jnp.linalg.norm(project_points(p, gather(corr)) - project_points(p, gather(old)), axis=-1))
        converged = (lm_done & (shift <= config.contour_tolerance)) | (stall >= 2)
        finished = converged | (outer >= config.outer_iterations)  # the last pass only evaluates

        def run(_):
            return levenberg_marquardt(p, jnp.maximum(mu, config.initial_damping), gather(corr))

        def skip(_):
            return p, mu, jnp.int32(0), lm_done

        p, mu, inner_steps, lm_done = jax.lax.cond(finished, skip, run, None)
        return p, corr, mu, steps + inner_steps, outer + 1, lm_done, best, stall, converged, finished

    angles, translation = initial_pose(lmodel, landmarks, camera)
    params = jnp.concatenate([angles, translation, jnp.zeros((num_id + num_exp,))])
    best = (params, fixed, jnp.float32(np.inf))
    init = (params, fixed, jnp.float32(config.initial_damping), jnp.int32(0), jnp.int32(0), jnp.bool_(False))
    init += (best, jnp.int32(0), jnp.bool_(False), jnp.bool_(False))
    state = jax.lax.while_loop(lambda state: ~state[9], outer_body, init)
    (params, corr, value), steps = state[6], state[3]
    converged = state[8] & jnp.isfinite(value)  # NaN detections give NaN, not converged

    fitted = project_points(params, gather(corr))
    errors = jnp.linalg.norm(fitted - landmarks, axis=-1)
    return LandmarkFit(
        angles=params[:3],
        translation=params[3:6],
        id_coeffs=params[6 : 6 + num_id],
        exp_coeffs=params[6 + num_id :],
        landmarks=fitted,
        errors=errors,
        mean_error=jnp.mean(errors),
        correspondences=lmodel.vertex_ids[jnp.where(corr[2] < 0.5, corr[0], corr[1])],
        iterations=steps,
        converged=converged,
    )


@jax.jit
def _fit(lmodel, landmarks, weights, camera, config):
    fit = _fit_one
    for _ in range(landmarks.ndim - 2):
        fit = jax.vmap(fit, in_axes=(None, 0, 0, None, None))
    return fit(lmodel, landmarks, weights, camera, config)


def fit_landmarks(
    model: MorphableModel | LandmarkModel,
    landmarks: ArrayLike,
    image_size: tuple[int, int] | None = None,
    *,
    camera: PerspectiveCamera | None = None,
    weights: ArrayLike | None = None,
    config: LandmarkFitConfig | None = None,
) -> LandmarkFit:
    """Fit pose, identity and expression to detected landmarks (eq. 1, module docstring).

    Jitted per model (shapes), image size and batch shape; a batch of faces is ``vmap``ped
    (every face runs until the slowest has converged).

    Args:
      model: a :class:`MorphableModel` with 68 landmarks, or its :func:`prepare`-d form
        (prepare once when fitting many faces: it is host work).
      landmarks: ``[..., 68, 2]`` float32 pixels (x right, y down, pixel centres at integers;
        dlib / iBUG-68 order). Leading dims are a batch.
      image_size: static ``(H, W)`` of the image: the camera is Deep3DFaceRecon's rescaled by
        ``PerspectiveCamera.for_image_size``. Give this or ``camera``.
      camera: an unbatched :class:`PerspectiveCamera` instead of ``image_size``.
      weights: ``[68]`` or ``[..., 68]`` per-landmark weights ``w_i`` of eq. (1) (default ones;
        Deep3DFaceRecon weighs the nose and inner mouth by 20).
      config: :class:`LandmarkFitConfig` (default: its defaults).

    Returns:
      :class:`LandmarkFit` with the landmarks' leading dims.

    Raises:
      ValueError: on a wrong landmark shape, a model without landmarks, neither or both of
        ``image_size`` and ``camera``, or an unusable config.
    """
    if (image_size is None) == (camera is None):
        raise ValueError("pass the image size (H, W) or a PerspectiveCamera, not both or neither")
    if camera is None:
        camera = PerspectiveCamera.for_image_size(tuple(int(s) for s in image_size))
    config = LandmarkFitConfig() if config is None else config
    config.check()
    landmarks = jnp.asarray(landmarks, jnp.float32)
    if landmarks.ndim < 2 or landmarks.shape[-2:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be [..., 68, 2] pixels in iBUG order, got shape {landmarks.shape}")
    lmodel = model if isinstance(model, LandmarkModel) else prepare(model)
    weights = jnp.ones((NUM_LANDMARKS,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    weights = jnp.broadcast_to(weights, landmarks.shape[:-1])
    return _fit(lmodel, landmarks, weights, camera, config)
