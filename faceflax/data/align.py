"""Face alignment to the seeds' crops by a least-squares similarity transform on landmarks.

**Similarity (Umeyama 1991).** :func:`similarity_transform` finds the scale ``s``, rotation ``R`` and
translation ``t`` minimising ``sum_i w_i |s R p_i + t - q_i|^2`` in closed form (SVD of the weighted
cross-covariance, with the reflection guard), the "least square regression on the corresponding
landmarks" of thesis sec. 3.3.1.

**Crops.** The seeds work on square crops of 128 px (thesis sec. 3.4.1), 224 px (MvInvert, Deep3DFaceRecon's
input) and 256 px (thesis ch. 4-5, CelebA-HQ / FFHQ). :func:`template` is the canonical mean face they are
aligned to: the widely used 5-point ArcFace template (insightface's ``arcface_dst`` at 112 px: eye centres,
nose tip, mouth corners) scaled about the crop's centre by a zoom per size, ``DEFAULT_ZOOM``. The zooms are
our choice, not the seeds' (they do not give their templates): 256 px uses FFHQ's rule (eye centres a
quarter of the side apart: zoom 0.79 of ArcFace's 0.315), 224 px a looser Deep3DFaceRecon-like framing with
the whole head (0.68), 128 px a tighter face crop (0.8) as in the Multi-PIE / CelebA crops of ch. 3; any
other size gets ArcFace's own framing (zoom 1). 68 landmarks are reduced to the template's 5 points
(:func:`five_points`: the mean of each eye's 6 points, the nose tip 30, the mouth corners 48 and 54); a
custom template of 5 or 68 points can be given instead.

**Half-face alignment (thesis sec. 3.3.1, Fig. 3.3).** A face at any pose has at least one side fully
exposed. :func:`exposed_side` picks it as the half whose landmarks span the larger bounding box, and
:func:`half_face_transform` fits the similarity on that half's landmarks only (the midline points belong
to both halves), mapping the source onto a target face's landmarks (another image's, at the target pose),
as :func:`align_half_face` does for the image.

**Resampling.** ``cv2.warpAffine`` has no area filter, so when the crop shrinks the photo (scale < 1) the
photo is first shrunk with ``cv2.resize(..., INTER_AREA)`` by that scale and the remaining, nearly
scale-free warp is bilinear: the crop averages the photo's pixels instead of aliasing them. Outside the
photo the crop is black.

Pixel convention (as :mod:`faceflax.data.faces`): pixel centres at integers, ``(0, 0)`` the centre of the
top-left pixel, in the photo and in the crop; ``cv2.warpAffine`` uses the same one.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import cv2
import numpy as np

ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
"""insightface's 5-point template (pixel centres at integers) for its 112x112 crops."""

DEFAULT_ZOOM = {128: 0.8, 224: 0.68, 256: 0.79}
"""Template scale relative to ArcFace's framing, per crop size (module docstring); others: 1."""

LEFT_EYE, RIGHT_EYE = list(range(36, 42)), list(range(42, 48))
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54

MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)
"""iBUG-68 index of each landmark's left-right mirror partner."""

IMAGE_LEFT_HALF = np.array(
    list(range(9)) + list(range(17, 22)) + list(range(27, 34)) + list(range(36, 42))
    + [48, 49, 50, 51, 57, 58, 59, 60, 61, 62, 66, 67]
)  # fmt: skip
"""Landmarks of the image's left half of a frontal face, the midline (chin, nose, lip centres) included."""

IMAGE_RIGHT_HALF = np.sort(MIRROR[IMAGE_LEFT_HALF])
"""The mirror of ``IMAGE_LEFT_HALF``."""


@dataclasses.dataclass(frozen=True)
class Alignment:
    """A similarity ``crop = matrix @ [x, y, 1]`` from photo pixels to a ``size`` x ``size`` crop."""

    matrix: np.ndarray  # float64 [2, 3]
    size: int

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def inverse_matrix(self) -> np.ndarray:
        """float64 ``[2, 3]`` from crop pixels back to photo pixels."""
        return cv2.invertAffineTransform(self.matrix)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo pixels ``[..., 2]`` (x, y) -> crop pixels, float32."""
        return _apply(self.matrix, points)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Crop pixels ``[..., 2]`` -> photo pixels, float32."""
        return _apply(self.inverse_matrix(), points)


class Aligned(NamedTuple):
    crop: np.ndarray  # float32 [size, size, C] (or [size, size] for a grey image)
    transform: Alignment
    landmarks: np.ndarray  # float32 [N, 2], the given landmarks in crop pixels


