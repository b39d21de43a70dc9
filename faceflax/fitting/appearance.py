"""Fit a morphable model's albedo and SH lighting to a photo by differentiable rendering.

Stage 3b of ``faceflax reconstruct`` (analysis by synthesis), after the geometry is fitted
(:mod:`faceflax.fitting.landmarks`), for models with an albedo basis (BFM). Of the seeds'
coefficient vector ``c in R^239`` (thesis ch. 5: 6 pose + 80 identity + 64 expression +
80 texture + 9 SH) this fits the texture and illumination parts, with illumination per colour
channel as Deep3DFaceRecon regresses it (27 = 9 SH coefficients for R, then G, then B; a
monochrome light is the special case of three equal rows). The model is

    T(t) = T_mean + t T_base                  (albedo, MvInvert eq. 1: T_PCA = T_mean + C_T T_base)
    C_v(t, gamma) = T_v(t) * (Y(n_v) @ (gamma + init_lit e_0))        (Deep3DFaceRecon compute_color)
    I(p) = sum_k b_pk C_{v_k(p)}                                     (rasterize, interpolate)

with ``t`` the ``K_alb`` unit-variance albedo coefficients (:func:`~faceflax.geometry.morphable.albedo`),
``n_v`` the vertex normals of the posed mesh (:func:`~faceflax.geometry.mesh.vertex_normals`; the
light is expressed in the camera's world frame, as Deep3DFaceRecon shades rotated normals),
``Y`` the 9 scaled SH terms and ``init_lit = 0.8`` the ambient light added to each channel's DC
coefficient (:func:`~faceflax.geometry.lighting.shade`), and ``v_k(p)``, ``b_pk`` the corners
and perspective-correct barycentrics of the triangle seen at pixel ``p``. The objective is

    E(t, gamma) = (1 / |P|) sum_{p in P} sqrt(|I(p) - I*(p)|^2 + eps)
                  + lambda_alb |t|^2 + lambda_light |gamma|^2,                             (1)

``I*`` the photo and ``P`` the used pixels: those the mask allows and the mesh covers. The
photometric term is Deep3DFaceRecon's ``photo_loss`` (``losses.py``): the per-pixel L2 norm of
the RGB difference (not squared, so a pixel's pull is bounded: robust to hair, occluders and
highlights that the model cannot explain), averaged over the used pixels, with its
``eps = 1e-6`` inside the root so the gradient is finite at a zero residual. Deep3DFaceRecon's
regularisation (``reg_loss``) is ``w_reg * w_tex |t|^2`` beside ``w_color * photo_loss`` with
``w_color = 1.92, w_reg = 3e-4, w_tex = 1.7e-2``: a relative albedo weight of ``2.7e-6``,
backed by a learned network and its reflectance (skin-variance) loss. A single-image fit has
neither, so the default ``lambda_alb`` here is larger (``AppearanceFitConfig``). Its light
prior (``w_gamma = 10``) pulls the three channels' coefficients toward their mean (near-white
light); ``lambda_light |gamma|^2`` pulls them toward 0, i.e. toward the white ambient light
``init_lit``, which penalises colour and directional light alike.

**Fitted**: ``t`` and ``gamma``, both from zeros (the mean albedo under white ambient light).
**Held fixed**: the posed vertices (so the normals), the camera and the rasterization: the mesh
is rasterized once, and since visibility is piecewise constant in the geometry and does not
depend on colour, ``I`` is linear in the vertex colours through fixed barycentrics.

**Optimiser.** Adam (optax) under a cosine-decayed learning rate, ``steps`` iterations in one
``jax.lax.scan``; the whole fit is one compiled program per model and image shape, the model
arrays its arguments (rasterization and the input checks run before it, so that an empty ``P``
is reported without fitting). Adam rescales each coordinate but cannot undo correlations, and here they
are strong: the visible normals mostly face the camera, so the SH terms ``1``, ``z`` and
``3 z^2 - 1`` are nearly collinear on them, as are smooth albedo fields with light. Adam is
therefore run on whitened coordinates ``u``, ``p = (t, gamma) = M u`` with
``M = H^{-1/2}`` and ``H = sum_v w_v J_v^T J_v / sum_v w_v`` the Gauss-Newton matrix of the
vertex colours at the start (``J_v = dC_v / dp``, ``w_v = sum_p b_pv`` the vertex's weight in the
used pixels, i.e. the image-space ``J^T J`` without the cross terms between a triangle's
corners). Eigenvalues of ``H`` below ``EIGEN_FLOOR`` times the largest are raised to it, so
directions the image barely sees are not amplified without bound (the prior alone drives them).
A unit of ``u`` is about a unit RMS change of the rendered colour, whatever the model's basis
scales; on the synthetic test face (condition number ~1e4) this takes 200 steps where plain Adam
needs ~1000 to recover the light. The objective is unchanged: :func:`appearance_loss` of ``p``.

Cost: ``J`` holds ``3 V (K_alb + 27)`` floats (46 MB for BFM's 35,709 vertices and 80
coefficients); a step renders and differentiates the vertex colours once. On a 2-core CPU a
default fit (200 steps, 224 px) of a 35k-vertex, 80-coefficient model takes ~0.9 s after ~2 s
of compilation. One face per call.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from faceflax.geometry.camera import Camera
from faceflax.geometry.lighting import shade
from faceflax.geometry.mesh import vertex_normals
from faceflax.geometry.morphable import MorphableModel, albedo
from faceflax.render import Fragments, interpolate, rasterize

_HIGHEST = jax.lax.Precision.HIGHEST
NUM_GAMMA = 27  # 9 SH coefficients per RGB channel (Deep3DFaceRecon's layout)
PHOTO_EPS = 1e-6  # Deep3DFaceRecon photo_loss: sqrt(eps + |r|^2)
FINAL_LR_FRACTION = 0.01  # the cosine schedule ends at this fraction of the learning rate
EIGEN_FLOOR = 1e-4  # preconditioner: eigenvalues of H are at least this fraction of the largest


# --------------------------------------------------------------------------- configuration


@flax.struct.dataclass
class AppearanceFitConfig:
    """Options of :func:`fit_appearance`, eq. (1) of the module docstring.

    A pytree: the numeric fields are traced (changing them does not recompile the fit);
    ``steps`` is static.

    Attributes:
      steps: Adam iterations (>= 1).
      learning_rate: Adam's initial step size in the whitened coordinates (module docstring:
        about the RMS change of the rendered colour, in [0, 1] units, per coordinate and step);
        cosine-decayed to ``FINAL_LR_FRACTION`` of it over ``steps``.
      albedo_prior: ``lambda_alb``, weight of ``|t|^2`` against the mean per-pixel error (in
        [0, 1] colour units). Deep3DFaceRecon's relative weight is ``2.7e-6`` (module docstring).
      light_prior: ``lambda_light``, weight of ``|gamma|^2`` (pull toward white ambient light).
    """

    steps: int = flax.struct.field(pytree_node=False, default=200)
    learning_rate: float = 0.01
    albedo_prior: float = 1e-4
    light_prior: float = 1e-4

    def check(self) -> None:
        """Raise ``ValueError`` on values that cannot work (called by :func:`fit_appearance`)."""
        if int(self.steps) < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not (np.isfinite(float(self.learning_rate)) and float(self.learning_rate) > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        priors = (float(self.albedo_prior), float(self.light_prior))
        if not all(np.isfinite(p) and p >= 0 for p in priors):
            raise ValueError(f"albedo_prior and light_prior must be >= 0, got {priors}")


# --------------------------------------------------------------------------- problem and result


@flax.struct.dataclass
class AppearanceProblem:
    """The fixed data of eq. (1): built by :func:`appearance_problem`, read by
    :func:`render_appearance` and :func:`appearance_loss`.

    Attributes:
      model: the albedo part of the :class:`MorphableModel` (``albedo_mean [V, 3]``,
        ``albedo_basis [K_alb, V, 3]``, ``faces [F, 3]``; the shape arrays are dropped, so they
        are not passed to the compiled fit).
      normals: ``[V, 3]`` float32 unit vertex normals of the posed mesh.
      fragments: the posed mesh rasterized once (``[1, H, W]`` leading dims).
      image: ``[H, W, 3]`` float32 target photo in [0, 1].
      used: ``[H, W]`` bool, the pixels ``P`` of eq. (1): allowed by the mask and covered.
    """

    model: MorphableModel
    normals: Any
    fragments: Fragments
    image: Any
    used: Any


@flax.struct.dataclass
class AppearanceFit:
    """Result of :func:`fit_appearance`.

    Attributes:
      tex_coeffs: ``[K_alb]`` float32 albedo coefficients ``t``.
      gamma: ``[27]`` float32 SH light, Deep3DFaceRecon's per-channel layout (``init_lit``
        not included: :func:`~faceflax.geometry.lighting.shade` adds it).
      albedo: ``[V, 3]`` float32 per-vertex albedo ``T(t)`` (not clipped).
      colors: ``[V, 3]`` float32 per-vertex shaded colour ``C(t, gamma)``: what the photo shows
        of each vertex under the fitted light (the reconstruction's texture).
      render: ``[H, W, 3]`` float32 the fitted rendering ``I`` (0 on pixels the mesh misses).
      used: ``[H, W]`` bool, the pixels the photometric term used.
      losses: ``[steps]`` float32 objective (1) at each step, before that step's update.
      photometric_error: float32 ``mean_{p in P} |I(p) - I*(p)|`` (per-pixel RGB L2 norm, no
        ``eps``) at the fitted coefficients.
    """

    tex_coeffs: Any
    gamma: Any
    albedo: Any
    colors: Any
    render: Any
    used: Any
    losses: Any
    photometric_error: Any


# --------------------------------------------------------------------------- objective


def render_appearance(
    tex_coeffs: ArrayLike, gamma: ArrayLike, problem: AppearanceProblem
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The model of eq. (1) at ``(t, gamma)``.

    Args:
      tex_coeffs: ``[K_alb]`` float32 albedo coefficients.
      gamma: ``[27]`` float32 per-channel SH coefficients.
      problem: the fixed data (:func:`appearance_problem`).

    Returns:
      ``(albedo [V, 3], colors [V, 3], render [H, W, 3])`` float32.
    """
    reflectance = albedo(problem.model, tex_coeffs)
    colors = shade(reflectance, problem.normals, gamma)
    return reflectance, colors, interpolate(colors, problem.fragments, problem.model.faces)[0]


def _pixel_errors(render, problem: AppearanceProblem, eps):
    """``sqrt(|I(p) - I*(p)|^2 + eps)`` on used pixels, 0 elsewhere (whatever the photo holds)."""
    difference = jnp.where(problem.used[..., None], render - problem.image, 0.0)
    return jnp.where(problem.used, jnp.sqrt(jnp.sum(difference * difference, axis=-1) + eps), 0.0)


def _mean_over_used(values, problem: AppearanceProblem):
    return jnp.sum(values) / jnp.maximum(jnp.sum(problem.used), 1)


def appearance_loss(
    tex_coeffs: ArrayLike, gamma: ArrayLike, problem: AppearanceProblem, config: AppearanceFitConfig
) -> jax.Array:
    """Objective (1): mean photometric error over the used pixels plus the priors.

    Pure and differentiable in ``tex_coeffs`` and ``gamma`` (what :func:`fit_appearance`
    minimises).

    Args:
      tex_coeffs: ``[K_alb]`` float32 albedo coefficients.
      gamma: ``[27]`` float32 per-channel SH coefficients.
      problem: the fixed data (:func:`appearance_problem`).
      config: the prior weights.

    Returns:
      float32 scalar.
    """
    _, _, render = render_appearance(tex_coeffs, gamma, problem)
    photometric = _mean_over_used(_pixel_errors(render, problem, PHOTO_EPS), problem)
    tex_coeffs, gamma = jnp.asarray(tex_coeffs), jnp.asarray(gamma)
    return photometric + config.albedo_prior * jnp.sum(tex_coeffs**2) + config.light_prior * jnp.sum(gamma**2)


# --------------------------------------------------------------------------- set-up and fit


@jax.jit
def _rasterize_scene(verts, faces, camera, allowed):
    fragments = rasterize(camera.to_clip(verts)[None], faces, camera.image_size, cull_backfaces=True)
    return vertex_normals(verts, faces), fragments, allowed & (fragments.tri_id[0] >= 0)


def appearance_problem(
    model: MorphableModel,
    verts: ArrayLike,
    image: ArrayLike,
    camera: Camera,
    mask: ArrayLike | None = None,
) -> AppearanceProblem:
    """Check the inputs and rasterize the posed mesh once: the fixed data of eq. (1).

    Triangles facing away from the camera are culled (the inside of a face mask seen past its
    rim is no face surface), and the nearest remaining one is seen at each pixel.

    Args:
      model: a :class:`MorphableModel` with an albedo part (BFM).
      verts: ``[V, 3]`` float32 posed vertices, so that ``camera.to_clip(verts)`` renders them.
      image: ``[H, W, 3]`` float32 photo in [0, 1], ``(H, W) == camera.image_size``.
      camera: the (unbatched) camera of the geometry fit.
      mask: optional ``[H, W]`` bool, the pixels allowed in the loss (e.g. a face-region mask);
        None: all.

    Returns:
      :class:`AppearanceProblem`.

    Raises:
      ValueError: for a model without albedo, wrong shapes, non-finite vertices, an image size
        other than the camera's, an integer or non-finite image (inside the mask), or no used
        pixel.
    """
    if model.albedo_mean is None or model.albedo_basis is None:
        raise ValueError(
            f"model {model.name!r} has no albedo model, so its albedo and light cannot be fitted; "
            "ICT-FaceKit and MediaPipe have none (use a Basel Face Model for a fitted albedo): "
            "reconstruct completes their texture from the photo by Poisson filling instead"
        )
    num_vertices = model.albedo_mean.shape[0]
    verts = jnp.asarray(verts, jnp.float32)
    if verts.shape != (num_vertices, 3):
        raise ValueError(
            f"verts must be the model's {num_vertices} posed vertices [{num_vertices}, 3], got shape {verts.shape}"
        )
    if not bool(jnp.all(jnp.isfinite(verts))):
        raise ValueError("verts has NaN or infinite positions: the geometry fit failed (see LandmarkFit.converged)")
    height, width = camera.image_size
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}")
    if image.shape[:2] != (height, width):
        raise ValueError(
            f"image is {image.shape[0]}x{image.shape[1]} but the camera renders {height}x{width}: "
            "pass PerspectiveCamera.for_image_size(image.shape[:2]) or resize the image"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image must be float in [0, 1], got dtype {image.dtype}: divide 8-bit images by 255")
    if mask is None:
        allowed = np.ones((height, width), bool)
    else:
        allowed = np.asarray(mask)
        if allowed.shape != (height, width):
            raise ValueError(f"mask must be [H, W] = [{height}, {width}] like the image, got shape {allowed.shape}")
        allowed = allowed.astype(bool)
    bad = int(np.sum(~np.all(np.isfinite(image), axis=-1) & allowed))
    if bad:
        raise ValueError(
            f"image has NaN or infinite values at {bad} pixels inside the mask: fill them, or leave them out with mask"
        )
    faces = jnp.asarray(model.faces, jnp.int32)
    normals, fragments, used = _rasterize_scene(verts, faces, camera, jnp.asarray(allowed))
    if not bool(jnp.any(used)):
        raise ValueError(
            "no pixel to fit: the face is not in the image / mask (the rendered mesh covers no pixel "
            "that the mask allows); check the pose, the camera and the mask"
        )
    albedo_part = model.replace(
        mean=None, id_basis=None, exp_basis=None, uvs=None, uv_faces=None, landmarks=None, regions={}
    )
    albedo_part = jax.device_put(albedo_part.replace(faces=faces))
    return AppearanceProblem(
        model=albedo_part, normals=normals, fragments=fragments, image=jnp.asarray(image, jnp.float32), used=used
    )


def _whitening(problem: AppearanceProblem) -> jax.Array:
    """``M = H^{-1/2}`` at ``(t, gamma) = 0`` (module docstring, "Optimiser"): ``[P, P]``."""
    num_tex = problem.model.albedo_basis.shape[0]

    def colors(p):
        return shade(albedo(problem.model, p[:num_tex]), problem.normals, p[num_tex:])

    jacobian = jax.jacfwd(colors)(jnp.zeros((num_tex + NUM_GAMMA,), jnp.float32))  # [V, 3, P]
    fragments = problem.fragments
    corners = problem.model.faces[jnp.maximum(fragments.tri_id[0], 0)]  # [H, W, 3]
    pixel_weights = jnp.where(problem.used[..., None], fragments.bary[0], 0.0)
    weights = jnp.zeros(jacobian.shape[:1]).at[corners.reshape(-1)].add(pixel_weights.reshape(-1))
    gauss_newton = jnp.einsum("vcp,v,vcq->pq", jacobian, weights, jacobian, precision=_HIGHEST) / jnp.sum(weights)
    eigenvalues, vectors = jnp.linalg.eigh(gauss_newton)
    eigenvalues = jnp.maximum(eigenvalues, EIGEN_FLOOR * eigenvalues[-1])
    return jnp.matmul(vectors / jnp.sqrt(eigenvalues), vectors.T, precision=_HIGHEST)


@jax.jit
def _fit(problem: AppearanceProblem, config: AppearanceFitConfig) -> AppearanceFit:
    num_tex = problem.model.albedo_basis.shape[0]
    whitening = _whitening(problem)

    def params(u):
        p = jnp.matmul(whitening, u, precision=_HIGHEST)
        return p[:num_tex], p[num_tex:]

    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=FINAL_LR_FRACTION)
    optimizer = optax.adam(schedule)
    value_and_grad = jax.value_and_grad(lambda u: appearance_loss(*params(u), problem, config))

    def step(carry, _):
        u, state = carry
        loss, grads = value_and_grad(u)
        updates, state = optimizer.update(grads, state, u)
        return (optax.apply_updates(u, updates), state), loss

    start = jnp.zeros((num_tex + NUM_GAMMA,), jnp.float32)
    (u, _), losses = jax.lax.scan(step, (start, optimizer.init(start)), length=config.steps)
    tex_coeffs, gamma = params(u)
    reflectance, colors, render = render_appearance(tex_coeffs, gamma, problem)
    return AppearanceFit(
        tex_coeffs=tex_coeffs,
        gamma=gamma,
        albedo=reflectance,
        colors=colors,
        render=render,
        used=problem.used,
        losses=losses,
        photometric_error=_mean_over_used(_pixel_errors(render, problem, 0.0), problem),
    )


