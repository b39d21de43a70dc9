"""Occlusion synthesis for de-occlusion training data (thesis sec. 5.3.2, eq. 5.2, Fig. 5.3a).

The thesis superimposes occluders ``I_o`` with masks ``M_o`` (hand-labelled occlusions re-textured with
"texture patches covering every type we can think of") on face images ``I_f`` with face masks ``M_f``::

    M_gt = M_f ⊙ (1 - M_o),    I = I_f ⊙ (1 - M_o) + I_o ⊙ M_o            (eq. 5.2)

``M_gt``, the visible face, is the segmentation target. faceflax has no labelled occluders, so they are
procedural (:func:`occluder_mask`): random polygons, ellipses and strokes placed over the face, and
landmark-anchored ones, sunglasses over the eyes (36-47), a face mask over nose, mouth and jaw, and a hand
with fingers reaching in from one side of the jaw. Each is filled with a procedural texture
(:func:`occluder_texture`): a solid colour, smooth noise, stripes, or a patch of another image given by
the caller (the thesis's texture patches). Masks are binary (``float32`` 0 / 1), so eq. 5.2 changes exactly
the pixels of ``M_o`` and leaves every other pixel bit-identical.

Eq. 5.1, ``M_o = M_m - M_m ⊙ M_f``, recovers the occlusion from the whole-face mask ``M_m`` (there the
rendered 3DMM face; here the unoccluded face mask given to :func:`synthesize_occlusion`) and the visible
face mask (``M_gt`` here): :func:`occlusion_from_masks`. On synthesized data it gives ``M_m ⊙ M_o``,
the occluder's part inside the face; eq. 5.2's ``M_o`` may reach past the face (e.g. a hand).

Host-side numpy / OpenCV; every random choice comes from the ``numpy.random.Generator`` (or seed, or JAX
key) passed in, so equal seeds give equal samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from faceflax.data import segmentation
from faceflax.data.faces import check_landmarks

SHAPES = ("polygon", "ellipse", "strokes")
ANCHORED = ("sunglasses", "face_mask", "hand")
KINDS = SHAPES + ANCHORED
TEXTURES = ("solid", "noise", "stripes", "patch")

LEFT_EYE, RIGHT_EYE = list(range(36, 42)), list(range(42, 48))
JAW = list(range(17))
NOSE_MIDDLE, NOSE_TIP = 29, 30
LENS_MARGIN = 1.5
"""Lens semi-axes as a multiple of the eye landmarks' extent about the eye centre (so they cover them)."""


class OccludedFace(NamedTuple):
    image: np.ndarray  # float32 [H, W, C]: I of eq. 5.2
    occlusion_mask: np.ndarray  # float32 [H, W] in {0, 1}: M_o of eq. 5.2
    face_mask: np.ndarray  # float32 [H, W]: M_gt = M_f ⊙ (1 - M_o), the visible face


def occlusion_from_masks(full_face_mask: np.ndarray, visible_face_mask: np.ndarray) -> np.ndarray:
    """Thesis eq. 5.1: ``M_o = M_m - M_m ⊙ M_f`` (float32), from the whole face ``M_m`` and the visible ``M_f``."""
    m_m = np.asarray(full_face_mask, np.float32)
    m_f = np.asarray(visible_face_mask, np.float32)
    if m_m.shape != m_f.shape or m_m.ndim != 2:
        raise ValueError(f"both masks must be [H, W] of one size, got {m_m.shape} and {m_f.shape}")
    return m_m - m_m * m_f


def occluder_mask(rng: np.random.Generator, kind: str, landmarks: np.ndarray, image_size) -> np.ndarray:
    """float32 ``[H, W]`` in {0, 1}: one random occluder of ``kind`` (``KINDS``) on the face at ``landmarks``."""
    if kind not in KINDS:
        raise ValueError(f"unknown occluder kind {kind!r}; choose from {KINDS}")
    landmarks = check_landmarks(landmarks).astype(np.float64)
    height, width = image_size
    mask = np.zeros((height, width), np.uint8)
    scale = max(np.linalg.norm(landmarks[16] - landmarks[0]), np.linalg.norm(landmarks[8] - landmarks[27]), 4.0)
    low, high = landmarks.min(0), landmarks.max(0)
    centre = rng.uniform(low, high)
    if kind == "polygon":
        count = int(rng.integers(3, 11))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = scale * rng.uniform(0.15, 0.4) * rng.uniform(0.4, 1.0, count)
        _fill(mask, centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1))
    elif kind == "ellipse":
        _fill(mask, _ellipse(centre, scale * rng.uniform(0.1, 0.35, 2), rng.uniform(0, np.pi)))
    elif kind == "strokes":
        for _ in range(int(rng.integers(1, 4))):
            steps = rng.normal(0, 0.25 * scale, (int(rng.integers(1, 5)), 2))
            points = rng.uniform(low, high) + np.concatenate([[[0, 0]], np.cumsum(steps, 0)])
            thickness = max(2, round(scale * rng.uniform(0.03, 0.1)))
            cv2.polylines(mask, [_fixed(points)], False, 1, thickness=thickness, lineType=cv2.LINE_8, shift=4)
    elif kind == "sunglasses":
        _sunglasses(mask, rng, landmarks)
    elif kind == "face_mask":
        outline = landmarks[JAW[1:16] + [NOSE_MIDDLE]]
        middle = outline.mean(0)
        _fill(mask, middle + rng.uniform(1.0, 1.08) * (outline - middle))
    else:
        _hand(mask, rng, landmarks, scale)
    return mask.astype(np.float32)


