"""Reading photos: files, numpy arrays and the embedded default photos, as float32 RGB in [0, 1].

``read_image(source)`` takes a path (any format OpenCV decodes: JPEG, PNG, WebP, TIFF, BMP, ...)
or a numpy array and returns ``float32 [H, W, 3]`` RGB in ``[0, 1]``. Every bad input raises ONE
``ValueError`` that names the file (or says "image array") and the problem.

Rules:

* Files are read as bytes and decoded with ``cv2.imdecode`` (so non-ASCII paths work on every
  OS). JPEGs are decoded with ``cv2.IMREAD_COLOR``, which applies the EXIF orientation (phone
  photos come out upright); other formats with ``cv2.IMREAD_UNCHANGED`` to keep alpha and 16-bit
  depth (their EXIF orientation, rare outside JPEG, is not applied).
* JPEG structure is checked before decoding: the file must reach its end-of-image marker.
  A truncated JPEG is an error, never a half-grey picture (OpenCV 4 decodes those with a mere
  warning). Data after the end-of-image marker (e.g. the video of a "motion photo") is ignored.
* Sizes: both sides at least ``MIN_SIDE`` (32) pixels and at most ``MAX_SIDE`` (8192) pixels.
  Larger images are rejected, not downscaled: the landmarks and the reconstruction are in the
  pixel coordinates of the image the user gave, so a silent resize would desynchronise them
  (e.g. with ``--landmarks FILE``). For PNG and JPEG the size is read from the header, so an
  oversized file is rejected before it is decoded.
* Alpha (RGBA, grey + alpha) is composited over WHITE, as image viewers show it: the colour of
  fully transparent pixels is arbitrary (often black) and must not leak into the face.
* Grey images are replicated to three channels.
* Depths: 8-bit files / ``uint8`` arrays are divided by 255, 16-bit files / ``uint16`` arrays by
  65535. Float files (TIFF, EXR, HDR) are clipped to ``[0, 1]``.
* Arrays must be RGB (not OpenCV's BGR) with shape ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or
  ``[H, W, 4]`` and dtype ``uint8``, ``uint16`` or float. Float arrays must be finite and in
  ``[0, 1]`` (a small rounding slack is clipped); a float array in ``[0, 255]`` is an error that
  says to divide by 255.

``default_photo(name)`` returns an embedded photo: ``"astronaut"`` (``skimage.data.astronaut()``,
Eileen Collins, NASA, public domain; scikit-image is a core dependency) or ``"grace_hopper"``
(matplotlib's sample ``grace_hopper.jpg``; matplotlib is an OPTIONAL dependency, and without it
this raises a ``ValueError`` saying to ``pip install matplotlib``). The two are different people.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

MIN_SIDE = 32
"""Smallest accepted height / width in pixels."""

MAX_SIDE = 8192
"""Largest accepted height / width in pixels (larger images are rejected, not downscaled)."""

DEFAULT_PHOTOS = ("astronaut", "grace_hopper")

_FLOAT_SLACK = 1e-3  # float arrays may overshoot [0, 1] by this much (rounding); it is clipped
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Corrupt(Exception):
    """Internal: a structural problem found while checking a file's bytes."""


