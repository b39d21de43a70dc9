"""``faceflax prepare``: per-image pseudo ground truth from the reconstruct pipeline, as a derived dataset.

For every photo (files, folders, globs: :func:`faceflax.reconstruct.run.expand_inputs`), the stages of
:class:`faceflax.reconstruct.pipeline.Reconstructor` give the thesis' training targets (sec. 4.3.1-4.3.2.1,
5.3.4), stored as ``OUT/<name>.npz``:

* ``image`` uint8 ``[S, S, 3]``: the face square the targets refer to; ``landmarks [68, 2]``: the fitted
  landmarks in it (``landmarks_photo``: in the photo's pixels, ``detected``: the input landmarks there);
* ``angles [3]``, ``translation [3]``, ``id_coeffs``, ``exp_coeffs`` (and ``tex_coeffs``, ``gamma`` for albedo
  models): the 3DMM fit;
* ``uv_gt`` uint8 ``[T, T, 3]`` and ``uv_mask`` bool ``[T, T]``: the incomplete UV texture UV_gt and its texels;
* ``uv_bl`` uint8 ``[T, T, 3]``: the Poisson-completed texture (UV_bl);
* ``sampling_map`` float32 ``[T, T, 2]``: S_gt, where each texel lands in ``image`` (x, y in [0, 1]);
* ``face_mask`` bool ``[S, S]``: the landmark face region; ``crop [4]``: ``(x0, y0, side, size)`` of the square.

Each file is written atomically (a temporary name, then a rename), so an interrupted run leaves only complete
files and a rerun skips them (resume). Photos run in ``workers`` processes (default: one per CPU core), each
with its own compiled pipeline (shared through the on-disk compile cache); a progress bar counts them, and
``OUT/failures.json`` lists every photo that failed with its reason. :class:`PreparedFaces` reads the folder back
as a random-access source (``len``, ``[i] -> dict``) for :class:`faceflax.data.loader.GlobalBatches`.
"""

import concurrent.futures
import json
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceflax.reconstruct.run import PhotoInput

_WORKER = {}


def targets(rec) -> dict[str, np.ndarray]:
    """The stored arrays of one :class:`~faceflax.reconstruct.pipeline.Reconstruction` (module docstring)."""
    from faceflax.data.images import to_uint8

    crop = rec.crop
    out = {
        "image": to_uint8(rec.square),
        "landmarks": crop.to_crop(rec.fitted),
        "landmarks_photo": rec.fitted,
        "detected": rec.detected,
        "angles": rec.fit.angles,
        "translation": rec.fit.translation,
        "id_coeffs": rec.fit.id_coeffs,
        "exp_coeffs": rec.fit.exp_coeffs,
        "uv_gt": to_uint8(rec.sampled),
        "uv_mask": rec.visible,
        "uv_bl": to_uint8(rec.completed),
        "sampling_map": rec.sampling_map.astype(np.float32),
        "face_mask": rec.region,
        "crop": np.array([crop.x0, crop.y0, crop.side, crop.size], np.int32),
    }
    if rec.appearance is not None:
        out |= {"tex_coeffs": rec.appearance.tex_coeffs, "gamma": rec.appearance.gamma}
    return {k: np.asarray(v) for k, v in out.items()}


def _start(model_spec: str, uv_size: int) -> None:
    from faceflax.geometry.morphable import load_model
    from faceflax.reconstruct.pipeline import ReconstructOptions, Reconstructor, enable_compilation_cache

    enable_compilation_cache()
    _WORKER["reconstructor"] = Reconstructor(
        load_model(model_spec), ReconstructOptions(uv_size=uv_size, identity=False)
    )


def _one(photo: PhotoInput, out: Path) -> tuple[str, str | None]:
    """Prepare one photo in a worker: ``(label, None)`` or ``(label, error message)``."""
    try:
        rec = _WORKER["reconstructor"](photo.read(), photo.label)
        partial = out / f".{photo.name}.partial.npz"
        np.savez_compressed(partial, **targets(rec))
        os.replace(partial, out / f"{photo.name}.npz")
    except (ValueError, OSError, RuntimeError) as error:
        return photo.label, str(error)
    return photo.label, None


def prepare(
    photos: list[PhotoInput],
    out: str | os.PathLike,
    *,
    model: str = "ict",
    uv_size: int = 256,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Pseudo ground truth for ``photos`` into ``out`` (module docstring). Returns ``{"done", "skipped", "failed"}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in photos if not (out / f"{p.name}.npz").is_file()]
    summary = {"done": 0, "skipped": len(photos) - len(todo), "failed": {}}
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    context = multiprocessing.get_context("spawn")  # JAX does not survive fork
    with concurrent.futures.ProcessPoolExecutor(workers, context, _start, (model, uv_size)) as pool:
        futures = [pool.submit(_one, photo, out) for photo in todo]
        bar = tqdm(concurrent.futures.as_completed(futures), total=len(todo), desc="prepare", unit="photo",
                   disable=not progress, file=sys.stderr)  # fmt: skip
        for future in bar:
            label, error = future.result()
            if error is None:
                summary["done"] += 1
            else:
                summary["failed"][label] = error
    (out / "failures.json").write_text(json.dumps(summary["failed"], indent=2) + "\n")
    return summary


class PreparedFaces:
    """The ``.npz`` files of a :func:`prepare` folder as a random-access source of dicts (sorted by name)."""

    def __init__(self, folder: str | os.PathLike):
        self.paths = sorted(Path(folder).glob("*.npz"))
        self.paths = [p for p in self.paths if not p.name.startswith(".")]  # skip interrupted partial files
        if not self.paths:
            raise ValueError(f"no prepared faces (.npz) in '{folder}': run faceflax prepare PHOTOS --out {folder}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        with np.load(self.paths[index]) as archive:
            return {k: archive[k] for k in archive.files}