def occluder_texture(
    rng: np.random.Generator,
    kind: str,
    image_size,
    channels: int,
    patches: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """float32 ``[H, W, channels]`` in [0, 1]: a random texture of ``kind`` (``TEXTURES``).

    ``"patch"`` resamples a random window (at least a quarter of each side) of one of ``patches``
    (float ``[h, w, channels]`` in [0, 1], e.g. other photos) to the image size.
    """
    height, width = image_size
    if kind == "solid":
        return np.broadcast_to(rng.uniform(0, 1, channels).astype(np.float32), (height, width, channels)).copy()
    if kind == "noise":
        texture = np.zeros((height, width, channels), np.float32)
        for cells, weight in ((int(rng.integers(2, 9)), 0.8), (int(rng.integers(12, 33)), 0.2)):
            grid = rng.uniform(0, 1, (cells, cells, channels)).astype(np.float32)
            texture += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).reshape(texture.shape)
        return np.clip(texture, 0, 1)
    if kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, max(5.0, 0.2 * max(height, width)))
        y, x = np.mgrid[:height, :width]
        phase = ((x * np.cos(angle) + y * np.sin(angle)) / period + rng.uniform()) % 1.0
        colours = rng.uniform(0, 1, (2, channels)).astype(np.float32)
        return np.where((phase < rng.uniform(0.3, 0.7))[..., None], colours[0], colours[1])
    if kind == "patch":
        if not patches:
            raise ValueError('texture "patch" needs patches=[image, ...] (float [h, w, C] arrays in [0, 1])')
        patch = np.asarray(patches[int(rng.integers(len(patches)))], np.float32)
        if patch.ndim != 3 or patch.shape[2] != channels or min(patch.shape[:2]) < 4:
            raise ValueError(f"patches must be float [h, w, {channels}] images of at least 4x4, got {patch.shape}")
        h, w = patch.shape[:2]
        ph, pw = int(rng.integers(max(h // 4, 2), h + 1)), int(rng.integers(max(w // 4, 2), w + 1))
        y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        window = np.ascontiguousarray(patch[y0 : y0 + ph, x0 : x0 + pw])
        resized = cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(resized.reshape(height, width, channels), 0, 1)
    raise ValueError(f"unknown texture {kind!r}; choose from {TEXTURES}")


def synthesize_occlusion(
    key_or_rng,
    image: np.ndarray,
    landmarks: np.ndarray,
    face_mask: np.ndarray | None = None,
    *,
    num_occluders: int | tuple[int, int] = (1, 2),
    kinds: Sequence[str] = KINDS,
    textures: Sequence[str] | None = None,
    patches: Sequence[np.ndarray] | None = None,
) -> OccludedFace:
    """Superimpose random occluders on ``image`` by thesis eq. 5.2 (module docstring).

    ``key_or_rng``: a ``numpy.random.Generator`` (advanced in place), an int seed or a JAX PRNG key.
    ``image [H, W, C]`` float in [0, 1]; ``landmarks [68, 2]`` pixels (iBUG-68); ``face_mask [H, W]`` in
    [0, 1], the unoccluded face ``M_f`` (None: :func:`faceflax.data.segmentation.face_mask` of the
    landmarks). ``num_occluders``: a count or an inclusive ``(low, high)`` range; each occluder's kind is
    drawn uniformly from ``kinds`` and its texture from ``textures`` (default: solid, noise, stripes, and
    patch when ``patches`` are given). Later occluders lie over earlier ones.
    """
    rng = _rng(key_or_rng)
    image = np.asarray(image)
    if image.ndim != 3 or not np.issubdtype(image.dtype, np.floating) or min(image.shape[:2]) < 1:
        raise ValueError(
            f"image must be float [H, W, C] in [0, 1] (one image, not a batch), got {image.dtype} {image.shape}"
        )
    image = image.astype(np.float32)
    size, channels = image.shape[:2], image.shape[2]
    landmarks = check_landmarks(landmarks)
    m_f = segmentation.face_mask(landmarks, size) if face_mask is None else np.asarray(face_mask, np.float32)
    if m_f.shape != size or not np.all((m_f >= 0) & (m_f <= 1)):
        raise ValueError(f"face_mask must be [H, W] = {size} with values in [0, 1], got shape {m_f.shape}")
    low, high = (num_occluders, num_occluders) if np.ndim(num_occluders) == 0 else tuple(num_occluders)
    if not 1 <= low <= high:
        raise ValueError(
            f"num_occluders must be a count >= 1 or a range (low, high) with 1 <= low <= high, got {num_occluders}"
        )
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {kinds}")
    textures = (TEXTURES if patches else TEXTURES[:3]) if textures is None else tuple(textures)
    if not textures or any(t not in TEXTURES for t in textures):
        raise ValueError(f"textures must be a non-empty selection of {TEXTURES}, got {textures}")

    m_o = np.zeros(size, np.float32)
    i_o = np.zeros_like(image)
    for _ in range(int(rng.integers(low, high + 1))):
        mask = occluder_mask(rng, kinds[int(rng.integers(len(kinds)))], landmarks, size)
        texture = occluder_texture(rng, textures[int(rng.integers(len(textures)))], size, channels, patches)
        i_o = np.where(mask[..., None] > 0, texture, i_o)
        m_o = np.maximum(m_o, mask)
    occluded = image * (1 - m_o[..., None]) + i_o * m_o[..., None]
    return OccludedFace(occluded.astype(np.float32), m_o, (m_f * (1 - m_o)).astype(np.float32))


def _rng(key_or_rng) -> np.random.Generator:
    if isinstance(key_or_rng, np.random.Generator):
        return key_or_rng
    if isinstance(key_or_rng, (int, np.integer)) and not isinstance(key_or_rng, bool) and key_or_rng >= 0:
        return np.random.default_rng(int(key_or_rng))
    dtype = getattr(key_or_rng, "dtype", None)
    if dtype is not None and str(dtype).startswith("key<"):
        import jax

        return np.random.default_rng(np.asarray(jax.random.key_data(key_or_rng)).reshape(-1))
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.unsignedinteger):
        return np.random.default_rng(np.asarray(key_or_rng).reshape(-1))
    raise ValueError(
        f"key_or_rng must be a numpy.random.Generator, a non-negative int seed or a JAX PRNG key, got {key_or_rng!r}"
    )


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32)


def _fill(mask: np.ndarray, polygon: np.ndarray) -> None:
    cv2.fillPoly(mask, [_fixed(polygon)], 1, lineType=cv2.LINE_8, shift=4)


def _ellipse(centre, axes, angle: float, count: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    local = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], 1)
    c, s = np.cos(angle), np.sin(angle)
    return np.asarray(centre) + local @ np.array([[c, s], [-s, c]])