def read_image(source: str | os.PathLike | np.ndarray) -> np.ndarray:
    """A path or an array -> float32 RGB ``[H, W, 3]`` in ``[0, 1]`` (see the module docstring).

    Raises:
      ValueError: the file is missing / unreadable / not an image / corrupt / too small / too
        large, or the array has a wrong dtype, shape or value range. The message names the file.
      TypeError: ``source`` is neither a path nor an array.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, "image array")
    if isinstance(source, (str, os.PathLike)):
        return _from_file(Path(source))
    raise TypeError(f"read_image expects a path or a numpy array, got {type(source).__name__}")


def default_photo(name: str = "astronaut") -> np.ndarray:
    """An embedded photo (``"astronaut"`` or ``"grace_hopper"``) as float32 RGB ``[H, W, 3]``."""
    if name == "astronaut":
        import skimage.data  # deferred: only needed for the embedded photo

        return _from_array(skimage.data.astronaut(), "skimage.data.astronaut()")
    if name == "grace_hopper":
        return read_image(grace_hopper_path())
    raise ValueError(f"unknown default photo {name!r}; choose one of {', '.join(DEFAULT_PHOTOS)}")


def grace_hopper_path() -> Path:
    """Path of matplotlib's sample ``grace_hopper.jpg`` (needs the optional matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            "the default photo 'grace_hopper' is matplotlib's sample data, and matplotlib is not "
            "installed: pip install matplotlib"
        ) from None
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise ValueError(f"matplotlib {matplotlib.__version__} does not ship its sample photo {path}")
    return path


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float ``[0, 1]`` -> C-contiguous uint8 (rounded); uint8 passes through unchanged."""
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _from_file(path: Path) -> np.ndarray:
    where = f"image file '{path}'"
    if not path.exists():
        raise ValueError(f"{where}: no such file")
    if path.is_dir():
        raise ValueError(f"{where}: is a directory, not an image file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{where}: cannot be read ({error.strerror or error})") from None
    if not data:
        raise ValueError(f"{where}: the file is empty")
    try:
        header_size = _header_size(data)
    except _Corrupt as error:
        raise ValueError(f"{where}: corrupt image ({error})") from None
    if header_size is not None and min(header_size) > 0:  # a JPEG may defer its height (DNL): 0
        _check_size(header_size, where)
    jpeg = data.startswith(_JPEG_MAGIC)
    flags = cv2.IMREAD_COLOR if jpeg else cv2.IMREAD_UNCHANGED
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as error:  # e.g. beyond OpenCV's own pixel-count limit
        raise ValueError(f"{where}: OpenCV cannot decode it ({str(error).strip().splitlines()[-1]})") from None
    if decoded is None or decoded.size == 0:
        raise ValueError(f"{where}: not an image OpenCV can decode (the file starts with {data[:16]!r})")
    if decoded.ndim == 3 and decoded.shape[2] in (3, 4):  # BGR(A) -> RGB(A)
        decoded = decoded[..., [2, 1, 0, 3][: decoded.shape[2]]]
    if np.issubdtype(decoded.dtype, np.floating):
        decoded = np.clip(np.nan_to_num(decoded, nan=0.0), 0.0, 1.0)
    return _from_array(decoded, where)


def _from_array(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))):
        raise ValueError(f"{where}: shape {array.shape} is not [H, W], [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA)")
    _check_size(array.shape[:2], where)
    if array.dtype == np.uint8:
        image = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        image = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        image = array.astype(np.float32)
        if not np.isfinite(image).all():
            raise ValueError(f"{where}: holds NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < -_FLOAT_SLACK or high > 1.0 + _FLOAT_SLACK:
            hint = " (looks like 0..255: divide by 255)" if high <= 255.0 and low >= 0.0 else ""
            raise ValueError(f"{where}: float values must lie in [0, 1], got [{low:g}, {high:g}]{hint}")
        image = np.clip(image, 0.0, 1.0)
    else:
        raise ValueError(f"{where}: dtype {array.dtype} is not supported (use uint8, uint16 or float in [0, 1])")
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] in (2, 4):  # colour + alpha, composited over white
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1.0 - alpha)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image, dtype=np.float32)


def _check_size(shape: tuple[int, int], where: str) -> None:
    height, width = int(shape[0]), int(shape[1])
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{where}: {width}x{height} pixels is too small (at least {MIN_SIDE} pixels a side)")
    if max(height, width) > MAX_SIDE:
        raise ValueError(
            f"{where}: {width}x{height} pixels is too large (at most {MAX_SIDE} pixels a side); "
            "downscale it first (landmarks are in the pixels of the image given, so it is not resized here)"
        )


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG or JPEG header (JPEG: also checks its structure); else None."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise _Corrupt("PNG without an IHDR header")
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walks a JPEG's markers to its end-of-image (EOI) marker; returns the frame's (height, width).

    Segments are skipped by their length (so the complete thumbnail JPEG inside an EXIF segment
    does not count), entropy-coded data after each start-of-scan up to the next real marker.
    Raises _Corrupt if the data ends first (truncated file) or no frame header is found.
    """
    truncated = _Corrupt("truncated JPEG: the data ends before the end-of-image marker")
    n, i, size = len(data), 2, None
    while True:
        i = data.find(b"\xff", i)  # libjpeg-style: skip stray bytes before a marker
        if i < 0:
            raise truncated
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise truncated
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            if size is None:
                raise _Corrupt("JPEG without a frame header")
            return size
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stuffed / standalone
            continue
        if i + 2 > n:
            raise truncated
        end = i + int.from_bytes(data[i : i + 2], "big")
        if end > n:
            raise truncated
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and end - i >= 7:  # SOFn
            size = int.from_bytes(data[i + 3 : i + 5], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i = end
        if marker == 0xDA:  # SOS: entropy-coded data up to the next marker that is not FF00 / RSTn
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    raise truncated
                following = data[i + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i += 2
                elif following == 0xFF:
                    i += 1
                else:
                    break
