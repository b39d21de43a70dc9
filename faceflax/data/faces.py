"""Faces in photos with dlib: detection, 68 landmarks, identity descriptors; user landmark files.

Models: dlib from the ``dlib-bin`` wheel (imports as ``dlib``; no compiler needed) and the model
files shipped in the ``face-recognition-models`` package, found with
``importlib.util.find_spec`` — the package itself is never imported (its ``pkg_resources``
import fails on new setuptools). Each model is loaded once per process and cached (the 68-point
predictor takes ~0.5 s to load).
Licence note: the 68-point predictor was trained on iBUG 300-W, whose licence excludes
commercial use (see the notes of dlib's model files).

* ``detect_faces(image)``: dlib's HOG frontal face detector with upsample 0, boxes largest first.
  Upsample 0 finds faces of roughly 80x80 pixels and more; upsample 1 also finds smaller ones (4x
  slower) but adds a false positive on the default astronaut photo (x 126..215, y 335..425 on her
  suit, score 0.12, the face scoring 1.16), so it is not the default.
  Even at upsample 0 that suit patch comes back (scores 0.01-0.2, against 1.1-1.5 for faces) on
  rescaled (0.8-0.95x) or padded copies of the photo, sometimes as large as or larger than her
  face, so "the largest face" alone would pick it. Hence detections scoring below
  ``MIN_RELATIVE_SCORE`` (0.5) times the best detection's score are dropped first.
* ``detect_landmarks(image)``: the iBUG 68 landmarks (``shape_predictor_68_face_landmarks.dat``)
  of the largest face kept; ``Detection.num_faces`` says how many were kept, so the caller can tell
  the user. No face -> ``NoFaceError`` (a ``ValueError``) naming the file.
* ``face_descriptor(image, landmarks)``: dlib's ResNet identity embedding
  (``dlib_face_recognition_resnet_model_v1.dat``), 128-d (norm ~1.4); ``descriptor_distance``
  is their Euclidean distance. dlib's rule: distance < ``SAME_PERSON_THRESHOLD`` = 0.6 means the
  same person (99.38% on the LFW benchmark).
* ``load_landmarks(path)``: 68 user landmarks (the ``--landmarks FILE`` bypass of detection).

Conventions: images are anything ``read_image`` accepts (a path or an RGB array; see
``faceflax.data.images``). Landmarks are ``float32 [68, 2]`` pixel coordinates ``(x, y)``,
``x`` to the right and ``y`` down, with pixel centres at integers (``(0, 0)`` is the centre of
the top-left pixel); dlib returns integer positions. Index order is iBUG's: jaw 0-16 (chin 8),
brows 17-26, nose 27-35 (tip 30), eye on the image's left 36-41, the other eye 42-47, mouth
48-67. Boxes are ``(x0, y0, x1, y1)`` integers with ``x1``, ``y1`` exclusive; they can reach
outside the image, and the chin's landmarks often lie a little below the box.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import re
from pathlib import Path

import dlib
import numpy as np

from faceflax.data import images

NUM_LANDMARKS = 68
DESCRIPTOR_SIZE = 128
SAME_PERSON_THRESHOLD = 0.6
"""dlib's threshold: descriptors closer than this are the same person."""
DEFAULT_UPSAMPLE = 0
MIN_RELATIVE_SCORE = 0.5
"""Detections scoring below this fraction of the best one are dropped as false positives."""

MODELS_PACKAGE = "face_recognition_models"
LANDMARKS_MODEL = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"

Box = tuple[int, int, int, int]


class NoFaceError(ValueError):
    """No face was found in an image."""


@dataclasses.dataclass(frozen=True)
class Detection:
    """The landmarks of the largest face found, its box, and how many faces were found."""

    landmarks: np.ndarray  # float32 [68, 2], (x, y) pixels
    box: Box  # (x0, y0, x1, y1), x1 / y1 exclusive
    num_faces: int


