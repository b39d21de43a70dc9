"""AFLW2000-3D (large-pose faces with 68 3D-fitted landmarks and head pose) as a TFDS dataset.

Builds the TFDS dataset ``faceflax_aflw2000`` from the user's download of AFLW2000-3D (official page
http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm, "AFLW2000-3D.zip"; Zhu et al., "Face Alignment
Across Large Poses: A 3D Solution", CVPR 2016). One split, ``test`` (the 2,000 images are an evaluation set). Each
example is::

    {"image": uint8 [450, 450, 3] RGB, "landmarks": float32 [68, 2] (x, y), "landmarks_3d": float32 [68, 3] (x, y, z),
     "pose": float32 [3] (pitch, yaw, roll) radians, "id": "image00002"}

(``id`` reads back as ``bytes``). ``load_aflw2000`` prepares it on first use and returns TFDS's random-access source.

Expected ``manual_dir`` layout (the unzipped archive)::

    manual_dir/
      AFLW2000/
        image00002.jpg  image00002.mat  ...  image04375.jpg  image04375.mat   (450x450 JPEGs)

Each ``.mat`` (``scipy.io.loadmat``) holds ``pt3d_68`` [3, 68] (rows x, y, z), ``Pose_Para`` [1, 7] (pitch, yaw,
roll in radians, tx, ty, tz, scale), ``Shape_Para`` [199, 1], ``Exp_Para`` [29, 1] and ``roi``; only ``pt3d_68`` and
``Pose_Para`` are read.

Coordinates: ``pt3d_68`` was produced by the 3DDFA Matlab fitting code and is in Matlab's 1-based pixel convention
(pixel centres at 1..450, y already flipped to point down): 3DDFA's Matlab-derived code flips y as ``size + 1 - y``,
and the authors' Python port (3DDFA_V2, ``similar_transform``) instead subtracts 1 from x "for Python compatibility"
and flips y as ``size - y``, i.e. shifts both by one pixel to 0-based. So
``landmarks = pt3d_68[:2].T - 1`` in 0-based pixel coordinates (pixel ``(col, row)`` has centre ``(col, row)``, as
``cv2`` and numpy indexing use), and ``landmarks_3d`` is ``pt3d_68.T`` with the same shift on x and y; z, a depth and
not a pixel index, is kept as stored. TFDS runs without TensorFlow as described in ``faceflax.data.celeba``.
"""

from __future__ import annotations

import os
from typing import ClassVar

import cv2
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from faceflax.data.tfds_common import ManualDownloadBuilder, image_feature, prepared_source

SPLITS = ("test",)
IMAGE_SIZE = 450
NUM_LANDMARKS = 68

_IMAGE_DIR = "AFLW2000"

_INSTRUCTIONS = f"""\
Download AFLW2000-3D.zip from the official 3DDFA page http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm
and unzip it into manual_dir. Expected manual_dir layout:
  manual_dir/{_IMAGE_DIR}/image00002.jpg, manual_dir/{_IMAGE_DIR}/image00002.mat, ... (a .mat next to every .jpg;
  fields pt3d_68 [3, 68] and Pose_Para [1, 7])
Pass it as load_aflw2000(..., manual_dir=...) or
download_config=tfds.download.DownloadConfig(manual_dir=...)."""


def _check_manual_dir(manual_dir: str | os.PathLike | None) -> None:
    """Raises ValueError spelling out the expected layout if ``manual_dir`` is unusable."""
    if manual_dir is None:
        problem = "AFLW2000-3D is not prepared in data_dir and no manual_dir was given."
    elif not os.path.isdir(manual_dir):
        problem = f"AFLW2000-3D manual_dir {manual_dir} does not exist."
    elif not os.path.isdir(os.path.join(manual_dir, _IMAGE_DIR)):
        problem = f"AFLW2000-3D manual_dir {manual_dir} lacks {_IMAGE_DIR}/."
    else:
        return
    raise ValueError(f"{problem}\n{_INSTRUCTIONS}")


def _field(mat: dict, name: str, shape: tuple[int, ...], path: str) -> np.ndarray:
    if name not in mat:
        raise ValueError(f"{path} lacks the field {name} {list(shape)}.")
    value = np.asarray(mat[name], np.float64)
    if value.shape != shape:
        raise ValueError(f"{path}: field {name} has shape {list(value.shape)}, expected {list(shape)}.")
    return value


