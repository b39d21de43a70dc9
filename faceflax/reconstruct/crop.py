"""The face square every reconstruction stage works in, and the way back to the photo's pixels.

Photos come in any size (32 to 8192 px a side, see :mod:`faceflax.data.images`) and a face may fill
them or be a small part of them. Fitting, UV sampling and rendering run on one fixed-size square
around the detected landmarks (Deep3DFaceRecon's aligned crop, here ``size`` = 512 px by default), so
every photo reuses one compiled program and a huge photo costs no more than a small one. The square
(whole photo pixels) is centred on the landmarks' bounding box and ``context`` times its larger side;
parts of it outside the photo are black (they are never sampled: the face-region mask stays on the landmarks).

Pixel convention (as :mod:`faceflax.data.faces`): pixel centres at integers, so a photo point ``x``
maps to ``(x + 0.5 - x0) * scale - 0.5`` in the square.
"""

import dataclasses

import cv2
import numpy as np

DEFAULT_SIZE = 512
DEFAULT_CONTEXT = 2.0


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    """A square ``[x0, x0 + side) x [y0, y0 + side)`` of the photo resampled to ``size`` pixels."""

    x0: int
    y0: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        """Square pixels per photo pixel."""
        return self.size / self.side

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo pixels ``[..., 2]`` (x, y) -> square pixels."""
        return ((np.asarray(points, np.float64) + 0.5 - (self.x0, self.y0)) * self.scale - 0.5).astype(np.float32)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Square pixels ``[..., 2]`` -> photo pixels."""
        return ((np.asarray(points, np.float64) + 0.5) / self.scale + (self.x0, self.y0) - 0.5).astype(np.float32)

    def _photo_to_crop_matrix(self) -> np.ndarray:
        s = self.scale
        return np.array([[s, 0, (0.5 - self.x0) * s - 0.5], [0, s, (0.5 - self.y0) * s - 0.5]], np.float64)

    def crop(self, photo: np.ndarray) -> np.ndarray:
        """``photo [H, W, C]`` float32 -> ``[size, size, C]``; area-averaged when shrinking, black outside."""
        h, w = photo.shape[:2]
        x0, y0, side = int(self.x0), int(self.y0), int(self.side)
        pad = ((max(-y0, 0), max(y0 + side - h, 0)), (max(-x0, 0), max(x0 + side - w, 0)), (0, 0))
        top, left = y0 + pad[0][0], x0 + pad[1][0]
        window = np.pad(photo, pad)[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        return cv2.resize(window, (self.size, self.size), interpolation=interpolation)

    def coverage_in_photo(self, coverage: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
        """Square-pixel ``coverage [size, size]`` -> float ``[H, W]`` in [0, 1] (bilinear: a soft edge)."""
        h, w = photo_size
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(np.asarray(coverage, np.float32), self._photo_to_crop_matrix(), (w, h), flags=flags)

    def paste(self, photo: np.ndarray, render: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``render [size, size, C]`` (square pixels) over ``photo [H, W, C]`` with ``alpha [H, W]`` (photo pixels)."""
        h, w = photo.shape[:2]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        back = cv2.warpAffine(np.asarray(render, np.float32), self._photo_to_crop_matrix(), (w, h), flags=flags)
        return (alpha[..., None] * back.reshape(h, w, -1) + (1 - alpha[..., None]) * photo).astype(np.float32)


def face_crop(landmarks: np.ndarray, size: int = DEFAULT_SIZE, context: float = DEFAULT_CONTEXT) -> FaceCrop:
    """The square around ``landmarks [68, 2]`` (photo pixels): centred on their box, ``context`` x its side."""
    landmarks = np.asarray(landmarks, np.float64)
    low, high = landmarks.min(0), landmarks.max(0)
    side = max(round(context * float(np.max(high - low))), 8)
    centre = 0.5 * (low + high) + 0.5  # continuous coordinates
    x0, y0 = (round(c - side / 2) for c in centre)
    return FaceCrop(x0=x0, y0=y0, side=side, size=int(size))