def models_dir() -> Path:
    """The ``models/`` folder of the installed ``face-recognition-models`` package (not imported)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModuleNotFoundError(
            f"the dlib face models come from the package {MODELS_PACKAGE!r}, which is not installed: "
            "pip install face-recognition-models"
        )
    return Path(locations[0]) / "models"


def model_path(filename: str) -> Path:
    """Path of one model file of ``face-recognition-models``; a clear error if it is missing."""
    path = models_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall: pip install --force-reinstall face-recognition-models")
    return path


@functools.cache
def _detector():
    return dlib.get_frontal_face_detector()


@functools.cache
def _predictor():
    return dlib.shape_predictor(str(model_path(LANDMARKS_MODEL)))


@functools.cache
def _recognizer():
    return dlib.face_recognition_model_v1(str(model_path(DESCRIPTOR_MODEL)))


def detect_faces(
    image, *, upsample: int = DEFAULT_UPSAMPLE, min_relative_score: float = MIN_RELATIVE_SCORE
) -> list[Box]:
    """Boxes ``(x0, y0, x1, y1)`` (exclusive ends) of the frontal faces in ``image``, largest first.

    Detections scoring below ``min_relative_score`` times the best score are dropped as false
    positives (0 keeps every detection dlib reports). Equal sizes go by score.
    """
    pixels, _ = _pixels(image, None)
    return [_box(rect) for rect in _rects(pixels, upsample, min_relative_score)]


def detect_landmarks(
    image,
    *,
    path_for_errors=None,
    upsample: int = DEFAULT_UPSAMPLE,
    min_relative_score: float = MIN_RELATIVE_SCORE,
) -> Detection:
    """The 68 landmarks of the largest face in ``image`` (a path or an array).

    The face is the first box of ``detect_faces`` (same arguments); ``num_faces`` counts them.
    ``path_for_errors`` names the image in error messages when ``image`` is an array (a path
    names itself). Raises ``NoFaceError`` if no face is found, ``ValueError`` for a bad image.
    """
    pixels, name = _pixels(image, path_for_errors)
    rects = _rects(pixels, upsample, min_relative_score)
    if not rects:
        raise NoFaceError(
            f"no face found in {name} (dlib's HOG detector finds frontal faces of about 80x80 pixels "
            "or more; use a larger, more frontal photo, or give 68 landmarks with --landmarks FILE)"
        )
    shape = _predictor()(pixels, rects[0])
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return Detection(landmarks=landmarks, box=_box(rects[0]), num_faces=len(rects))


def face_descriptor(image, landmarks_or_detection, *, num_jitters: int = 0) -> np.ndarray:
    """dlib's 128-d identity descriptor (float32) of the face at the given landmarks.

    ``landmarks_or_detection`` is a ``Detection`` or 68 ``(x, y)`` landmarks of that image (dlib
    aligns the face from them; they are rounded to whole pixels). ``num_jitters`` > 0 averages
    over that many random jitters (slower, slightly more stable, not deterministic).
    """
    if isinstance(landmarks_or_detection, Detection):
        landmarks = landmarks_or_detection.landmarks
    else:
        landmarks = check_landmarks(landmarks_or_detection, "landmarks")
    pixels, _ = _pixels(image, None)
    points = [dlib.point(int(x), int(y)) for x, y in np.rint(landmarks).astype(np.int64)]
    (x0, y0), (x1, y1) = np.floor(landmarks.min(0)), np.ceil(landmarks.max(0))
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), points)
    descriptor = _recognizer().compute_face_descriptor(pixels, shape, num_jitters)
    return np.asarray(descriptor, dtype=np.float32)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two descriptors; below ``SAME_PERSON_THRESHOLD`` (0.6): same person."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != (DESCRIPTOR_SIZE,) or b.shape != (DESCRIPTOR_SIZE,):
        raise ValueError(f"descriptors must have shape ({DESCRIPTOR_SIZE},), got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b))


def load_landmarks(path: str | os.PathLike) -> np.ndarray:
    """68 user landmarks from a file -> float32 ``[68, 2]`` pixel ``(x, y)`` (module conventions).

    Formats, by suffix:

    * ``.npy``: an array of shape ``[68, 2]``;
    * ``.json``: ``[[x, y], ...]`` or ``{"landmarks": [[x, y], ...]}``;
    * ``.pts`` (iBUG / 300-W): ``version: 1`` / ``n_points: 68`` / ``{`` 68 lines ``x y`` ``}``;
      these are 1-based (Matlab) coordinates, so 1 is subtracted;
    * anything else: text, 68 lines ``x y`` (or ``x,y``); blank lines and ``#`` comments are
      skipped.

    Raises ``ValueError`` naming the file for a missing / unreadable file, a line that is not two
    numbers, a count other than 68, or non-finite values.
    """
    path = Path(path)
    where = f"landmarks file '{path}'"
    if not path.is_file():
        raise ValueError(f"{where}: no such file" if not path.exists() else f"{where}: not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            points = np.load(path, allow_pickle=False)
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                if "landmarks" not in data:
                    raise ValueError('expected a list of [x, y] pairs or {"landmarks": [[x, y], ...]}')
                data = data["landmarks"]
            points = np.array(data, dtype=np.float64)
        else:
            points = _parse_text(path.read_text(encoding="utf-8"), pts=suffix == ".pts")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"{where}: {error}") from None
    return check_landmarks(points, where)


def check_landmarks(points, where: str = "landmarks") -> np.ndarray:
    """Validates 68 ``(x, y)`` landmarks -> float32 ``[68, 2]``; ``ValueError`` naming ``where``."""
    points = np.asarray(points)
    if not (np.issubdtype(points.dtype, np.number) and not np.issubdtype(points.dtype, np.complexfloating)):
        raise ValueError(f"{where}: landmarks must be numbers, got dtype {points.dtype}")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(
            f"{where}: expected {NUM_LANDMARKS} points (x, y), i.e. shape [68, 2], got shape {points.shape}"
        )
    if points.shape[0] != NUM_LANDMARKS:
        raise ValueError(f"{where}: expected {NUM_LANDMARKS} points (x, y), got {points.shape[0]}")
    points = points.astype(np.float32)
    if not np.isfinite(points).all():
        raise ValueError(f"{where}: landmarks hold NaN or infinite values")
    return points


def _parse_text(text: str, *, pts: bool) -> np.ndarray:
    lines = text.splitlines()
    offset = 0
    if pts:
        try:
            start = next(k for k, line in enumerate(lines) if line.strip() == "{")
            stop = next(k for k, line in enumerate(lines) if line.strip() == "}")
        except StopIteration:
            raise ValueError("not an iBUG .pts file (no '{' ... '}' block)") from None
        lines, offset = lines[start + 1 : stop], start + 1
    rows = []
    for number, line in enumerate(lines, start=offset + 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in re.split(r"[\s,;]+", line) if f]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != 2:
            raise ValueError(f"line {number} is not two numbers 'x y': {line!r}")
        rows.append(values)
    points = np.array(rows, dtype=np.float64).reshape(-1, 2)
    return points - 1.0 if pts else points


def _pixels(image, path_for_errors) -> tuple[np.ndarray, str]:
    """uint8 RGB ``[H, W, 3]`` for dlib, and the image's name for error messages."""
    if isinstance(image, (str, os.PathLike)):
        return images.to_uint8(images.read_image(image)), f"'{image}'"
    name = f"'{path_for_errors}'" if path_for_errors is not None else "the image"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an image path or a numpy array, got {type(image).__name__}")
    where = f"image {name}" if path_for_errors is not None else "image array"
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:  # fast path, no float copy
        images._check_size(image.shape[:2], where)
        return np.ascontiguousarray(image), name
    return images.to_uint8(images._from_array(image, where)), name


def _rects(pixels: np.ndarray, upsample: int, min_relative_score: float) -> list:
    """dlib rectangles of the confidently detected faces, largest first (see ``detect_faces``)."""
    if int(upsample) != upsample or upsample < 0:
        raise ValueError(f"upsample must be a non-negative integer, got {upsample!r}")
    rects, scores, _ = _detector().run(pixels, int(upsample), 0.0)  # 0.0: dlib's default threshold
    if not rects:
        return []
    floor = min_relative_score * max(scores)
    kept = [(rect, score) for rect, score in zip(rects, scores) if score >= floor]
    return [rect for rect, _ in sorted(kept, key=lambda rs: (rs[0].area(), rs[1]), reverse=True)]


def _box(rect) -> Box:
    return int(rect.left()), int(rect.top()), int(rect.right()) + 1, int(rect.bottom()) + 1
