"""``faceflax reconstruct``: the stages of one photo, their timings, and a batch over many photos.

Stages (each a tested library function; this module only wires them and times them):

1. ``read``: :func:`faceflax.data.images.read_image` (or the embedded default photo);
2. ``detect``: dlib's 68 landmarks of the largest face (:func:`faceflax.data.faces.detect_landmarks`),
   or the user's landmarks;
3. ``fit``: the face square (:mod:`faceflax.reconstruct.crop`) and pose, identity and expression
   from the landmarks (:func:`faceflax.fitting.landmarks.fit_landmarks`); with an albedo model (BFM)
   also albedo and SH light by analysis by synthesis (:func:`faceflax.fitting.appearance.fit_appearance`);
4. ``sample``: the incomplete UV texture with z-buffer visibility inside the eroded face-region mask
   (thesis Fig. 4.2, sec. 4.3.1; :func:`faceflax.render.uv.sample_uv_texture`);
5. ``complete``: Poisson completion (:func:`faceflax.reconstruct.texture.complete_texture`);
6. ``render``: the face re-rendered at the photo's pose and pasted back, and the frontal, left and
   right views (:mod:`faceflax.reconstruct.views`);
7. ``identity``: dlib face-descriptor distances of the photo to the pasted render and to the frontal
   view (thesis Table 4.2 measures identity the same way); ``write``: the files (:mod:`.export`).

Every photo runs through the same compiled programs: shapes depend only on the options (crop, UV and
view sizes), never on the photo. Compiles are cached on disk (:func:`enable_compilation_cache`), so a
second process starts warm.
"""

import contextlib
import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from faceflax.data import faces as dlib_faces
from faceflax.fitting import landmarks as landmark_fitting
from faceflax.fitting.appearance import fit_appearance
from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.morphable import MorphableModel, shape
from faceflax.geometry.rotation import euler_to_matrix
from faceflax.reconstruct import texture, views
from faceflax.reconstruct.crop import DEFAULT_CONTEXT, DEFAULT_SIZE, FaceCrop, face_crop
from faceflax.render.rasterizer import rasterize
from faceflax.render.uv import sample_uv_texture, uv_fragments, vertex_colors_to_uv


@dataclasses.dataclass(frozen=True)
class ReconstructOptions:
    """Sizes and knobs of the pipeline (module docstring); defaults are the CLI's."""

    crop_size: int = DEFAULT_SIZE
    crop_context: float = DEFAULT_CONTEXT
    uv_size: int = 512
    view_size: int = views.VIEW_SIZE
    forehead: float = texture.DEFAULT_FOREHEAD
    erosion: float = texture.DEFAULT_EROSION
    flip: bool = True  # symmetric flip blending (thesis sec. 4.3.2.1); assumes a symmetric face and light
    identity: bool = True
    fit: landmark_fitting.LandmarkFitConfig = dataclasses.field(default_factory=landmark_fitting.LandmarkFitConfig)

    def check(self) -> None:
        for name in ("crop_size", "uv_size", "view_size"):
            if not 64 <= getattr(self, name) <= 4096:
                raise ValueError(f"{name} must be between 64 and 4096 pixels, got {getattr(self, name)}")
        if not self.crop_context >= 1.2:
            raise ValueError(f"crop_context must be >= 1.2 (the square must hold the face), got {self.crop_context}")
        if not (0 <= self.forehead <= 1 and 0 <= self.erosion < 0.25):
            raise ValueError("forehead must be in [0, 1] and erosion in [0, 0.25)")


@dataclasses.dataclass
class Reconstruction:
    """Everything one photo produced (arrays are numpy; pixels are the photo's unless said)."""

    name: str
    photo: np.ndarray  # [H, W, 3] float32
    detected: np.ndarray  # [68, 2] landmarks the fit used (dlib's or the user's)
    box: tuple | None  # dlib's face box, None with user landmarks
    num_faces: int  # faces dlib found (0 with user landmarks)
    crop: FaceCrop
    fit: Any  # LandmarkFit (square pixels)
    fitted: np.ndarray  # [68, 2] fitted landmarks
    shape: np.ndarray  # [V, 3] fitted shape in model space
    appearance: Any  # AppearanceFit or None
    square: np.ndarray  # [S, S, 3] the face square the stages worked in (crop.crop(photo))
    region: np.ndarray  # [S, S] bool: the landmark face-region mask in the square
    sampled: np.ndarray  # [Ht, Wt, 3] incomplete UV texture
    visible: np.ndarray  # [Ht, Wt] bool
    sampling_map: np.ndarray  # [Ht, Wt, 2] where each texel lands in the square, (x, y) in [0, 1]: S_gt
    completed: np.ndarray  # [Ht, Wt, 3] in [0, 1]
    overshoot: float  # fraction of texels the completion put outside [0, 1] (clipped)
    mirrored: np.ndarray  # [Ht, Wt] bool
    completion_info: tuple
    render: np.ndarray  # [H, W, 3] the re-rendered face pasted on the photo
    coverage: np.ndarray  # [H, W] float in [0, 1]
    views: dict[str, np.ndarray]  # name -> [S, S, 3]
    identity: dict[str, float]  # descriptor distances to the photo
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def enable_compilation_cache(folder: str | os.PathLike | None = None) -> Path:
    """Persist XLA compiles in ``folder`` (default ``$FACEFLAX_HOME/xla``, ``~/.cache/faceflax/xla``).

    ``$JAX_COMPILATION_CACHE_DIR``, when set, wins (tests share theirs).
    """
    default = Path(os.environ.get("FACEFLAX_HOME", Path.home() / ".cache" / "faceflax")) / "xla"
    folder = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or folder or default)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return folder


