"""Running ``faceflax reconstruct`` over photos: inputs, output folders and the JSON report.

Each photo gets ``OUT/<stem>/`` holding ``uv_incomplete.png`` (RGBA: alpha = visible texels),
``uv_complete.png``, ``mesh.obj`` + ``mesh.mtl`` + ``material_0.png`` (the fitted shape in model space
with the complete texture), ``render.png`` (the face re-rendered at the photo's pose and pasted back),
``view_frontal.png`` / ``view_left.png`` / ``view_right.png``, ``summary.png`` (all of it in one
labelled grid) and ``report.json``. A folder appears whole or not at all, so an interrupted batch
leaves no half-written photo, and ``skip_existing`` resumes it. Bad photos are reported and skipped;
the others still run.
"""

import dataclasses
import glob
import importlib.metadata
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from faceflax import assets
from faceflax.data import faces as dlib_faces
from faceflax.data import images
from faceflax.reconstruct import export, views
from faceflax.reconstruct.pipeline import Reconstruction, Reconstructor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
REPORT = "report.json"


@dataclasses.dataclass(frozen=True)
class PhotoInput:
    """One photo to reconstruct: a path, or the name of an embedded default photo."""

    name: str  # output folder name
    path: Path | None  # None: the embedded photo ``name``

    def read(self) -> np.ndarray:
        return images.default_photo(self.name) if self.path is None else images.read_image(self.path)

    @property
    def label(self) -> str:
        return f"embedded photo '{self.name}'" if self.path is None else f"'{self.path}'"


