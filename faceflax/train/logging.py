"""Run outputs a person reads: JSONL metrics and PNG image grids, written atomically."""

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np


class MetricsLog:
    """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``.

    On resume from step ``start_step`` it drops lines of later steps, written by a run that was
    killed after its last checkpoint, so every step appears once.
    """

    def __init__(self, workdir: str | os.PathLike, start_step: int):
        self.path = Path(workdir) / "metrics.jsonl"
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= start_step
            ]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept))
            os.replace(tmp, self.path)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The records of ``workdir/metrics.jsonl`` in order."""
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` images in [0, 1] into one ``[H', W', C]`` uint8 image."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected [N, H, W, C] images, got shape {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinity")
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = image
    return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes an RGB (or grey) uint8 image as PNG through a temporary file and a rename."""
    path = Path(path)
    bgr = image[..., ::-1] if image.ndim == 3 and image.shape[-1] == 3 else image
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"could not encode {path} as PNG")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(encoded.tobytes())
    os.replace(tmp, path)
