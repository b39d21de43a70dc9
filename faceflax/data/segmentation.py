"""Landmark-based facial segmentation maps (thesis sec. 3.3.1, Fig. 3.3d/h) and face-region masks.

The pose-editing method of thesis ch. 3 guides its pixel attention sampler with "landmark based
segmentation maps" ``I_seg_tf`` and ``J_seg`` "transformed from their 2D facial landmarks", one-hot per
pixel over "the different classes of facial attributes" (the Dice loss of eq. 3.3 sums over them). The
thesis does not list the classes; Fig. 3.3(d, h) shows the face, brows, eyes, nose and mouth, so the
components here are ``COMPONENTS``:

====  ============  ======================================================================================
 k    name          polygon (iBUG-68 indices)
====  ============  ======================================================================================
 0    background    everything else
 1    skin          the face region: jaw 0-16 closed over the brows lifted by ``forehead``
                    (:func:`faceflax.reconstruct.texture.face_region_mask`)
 2/3  brow_left /   brow 17-21 / 22-26 as the upper edge, the same points moved ``BROW_THICKNESS`` x
      brow_right    (chin 8 - nose bridge 27) down as the lower edge
 4    nose          bridge top 27 and the nostrils 31-35
 5/6  eye_left /    eye 36-41 / 42-47
      eye_right
 7    lips          outer lip 48-59 (less the mouth)
 8    mouth         inner lip 60-67 (teeth / mouth opening; a thin line when the mouth is closed)
====  ============  ======================================================================================

"left" is the image's left (iBUG's order). Components are drawn in this order, each over the previous
ones, so every pixel has exactly one class. Polygons are filled with ``cv2.fillPoly`` at 1/16 px vertex
precision (``shift=4``); OpenCV fills the pixels whose centres lie inside a polygon or within about half
a pixel of its edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceflax.data.faces import check_landmarks
from faceflax.reconstruct.texture import DEFAULT_FOREHEAD, face_region_mask

COMPONENTS = (
    "background",
    "skin",
    "brow_left",
    "brow_right",
    "nose",
    "eye_left",
    "eye_right",
    "lips",
    "mouth",
)
NUM_CLASSES = len(COMPONENTS)
BROW_THICKNESS = 0.06
"""Brow height as a fraction of the nose-bridge-to-chin distance."""

_BROWS = {"brow_left": list(range(17, 22)), "brow_right": list(range(22, 27))}
_POLYGONS = {
    "nose": [27, 35, 34, 33, 32, 31],
    "eye_left": list(range(36, 42)),
    "eye_right": list(range(42, 48)),
    "lips": list(range(48, 60)),
    "mouth": list(range(60, 68)),
}
CHIN, NOSE_BRIDGE = 8, 27


def component_polygons(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The polygon ``float64 [P, 2]`` (pixels) of each component but background and skin (table above)."""
    landmarks = check_landmarks(landmarks).astype(np.float64)
    down = BROW_THICKNESS * (landmarks[CHIN] - landmarks[NOSE_BRIDGE])
    polygons = {name: np.concatenate([landmarks[idx], landmarks[idx[::-1]] + down]) for name, idx in _BROWS.items()}
    polygons.update({name: landmarks[idx] for name, idx in _POLYGONS.items()})
    return {name: polygons[name] for name in COMPONENTS[2:]}


def label_map(landmarks: np.ndarray, image_size: tuple[int, int], forehead: float = DEFAULT_FOREHEAD) -> np.ndarray:
    """int32 ``[H, W]`` class index (``COMPONENTS``) of each pixel, from ``landmarks [68, 2]`` (pixels).

    ``image_size`` is ``(H, W)``; ``forehead`` lifts the skin region's upper edge (see
    :func:`faceflax.reconstruct.texture.face_region_mask`). Landmarks may lie outside the image.
    """
    landmarks = check_landmarks(landmarks)
    height, width = _image_size(image_size)
    labels = face_region_mask(landmarks, (height, width), forehead).astype(np.int32)
    for k, polygon in enumerate(component_polygons(landmarks).values(), start=2):
        cv2.fillPoly(labels, [np.round(polygon * 16).astype(np.int32)], k, lineType=cv2.LINE_8, shift=4)
    return labels


def segmentation_map(
    landmarks: np.ndarray, image_size: tuple[int, int], forehead: float = DEFAULT_FOREHEAD
) -> np.ndarray:
    """float32 one-hot ``[H, W, NUM_CLASSES]`` of :func:`label_map`: ``I_seg`` / ``J_seg`` of thesis sec. 3.3.1.

    Channel ``k`` is ``COMPONENTS[k]`` (0: background); every pixel sums to exactly 1, as the Dice loss of
    thesis eq. 3.3 expects.
    """
    return np.eye(NUM_CLASSES, dtype=np.float32)[label_map(landmarks, image_size, forehead)]


def face_mask(landmarks: np.ndarray, image_size: tuple[int, int], forehead: float = DEFAULT_FOREHEAD) -> np.ndarray:
    """float32 ``[H, W]`` in {0, 1}: every component but background (the face region ``M_f`` of a landmark face).

    The skin region of :func:`faceflax.reconstruct.texture.face_region_mask` with the components drawn in,
    so eyes or an open mouth reaching past the jaw line still count as face.
    """
    return (label_map(landmarks, image_size, forehead) > 0).astype(np.float32)


def _image_size(image_size) -> tuple[int, int]:
    size = tuple(np.asarray(image_size).reshape(-1).tolist()) if np.ndim(image_size) == 1 else None
    if size is None or len(size) != 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in size):
        raise ValueError(f"image_size must be (height, width) in pixels, e.g. image.shape[:2], got {image_size!r}")
    return int(size[0]), int(size[1])