def similarity_transform(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (Umeyama) ``[2, 3]`` float64 mapping ``source [N, 2]`` onto ``target [N, 2]``.

    Minimises ``sum_i w_i |s R p_i + t - q_i|^2`` over scale ``s > 0``, rotation ``R`` (no reflection) and
    translation ``t`` (thesis sec. 3.3.1: "least square regression on the corresponding landmarks").
    ``weights [N]`` (default ones) must be non-negative with a positive sum.
    """
    source = _points(source, "source")
    target = _points(target, "target")
    if source.shape != target.shape:
        raise ValueError(f"source {source.shape} and target {target.shape} need the same points, in the same order")
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(source),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {len(source)} non-negative finite numbers with a positive sum")
    w = w / w.sum()
    mean_p, mean_q = w @ source, w @ target
    p, q = source - mean_p, target - mean_q
    variance = float(w @ np.sum(p**2, 1))
    if variance <= 1e-12 * max(1.0, float(np.max(np.abs(source)))) ** 2:
        raise ValueError("source points all coincide: a similarity needs at least two distinct points")
    covariance = (q * w[:, None]).T @ p
    u, sigma, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign)) / variance
    return np.concatenate([scale * rotation, (mean_q - scale * rotation @ mean_p)[:, None]], 1)


def template(size: int, zoom: float | None = None) -> np.ndarray:
    """The canonical 5-point face ``float64 [5, 2]`` for a ``size`` crop (ArcFace's, scaled by ``zoom``).

    ``zoom`` defaults to ``DEFAULT_ZOOM[size]`` (1 for other sizes): 1 reproduces ArcFace's 112 px framing
    at any size, smaller values leave more context around the face.
    """
    size = _size(size)
    zoom = DEFAULT_ZOOM.get(size, 1.0) if zoom is None else float(zoom)
    if not zoom > 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    unit = (ARCFACE_TEMPLATE_112 + 0.5) / 112 - 0.5  # continuous coordinates about the crop centre
    return (unit * zoom + 0.5) * size - 0.5


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """iBUG-68 ``[68, 2]`` -> the template's 5 points ``float64 [5, 2]``: eye centres, nose tip, mouth corners."""
    landmarks = _landmarks(landmarks, (68,))
    return np.stack(
        [
            landmarks[LEFT_EYE].mean(0),
            landmarks[RIGHT_EYE].mean(0),
            landmarks[NOSE_TIP],
            landmarks[MOUTH_LEFT],
            landmarks[MOUTH_RIGHT],
        ]
    )


def alignment(landmarks: np.ndarray, size: int, *, target: np.ndarray | None = None) -> Alignment:
    """The similarity taking ``landmarks`` (68 or 5 points, photo pixels) to ``target`` in a ``size`` crop.

    ``target`` defaults to :func:`template` ``(size)``; with 68 landmarks and a 5-point target the
    landmarks are reduced by :func:`five_points`.
    """
    size = _size(size)
    target = template(size) if target is None else _points(target, "target")
    landmarks = _landmarks(landmarks, (68, 5))
    if len(landmarks) == 68 and len(target) == 5:
        landmarks = five_points(landmarks)
    if len(landmarks) != len(target):
        raise ValueError(f"{len(landmarks)} landmarks cannot be aligned to a {len(target)}-point target")
    return Alignment(similarity_transform(landmarks, target), size)


def warp(image: np.ndarray, transform: Alignment) -> np.ndarray:
    """``image [H, W(, C)]`` resampled into the ``transform.size`` crop (area-averaged when shrinking)."""
    image = _image(image)
    channels = image.shape[2:]
    matrix, scale = transform.matrix, transform.scale
    if scale < 1:
        h, w = image.shape[:2]
        small = (max(round(w * scale), 1), max(round(h * scale), 1))
        fx, fy = small[0] / w, small[1] / h
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        # photo pixel x -> shrunk pixel (x + 0.5) * f - 0.5; compose the warp with its inverse.
        unshrink = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        matrix = matrix @ unshrink
    size = transform.size
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crop.reshape((size, size) + channels).astype(np.float32)


def align(image: np.ndarray, landmarks: np.ndarray, size: int, *, target: np.ndarray | None = None) -> Aligned:
    """Align ``image [H, W(, C)]`` float32 to a ``size`` crop by its ``landmarks`` (68 or 5, photo pixels).

    Returns the crop, the :class:`Alignment` (photo -> crop) and the landmarks in crop pixels (all of
    the given ones, also when only 5 of them were fitted). ``target``: see :func:`alignment`.
    """
    image = _image(image)
    transform = alignment(landmarks, size, target=target)
    return Aligned(warp(image, transform), transform, transform.to_crop(_landmarks(landmarks, (68, 5))))


def exposed_side(landmarks: np.ndarray) -> str:
    """``"left"`` or ``"right"``: the image half of ``landmarks [68, 2]`` whose landmarks span the larger box.

    Thesis sec. 3.3.1: "we first find the fully exposed side by calculating the bounding box region of
    the projected facial landmarks". A turned face foreshortens its far half, whose box shrinks.
    """
    landmarks = _landmarks(landmarks, (68,))

    def area(indices):
        extent = np.ptp(landmarks[indices], axis=0)
        return float(extent[0] * extent[1])

    return "left" if area(IMAGE_LEFT_HALF) >= area(IMAGE_RIGHT_HALF) else "right"


def half_face_transform(landmarks: np.ndarray, target_landmarks: np.ndarray, size: int) -> Alignment:
    """Thesis sec. 3.3.1: the similarity fitted on the source's fully exposed half only.

    ``landmarks [68, 2]`` (source photo pixels) are mapped onto ``target_landmarks [68, 2]`` (pixels of the
    target image, a ``size`` square, e.g. a face at the target pose) by least squares on the landmarks
    of the half :func:`exposed_side` picks in the source.
    """
    landmarks = _landmarks(landmarks, (68,))
    target_landmarks = _landmarks(target_landmarks, (68,), "target_landmarks")
    half = IMAGE_LEFT_HALF if exposed_side(landmarks) == "left" else IMAGE_RIGHT_HALF
    return Alignment(similarity_transform(landmarks[half], target_landmarks[half]), _size(size))


def align_half_face(image: np.ndarray, landmarks: np.ndarray, target_landmarks: np.ndarray, size: int) -> Aligned:
    """``I_tf`` of thesis sec. 3.3.1 / Fig. 3.3c: ``image`` warped by :func:`half_face_transform`."""
    image = _image(image)
    transform = half_face_transform(landmarks, target_landmarks, size)
    return Aligned(warp(image, transform), transform, transform.to_crop(_landmarks(landmarks, (68,))))


def paste_back(crop: np.ndarray, transform: Alignment, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Put ``crop [size, size(, C)]`` (e.g. a network's output on an aligned crop) back into ``image``.

    The inverse of :func:`align`: the crop is resampled (bilinear) at each photo pixel's crop position and
    blended over ``image [H, W(, C)]`` with ``mask [size, size]`` in [0, 1] (crop pixels; default: the
    whole crop), resampled the same way, so pixels outside the crop keep their values exactly.
    Returns float32 of the image's shape.
    """
    image = _image(image)
    crop = _image(crop, "crop")
    size = transform.size
    if crop.shape[:2] != (size, size) or crop.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"crop has shape {crop.shape}; expected {(size, size) + image.shape[2:]} (the transform's size, the "
            "image's channels)"
        )
    alpha = np.ones((size, size), np.float32) if mask is None else np.asarray(mask, np.float32)
    if alpha.shape != (size, size) or not np.all((alpha >= 0) & (alpha <= 1)):
        raise ValueError(f"mask must be [{size}, {size}] with values in [0, 1], got shape {alpha.shape}")
    h, w = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(crop, transform.matrix, (w, h), flags=flags).reshape(image.shape)
    weight = cv2.warpAffine(alpha, transform.matrix, (w, h), flags=flags, borderValue=0.0)
    weight = weight.reshape((h, w) + (1,) * (image.ndim - 2))
    return np.where(weight > 0, weight * back + (1 - weight) * image, image).astype(np.float32)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _size(size) -> int:
    if isinstance(size, bool) or int(size) != size or size < 8:
        raise ValueError(f"crop size must be an integer of at least 8 pixels (e.g. 128, 224 or 256), got {size!r}")
    return int(size)


def _points(points, name: str) -> np.ndarray:
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        raise ValueError(f"{name} must be [N, 2] (x, y) points with N >= 2, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} hold NaN or infinite values")
    return points


def _landmarks(landmarks, counts: tuple[int, ...], name: str = "landmarks") -> np.ndarray:
    points = _points(landmarks, name)
    if len(points) not in counts:
        expected = " or ".join(f"[{n}, 2]" for n in counts)
        raise ValueError(
            f"{name} must be {expected} (iBUG-68 order, or the 5 points of five_points), got {points.shape}"
        )
    return points


def _image(image, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"{name} must be float [H, W] or [H, W, C] in [0, 1] (see faceflax.data.images.read_image), "
            f"got {image.dtype} {image.shape}"
        )
    image = image.astype(np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return image
