"""Files of a reconstruction: PNG images, the textured mesh (OBJ + MTL + PNG via trimesh), a labelled
summary grid and the JSON report; each photo's folder appears whole or not at all."""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import trimesh
from trimesh.exchange.obj import export_obj

from faceflax.data.images import to_uint8

TILE = 256
LABEL_HEIGHT = 22


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; float or bool in [0, 1] scaled (values outside saturate)."""
    image = np.asarray(image)
    return to_uint8(image if image.dtype == np.uint8 else image.astype(np.float32))


def write_png(path: Path, image: np.ndarray) -> None:
    """Write uint8, or float / bool in [0, 1], RGB ``[H, W, 3]``, RGBA ``[H, W, 4]`` or grey ``[H, W]`` as PNG."""
    pixels = _as_uint8(image)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[-1] == 4 else cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"could not encode {path.name} as PNG")
    path.write_bytes(data.tobytes())


def textured_mesh(verts, faces, uvs, uv_faces, texture: np.ndarray) -> trimesh.Trimesh:
    """A trimesh mesh with one vertex per (position, UV) pair, so UV seams survive the OBJ.

    ``verts [V,3]``, ``faces [F,3]``, ``uvs [T,2]`` (v down, :mod:`faceflax.render.uv`), ``uv_faces [F,3]``,
    ``texture [Ht,Wt,3]`` float in [0, 1].
    """
    faces, uv_faces = np.asarray(faces, np.int64), np.asarray(uv_faces, np.int64)
    pairs, corner_index = np.unique(np.stack([faces.ravel(), uv_faces.ravel()], 1), axis=0, return_inverse=True)
    uv = np.asarray(uvs, np.float64)[pairs[:, 1]]
    visual = trimesh.visual.TextureVisuals(
        uv=np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1),  # OBJ's v points up
        image=PIL.Image.fromarray(_as_uint8(texture)),
    )
    return trimesh.Trimesh(
        np.asarray(verts, np.float64)[pairs[:, 0]], corner_index.reshape(-1, 3), visual=visual, process=False
    )


def write_obj(folder: Path, mesh: trimesh.Trimesh, name: str = "mesh") -> list[str]:
    """``name.obj`` + ``name.mtl`` + its texture PNG into ``folder``; returns the file names."""
    text, files = export_obj(
        mesh, include_normals=False, include_texture=True, return_texture=True, mtl_name=f"{name}.mtl"
    )
    (folder / f"{name}.obj").write_text(text)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return [f"{name}.obj", *files]


def _tile(label: str, image: np.ndarray) -> np.ndarray:
    pixels = _as_uint8(image)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, -1)
    h, w = pixels.shape[:2]
    scale = TILE / max(h, w)
    resized = cv2.resize(pixels, (max(round(w * scale), 1), max(round(h * scale), 1)), interpolation=cv2.INTER_AREA)
    tile = np.full((TILE + LABEL_HEIGHT, TILE, 3), 255, np.uint8)
    top, left = LABEL_HEIGHT + (TILE - resized.shape[0]) // 2, (TILE - resized.shape[1]) // 2
    tile[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    cv2.putText(tile, label, (4, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def summary_grid(tiles: list[tuple[str, np.ndarray]], columns: int = 4) -> np.ndarray:
    """Labelled tiles (float RGB or masks in [0, 1], each fitted into a 256-px square) in rows of
    ``columns`` -> uint8 RGB."""
    cells = [_tile(label, image) for label, image in tiles]
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % columns)
    return np.concatenate([np.concatenate(cells[r : r + columns], 1) for r in range(0, len(cells), columns)], 0)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    return value


def write_json(path: Path, report: dict) -> None:
    path.write_text(json.dumps(_jsonable(report), indent=2) + "\n")


@contextlib.contextmanager
def atomic_folder(final: Path):
    """Yields a temporary folder beside ``final`` that replaces ``final`` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