class Reconstructor:
    """A morphable model prepared once for :meth:`__call__` on any number of photos."""

    def __init__(self, model: MorphableModel, options: ReconstructOptions | None = None):
        self.options = options = options or ReconstructOptions()
        options.check()
        if len(np.asarray(model.landmarks)) != dlib_faces.NUM_LANDMARKS:
            raise ValueError(f"model {model.name!r} has no 68 iBUG landmarks: it cannot be fitted to a photo")
        self.model = model
        self.landmark_model = landmark_fitting.prepare(model)
        self.device_model = jax.device_put(model)
        self.faces, self.uvs, self.uv_faces = self.device_model.faces, self.device_model.uvs, self.device_model.uv_faces
        self.uv_frags = uv_fragments(self.uvs, self.uv_faces, (options.uv_size, options.uv_size))
        self.layout = np.asarray(self.uv_frags.tri_id[0] >= 0)
        self.symmetric = options.flip and texture.is_symmetric_layout(self.layout)
        self.camera = PerspectiveCamera.for_image_size((options.crop_size, options.crop_size))
        self.view_camera = views.view_camera(options.view_size)
        # The square scales every face alike (its landmark box is 1 / crop_context of the side), so the
        # erosion radius, erosion x the jaw width, is one number of square pixels for all photos.
        self.erosion = max(1, round(options.erosion * options.crop_size / options.crop_context))
        self.has_albedo = model.albedo_mean is not None

    def __call__(self, photo: np.ndarray, name: str = "photo", landmarks: np.ndarray | None = None) -> Reconstruction:
        """Reconstruct the largest face of ``photo [H, W, 3]`` (float32 RGB in [0, 1]).

        ``landmarks [68, 2]`` (photo pixels) bypass detection. Raises ``ValueError`` (a
        :class:`~faceflax.data.faces.NoFaceError` when no face is found) naming ``name``.
        """
        timings: dict[str, float] = {}
        clock = functools.partial(_timed, timings)
        options = self.options
        with clock("detect"):
            if landmarks is None:
                detection = dlib_faces.detect_landmarks(photo, path_for_errors=name)
                detected, box, num_faces = detection.landmarks, detection.box, detection.num_faces
            else:
                detected, box, num_faces = _inside(dlib_faces.check_landmarks(landmarks), photo.shape, name), None, 0
        with clock("fit"):
            crop = face_crop(detected, options.crop_size, options.crop_context)
            square = crop.crop(photo)
            fit = landmark_fitting.fit_landmarks(
                self.landmark_model, crop.to_crop(detected), camera=self.camera, config=options.fit
            )
            verts, posed = _geometry(self.device_model, fit.angles, fit.translation, fit.id_coeffs, fit.exp_coeffs)
            if not np.isfinite(np.asarray(posed)).all():
                raise ValueError(f"{name}: the model fit to the landmarks diverged (non-finite shape or pose)")
            square_landmarks = np.asarray(fit.landmarks)
            region = texture.face_region_mask(square_landmarks, square.shape[:2], options.forehead)
            appearance = self._fit_appearance(posed, square, region)
        with clock("sample"):
            covered = np.asarray(_coverage(posed, self.faces, self.camera))
            mask = texture.sampling_mask(region, covered, self.erosion)
            uv = _sample(jnp.asarray(square), posed, jnp.asarray(mask), self.faces, self.camera, self.uv_frags)
            sampled, visible = uv.texture[0], uv.visible[0]
            jax.block_until_ready(sampled)
        with clock("complete"):
            guide = None if appearance is None else _model_texture(appearance.colors, self.faces, self.uv_frags)
            completed = _complete(sampled, visible, guide, symmetric=self.symmetric)
            # A Poisson fill can overshoot the colour range a little; the report counts those texels.
            overshoot = float(jnp.mean(jnp.any((completed.texture < 0) | (completed.texture > 1), -1)))
            final_texture = jnp.clip(completed.texture, 0.0, 1.0)
        with clock("render"):
            mesh = (self.faces, self.uvs, self.uv_faces)
            at_input, covered, novel = jax.device_get(
                _render(final_texture, verts, posed, mesh, self.camera, self.view_camera)
            )
            coverage = crop.coverage_in_photo(covered, photo.shape[:2])
            # Paste the face region only (soft edge): the model's neck and scalp would cover collars and hair.
            soft = cv2.GaussianBlur(region.astype(np.float32), (0, 0), max(1.0, self.erosion / 2))
            pasted = crop.paste(photo, at_input, crop.coverage_in_photo(covered * soft, photo.shape[:2]))
        rendered_views = dict(zip(views.VIEW_YAWS, novel))
        with clock("identity"):
            identity = (
                self._identity(photo, detected, pasted, verts, rendered_views["frontal"]) if options.identity else {}
            )
        return Reconstruction(
            name=name,
            photo=photo,
            detected=detected,
            box=box,
            num_faces=num_faces,
            crop=crop,
            fit=jax.device_get(fit),
            fitted=crop.to_photo(square_landmarks),
            shape=np.asarray(verts),
            appearance=None if appearance is None else jax.device_get(appearance),
            square=square,
            region=region,
            sampled=np.asarray(sampled),
            visible=np.asarray(visible),
            sampling_map=np.asarray(uv.image_coords[0]),
            completed=np.asarray(final_texture),
            overshoot=overshoot,
            mirrored=np.asarray(completed.mirrored),
            completion_info=jax.device_get(completed.info),
            render=pasted,
            coverage=coverage,
            views=rendered_views,
            identity=identity,
            timings=timings,
        )

    def _fit_appearance(self, posed, square, mask):
        if not self.has_albedo:
            return None
        return fit_appearance(self.model, posed, jnp.asarray(square), self.camera, jnp.asarray(mask))

    def _identity(self, photo, detected, pasted, verts, frontal) -> dict[str, float]:
        """dlib descriptor distances of the photo's face to the pasted render and to the frontal view."""
        reference = dlib_faces.face_descriptor(photo, detected)
        posed = np.asarray(views.view_poses(verts, [views.VIEW_YAWS["frontal"]]))
        frontal_landmarks = views.view_landmarks(posed, np.asarray(self.model.landmarks), self.view_camera)[0]
        return {
            "render_at_input_pose": dlib_faces.descriptor_distance(
                reference, dlib_faces.face_descriptor(pasted, detected)
            ),
            "frontal_view": dlib_faces.descriptor_distance(
                reference, dlib_faces.face_descriptor(frontal, frontal_landmarks)
            ),
        }