def fit_appearance(
    model: MorphableModel,
    verts: ArrayLike,
    image: ArrayLike,
    camera: Camera,
    mask: ArrayLike | None = None,
    *,
    config: AppearanceFitConfig | None = None,
) -> AppearanceFit:
    """Fit albedo coefficients and per-channel SH light to a photo (eq. 1, module docstring).

    The geometry is held fixed; the mesh is rasterized once (:func:`appearance_problem`), then
    Adam runs ``config.steps`` iterations in one compiled program (per model and image shape).

    Args:
      model: a :class:`MorphableModel` with an albedo part (BFM).
      verts: ``[V, 3]`` float32 posed vertices from the geometry fit (``camera.to_clip(verts)``
        renders them).
      image: ``[H, W, 3]`` float32 photo in [0, 1] with ``(H, W) == camera.image_size``.
      camera: the camera of the geometry fit (e.g. ``PerspectiveCamera.for_image_size``).
      mask: optional ``[H, W]`` bool of the pixels allowed in the loss (e.g. a face-region
        mask); pixels used are the mask's that the mesh covers.
      config: :class:`AppearanceFitConfig` (default: its defaults).

    Returns:
      :class:`AppearanceFit`.

    Raises:
      ValueError: as :func:`appearance_problem`, or on an unusable config.
    """
    config = AppearanceFitConfig() if config is None else config
    config.check()
    return _fit(appearance_problem(model, verts, image, camera, mask), config)