def read_annotation(path: str) -> dict[str, np.ndarray]:
    """Reads a 3DDFA ``.mat`` annotation (AFLW2000-3D, 300W-LP) into 0-based landmarks and pose.

    Returns:
      {"landmarks_3d": float32 [68, 3] (x - 1, y - 1, z), "landmarks": its first two columns,
       "pose": float32 [3] (pitch, yaw, roll) radians}.

    Raises:
      ValueError: the file is unreadable or lacks ``pt3d_68`` [3, 68] or ``Pose_Para`` [1, 7].
    """
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, scipy.io.matlab.MatReadError) as e:
        raise ValueError(f"{path} is not a readable .mat file: {e}") from e
    pt3d = _field(mat, "pt3d_68", (3, NUM_LANDMARKS), path).T.copy()
    pt3d[:, :2] -= 1.0  # Matlab 1-based pixels -> 0-based (see the module docstring).
    pose = read_pose(path, mat)
    return {
        "landmarks_3d": pt3d.astype(np.float32),
        "landmarks": pt3d[:, :2].astype(np.float32),
        "pose": pose.astype(np.float32),
    }


def read_pose(path: str, mat: dict | None = None) -> np.ndarray:
    """``Pose_Para``'s (pitch, yaw, roll) radians, float32 [3], of a 3DDFA ``.mat`` (AFLW2000-3D, 300W-LP)."""
    if mat is None:
        try:
            mat = scipy.io.loadmat(path)
        except (OSError, ValueError, scipy.io.matlab.MatReadError) as e:
            raise ValueError(f"{path} is not a readable .mat file: {e}") from e
    return _field(mat, "Pose_Para", (1, 7), path)[0, :3].astype(np.float32)


def read_image(path: str) -> np.ndarray:
    """Reads a 450x450 JPEG as uint8 RGB; ValueError if it is missing, unreadable or another size."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"image {path} is missing or unreadable.")
    if bgr.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"image {path} is {bgr.shape[1]}x{bgr.shape[0]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def landmark_features() -> dict[str, tfds.features.Tensor]:
    """The image / landmark / pose features shared with 300W-LP (which has no ``landmarks_3d``)."""
    return {
        "image": image_feature(IMAGE_SIZE),
        "landmarks": tfds.features.Tensor(shape=(NUM_LANDMARKS, 2), dtype=np.float32),
        "pose": tfds.features.Tensor(shape=(3,), dtype=np.float32),
    }


class AFLW2000(ManualDownloadBuilder):
    """AFLW2000-3D, ``{"image", "landmarks", "landmarks_3d", "pose", "id"}``, split ``test``."""

    name = "faceflax_aflw2000"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    **landmark_features(),
                    "landmarks_3d": tfds.features.Tensor(shape=(NUM_LANDMARKS, 3), dtype=np.float32),
                    "id": tfds.features.Text(),
                }
            ),
            homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self.manual_path(dl_manager)
        _check_manual_dir(manual_dir)
        image_dir = os.path.join(manual_dir, _IMAGE_DIR)
        names = sorted(n[:-4] for n in os.listdir(image_dir) if n.endswith(".jpg"))
        if not names:
            raise ValueError(f"AFLW2000-3D folder {image_dir} holds no .jpg images.\n{_INSTRUCTIONS}")
        missing = [n for n in names if not os.path.isfile(os.path.join(image_dir, f"{n}.mat"))]
        if missing:
            raise ValueError(f"AFLW2000-3D: {missing[0]}.jpg in {image_dir} has no {missing[0]}.mat.\n{_INSTRUCTIONS}")
        return {"test": self._generate_examples(image_dir, names)}

    def _generate_examples(self, image_dir: str, names: list[str]):
        for name in names:
            try:
                annotation = read_annotation(os.path.join(image_dir, f"{name}.mat"))
                image = read_image(os.path.join(image_dir, f"{name}.jpg"))
            except ValueError as e:
                raise ValueError(f"AFLW2000-3D: {e}\n{_INSTRUCTIONS}") from e
            yield name, {"image": image, **annotation, "id": name}


def load_aflw2000(split: str, data_dir: str, manual_dir: str | None = None):
    """Prepares AFLW2000-3D in ``data_dir`` if needed and returns a random-access source of examples.

    Args:
      split: "test" (the only split).
      data_dir: TFDS data directory that holds (or will hold) the prepared dataset.
      manual_dir: the download, laid out as in the module docstring; only needed while the dataset is not yet
        prepared in ``data_dir``.

    Returns:
      TFDS's array_record data source of dicts as in the module docstring.

    Raises:
      ValueError: bad split, unusable ``manual_dir``, or a missing or malformed image or annotation.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown AFLW2000-3D split {split!r}; valid splits: {', '.join(SPLITS)}.")
    builder = AFLW2000(data_dir=data_dir)
    return prepared_source(builder, split, manual_dir, _check_manual_dir)