def _sunglasses(mask: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray) -> None:
    """Two lenses over the eyes (each covering its 6 landmarks with margin) and a bridge between them."""
    left, right = landmarks[LEFT_EYE].mean(0), landmarks[RIGHT_EYE].mean(0)
    axis = (right - left) / max(np.linalg.norm(right - left), 1e-6)
    normal = np.array([-axis[1], axis[0]])
    angle = float(np.arctan2(axis[1], axis[0]))
    jitter = rng.uniform(1.0, 1.25)
    ends = []
    for centre, indices in ((left, LEFT_EYE), (right, RIGHT_EYE)):
        offsets = landmarks[indices] - centre
        a = jitter * (LENS_MARGIN * np.max(np.abs(offsets @ axis)) + 2)
        b = max(jitter * (LENS_MARGIN * np.max(np.abs(offsets @ normal)) + 2), 0.7 * a)
        _fill(mask, _ellipse(centre, (a, b), angle))
        ends.append((centre, a, b))
    (c0, a0, b0), (c1, a1, _) = ends
    thickness = max(2, round(0.25 * b0))
    bridge = np.stack([c0 + 0.9 * a0 * axis, c1 - 0.9 * a1 * axis])
    cv2.polylines(mask, [_fixed(bridge)], False, 1, thickness=thickness, lineType=cv2.LINE_8, shift=4)


def _hand(mask: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray, scale: float) -> None:
    """A palm beside one side of the jaw and 4 fingers reaching toward the nose."""
    jaw_point = landmarks[int(rng.choice([3, 4, 5, 11, 12, 13]))]
    target = landmarks[NOSE_TIP]
    inward = (target - jaw_point) / max(np.linalg.norm(target - jaw_point), 1e-6)
    palm = jaw_point - rng.uniform(0.05, 0.2) * scale * inward
    _fill(mask, _ellipse(palm, scale * np.array([0.22, 0.16]), float(np.arctan2(inward[1], inward[0]))))
    width = max(2, round(rng.uniform(0.06, 0.09) * scale))
    base_angle = float(np.arctan2(inward[1], inward[0])) + rng.uniform(-0.3, 0.3)
    for spread in np.linspace(-0.35, 0.35, 4):
        direction = np.array([np.cos(base_angle + spread), np.sin(base_angle + spread)])
        tip = palm + scale * rng.uniform(0.35, 0.55) * direction
        cv2.line(mask, _fixed(palm).tolist(), _fixed(tip).tolist(), 1, thickness=width, lineType=cv2.LINE_8, shift=4)
        cv2.circle(mask, _fixed(tip).tolist(), round(width / 2 * 16), 1, thickness=-1, lineType=cv2.LINE_8, shift=4)