@jax.jit
def _geometry(model, angles, translation, id_coeffs, exp_coeffs):
    """Model-space shape (MvInvert eq. 1) and the shape posed for the camera: ``R S + t``."""
    verts = shape(model, id_coeffs, exp_coeffs)
    return verts, verts @ euler_to_matrix(angles).T + translation


@jax.jit
def _coverage(posed, faces, camera):
    return rasterize(camera.to_clip(posed[None]), faces, camera.image_size).tri_id[0] >= 0


@jax.jit
def _sample(image, posed, mask, faces, camera, uv_frags):
    return sample_uv_texture(image[None], posed[None], faces, camera, uv_frags, image_mask=mask[None])


@jax.jit
def _model_texture(colors, faces, uv_frags):
    return vertex_colors_to_uv(colors[None], faces, uv_frags)[0]


@jax.jit
def _render(tex, verts, posed, mesh, camera, view_camera):
    """The face at the photo's pose (square pixels, with coverage) and the novel views."""
    at_input, covered = views.render_textured(tex, posed[None], *mesh, camera)
    yaws = list(views.VIEW_YAWS.values())
    novel, _ = views.render_textured(tex, views.view_poses(verts, yaws), *mesh, view_camera, views.BACKGROUND)
    return at_input[0], covered[0], novel


_complete = jax.jit(texture.complete_texture, static_argnames=("symmetric",))


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str):
    """Adds the block's wall time (seconds) to ``timings[stage]``."""
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _inside(landmarks: np.ndarray, shape: tuple, name: str) -> np.ndarray:
    h, w = shape[:2]
    if not ((landmarks >= -0.5) & (landmarks <= np.array([w, h]) - 0.5)).all():
        raise ValueError(f"{name}: the given landmarks fall outside the {w}x{h} image")
    return landmarks