def expand_inputs(specs: Iterable[str]) -> list[PhotoInput]:
    """Files, folders (their images, sorted) and glob patterns -> photos; none -> the astronaut.

    Output names are the file stems, numbered where two stems collide. A spec that matches nothing
    is an error naming it (a typo must not silently reconstruct nothing).
    """
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise ValueError(f"folder '{spec}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif path.exists():
            paths.append(path)
        elif matches := sorted(glob.glob(spec, recursive=True)):
            paths += [Path(m) for m in matches if Path(m).is_file()]
        else:
            raise ValueError(f"no such file, folder or pattern: '{spec}'")
    if not paths:
        return [PhotoInput("astronaut", None)]
    named, used = [], set()
    for path in paths:
        name, k = path.stem, 1
        while name in used:
            k += 1
            name = f"{path.stem}_{k}"
        used.add(name)
        named.append(PhotoInput(name, path))
    return named


def _landmark_overlay(photo: np.ndarray, detected: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The photo with detected (green) and fitted (red) landmarks, cropped around the face."""
    pixels = images.to_uint8(photo).copy()
    radius = max(1, round(0.008 * float(np.ptp(detected[:, 0]))) + 1)
    for points, colour, size in ((detected, (0, 200, 0), radius + 1), (fitted, (230, 0, 0), radius)):
        for x, y in np.round(points).astype(int):
            cv2.circle(pixels, (int(x), int(y)), size, colour, -1, cv2.LINE_AA)
    low, high = detected.min(0), detected.max(0)
    margin = 0.35 * float(np.max(high - low))
    (x0, y0), (x1, y1) = np.maximum(low - margin, 0).astype(int), np.ceil(high + margin).astype(int)
    return pixels[y0 : y1 + 1, x0 : x1 + 1]


def report(rec: Reconstruction, reconstructor: Reconstructor, source: str) -> dict:
    """The JSON report of one reconstruction (coefficients, errors, coverage, identity, timings)."""
    fit, model, layout = rec.fit, reconstructor.model, reconstructor.layout
    errors = np.linalg.norm(rec.fitted - rec.detected, axis=-1)
    out = {
        "input": source,
        "image_size": list(rec.photo.shape[:2]),
        "faces_found": rec.num_faces,
        "landmarks_from": "dlib" if rec.box is not None else "user",
        "face_box": rec.box,
        "landmarks_detected": rec.detected,
        "landmarks_fitted": rec.fitted,
        "landmark_error_px": {
            "mean": float(errors.mean()),
            "max": float(errors.max()),
            "normalised_by_outer_eye_corners": float(
                errors.mean() / np.linalg.norm(rec.detected[36] - rec.detected[45])
            ),
        },
        "fit_converged": bool(fit.converged),
        "coefficients": {
            "angles_deg": np.degrees(np.asarray(fit.angles)),
            "translation": fit.translation,
            "identity": fit.id_coeffs,
            "expression": dict(zip(model.expression_names, np.asarray(fit.exp_coeffs).tolist()))
            if model.expression_names
            else fit.exp_coeffs,
        },
        "visible_texel_fraction": float(np.sum(rec.visible & layout) / max(np.sum(layout), 1)),
        "mirrored_texel_fraction": float(np.sum(rec.mirrored & layout) / max(np.sum(layout), 1)),
        "completion": {
            "clipped_texel_fraction": rec.overshoot,
            "blends": [
                {"residual": info.residual, "iterations": info.iterations, "converged": info.converged}
                for info in rec.completion_info
            ],
        },
        "identity_distance": rec.identity,
        "identity_threshold": dlib_faces.SAME_PERSON_THRESHOLD,
        "timings_s": rec.timings,  # up to the files; writing them is timed in the summary line
        "model": {
            "name": model.name,
            "source": model.source,
            "vertices": int(np.asarray(model.mean).shape[0]),
            **_asset_of(model.name),
        },
        "versions": {pkg: _version(pkg) for pkg in ("faceflax", "jax", "dlib-bin", "opencv-python-headless")},
    }
    if rec.appearance is not None:
        out["coefficients"]["albedo"] = rec.appearance.tex_coeffs
        out["coefficients"]["sh_light"] = rec.appearance.gamma
        out["appearance_error"] = float(rec.appearance.photometric_error)
    return out


def _asset_of(model_name: str) -> dict:
    """The registry entry a model came from (origin with its version, licence), if any."""
    for prefix, name in (("ict", "ict-facekit"), ("mediapipe", "mediapipe"), ("bfm", "bfm")):
        if model_name.startswith(prefix):
            return {"asset": name, "asset_origin": assets.ASSETS[name].origin, "licence": assets.ASSETS[name].licence}
    return {}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_reconstruction(rec: Reconstruction, reconstructor: Reconstructor, folder: Path, source: str) -> None:
    """All files of one photo into ``folder``, atomically (module docstring)."""
    model = reconstructor.model
    with export.atomic_folder(folder) as staging:
        export.write_png(staging / "uv_incomplete.png", np.concatenate([rec.sampled, rec.visible[..., None]], -1))
        export.write_png(staging / "uv_complete.png", rec.completed)
        mesh = export.textured_mesh(rec.shape, model.faces, model.uvs, model.uv_faces, rec.completed)
        export.write_obj(staging, mesh)
        export.write_png(staging / "render.png", rec.render)
        for name, image in rec.views.items():
            export.write_png(staging / f"view_{name}.png", image)
        tiles = [
            ("photo", rec.photo),
            ("landmarks: detected, fitted", _landmark_overlay(rec.photo, rec.detected, rec.fitted)),
            ("re-rendered at the photo's pose", rec.render),
            ("incomplete UV (visible texels)", rec.sampled),
            ("complete UV", rec.completed),
        ] + [(f"{name} view (yaw {views.VIEW_YAWS[name]:+.0f})", image) for name, image in rec.views.items()]
        export.write_png(staging / "summary.png", export.summary_grid(tiles))
        export.write_json(staging / REPORT, report(rec, reconstructor, source))


@dataclasses.dataclass
class BatchResult:
    done: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]  # (input, message)


def reconstruct_many(
    photos: list[PhotoInput],
    out: Path,
    reconstructor: Reconstructor,
    *,
    landmarks: np.ndarray | None = None,
    skip_existing: bool = False,
    progress: bool = True,
) -> BatchResult:
    """Reconstruct each photo into ``out/<name>/``; a failing photo is logged and the rest go on."""
    if landmarks is not None and len(photos) != 1:
        raise ValueError(f"--landmarks gives the landmarks of one photo, but {len(photos)} photos were given")
    result = BatchResult([], [], [])
    bar = tqdm(photos, desc="reconstruct", unit="photo", disable=not progress or len(photos) < 2, file=sys.stderr)
    for photo in bar:
        folder = out / photo.name
        if skip_existing and (folder / REPORT).is_file():
            result.skipped.append(photo.name)
            continue
        try:
            start = time.perf_counter()
            image = photo.read()
            read_s = time.perf_counter() - start
            rec = reconstructor(image, photo.label, landmarks)
            rec.timings = {"read": read_s, **rec.timings}
            write_reconstruction(rec, reconstructor, folder, photo.label)
        except (ValueError, OSError, RuntimeError) as error:  # dlib raises RuntimeError on odd images
            result.failed.append((photo.label, str(error)))
            tqdm.write(f"{photo.label}: failed: {error}", file=sys.stderr)
            continue
        result.done.append(photo.name)
        tqdm.write(_summary_line(photo, rec, folder, time.perf_counter() - start), file=sys.stdout)
    return result


def _summary_line(photo: PhotoInput, rec: Reconstruction, folder: Path, total: float) -> str:
    faces = f"{rec.num_faces} faces found, the largest reconstructed; " if rec.num_faces > 1 else ""
    error = float(np.linalg.norm(rec.fitted - rec.detected, axis=-1).mean())
    identity = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in rec.identity.items())
    return (
        f"{photo.label}: {faces}landmark error {error:.1f} px, visible texels "
        f"{100 * float(rec.visible.mean()):.0f}%"
        + (f", identity distance ({identity})" if identity else "")
        + f", {total:.1f} s -> {folder}"
    )
