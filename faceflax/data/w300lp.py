"""300W-LP (300W across Large Poses, synthesised profile views with 68 landmarks and pose) as a TFDS dataset.

Builds the TFDS dataset ``faceflax_w300lp`` from the user's download of 300W-LP (official page
http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm, "300W-LP.zip"; Zhu et al., CVPR 2016). One
split, ``train`` (300W-LP is the standard training set for AFLW2000-3D evaluation). Each example is::

    {"image": uint8 [450, 450, 3] RGB, "landmarks": float32 [68, 2] (x, y),
     "pose": float32 [3] (pitch, yaw, roll) radians, "subset": "AFW" | ... | "LFPW_Flip", "id": "AFW/AFW_134212_1_0"}

(strings read back as ``bytes``). ``load_w300lp`` prepares it on first use and returns TFDS's random-access source.

Expected ``manual_dir`` layout (the unzipped archive)::

    manual_dir/
      300W_LP/
        AFW/AFW_134212_1_0.jpg  AFW/AFW_134212_1_0.mat  ...   (450x450 JPEGs; {name}_{k}: k-th synthesised pose)
        HELEN/  IBUG/  LFPW/                                   (same)
        AFW_Flip/  HELEN_Flip/  IBUG_Flip/  LFPW_Flip/         (the horizontally flipped images, same naming)
        landmarks/AFW/AFW_134212_1_0_pts.mat  ...             (pts_2d [68, 2]; also pts_3d) for AFW, HELEN, IBUG,
                                                               LFPW (there are no landmarks/*_Flip folders)

Each image ``.mat`` holds the 3DMM fit (``Pose_Para`` [1, 7], ``Shape_Para``, ``Exp_Para``, ...) and ``pt2d``
[2, 68]; unlike AFLW2000-3D there is no ``pt3d_68``, so there are no 3D landmarks. ``landmarks`` are ``pts_2d``
from ``landmarks/`` for the unflipped subsets and the image ``.mat``'s ``pt2d`` (transposed) for the flipped ones,
which have no ``landmarks/`` files; ``pose`` comes from ``Pose_Para`` as in ``faceflax.data.aflw2000``. All coordinates are Matlab 1-based pixels made 0-based by
subtracting 1 from x and y (see ``faceflax.data.aflw2000``). TFDS runs without TensorFlow as described in
``faceflax.data.celeba``.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from faceflax.data.aflw2000 import NUM_LANDMARKS, landmark_features, read_image, read_pose
from faceflax.data.tfds_common import ManualDownloadBuilder, prepared_source

SPLITS = ("train",)
BASE_SUBSETS = ("AFW", "HELEN", "IBUG", "LFPW")
SUBSETS = BASE_SUBSETS + tuple(f"{s}_Flip" for s in BASE_SUBSETS)

_ROOT = "300W_LP"
_LANDMARK_DIR = "landmarks"

_INSTRUCTIONS = f"""\
Download 300W-LP.zip from the official 3DDFA page http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm
and unzip it into manual_dir. Expected manual_dir layout:
  manual_dir/{_ROOT}/{{{",".join(SUBSETS)}}}/{{name}}_{{k}}.jpg and {{name}}_{{k}}.mat
  manual_dir/{_ROOT}/{_LANDMARK_DIR}/{{{",".join(BASE_SUBSETS)}}}/{{name}}_{{k}}_pts.mat (field pts_2d [68, 2])
Pass it as load_w300lp(..., manual_dir=...) or
download_config=tfds.download.DownloadConfig(manual_dir=...)."""


def _check_manual_dir(manual_dir: str | os.PathLike | None) -> None:
    """Raises ValueError spelling out the expected layout if ``manual_dir`` is unusable."""
    if manual_dir is None:
        raise ValueError(f"300W-LP is not prepared in data_dir and no manual_dir was given.\n{_INSTRUCTIONS}")
    if not os.path.isdir(manual_dir):
        raise ValueError(f"300W-LP manual_dir {manual_dir} does not exist.\n{_INSTRUCTIONS}")
    folders = [os.path.join(_ROOT, s) for s in SUBSETS] + [os.path.join(_ROOT, _LANDMARK_DIR, s) for s in BASE_SUBSETS]
    for folder in folders:
        if not os.path.isdir(os.path.join(manual_dir, folder)):
            raise ValueError(f"300W-LP manual_dir {manual_dir} lacks {folder}/.\n{_INSTRUCTIONS}")


def read_landmarks(path: str, field: str, transpose: bool) -> np.ndarray:
    """float32 [68, 2] 0-based (x, y) from a 300W-LP ``.mat`` field ([68, 2], or [2, 68] with ``transpose``)."""
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, scipy.io.matlab.MatReadError) as e:
        raise ValueError(f"{path} is not a readable .mat file: {e}") from e
    shape = (2, NUM_LANDMARKS) if transpose else (NUM_LANDMARKS, 2)
    if field not in mat:
        raise ValueError(f"{path} lacks the field {field} {list(shape)}.")
    points = np.asarray(mat[field], np.float64)
    if points.shape != shape:
        raise ValueError(f"{path}: field {field} has shape {list(points.shape)}, expected {list(shape)}.")
    return ((points.T if transpose else points) - 1.0).astype(np.float32)


class W300LP(ManualDownloadBuilder):
    """300W-LP, ``{"image", "landmarks", "pose", "subset", "id"}``, split ``train``."""

    name = "faceflax_w300lp"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        features = {**landmark_features(), "subset": tfds.features.Text(), "id": tfds.features.Text()}
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self.manual_path(dl_manager)
        _check_manual_dir(manual_dir)
        root = os.path.join(manual_dir, _ROOT)
        items = []
        for subset in SUBSETS:
            folder = os.path.join(root, subset)
            for name in sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".jpg")):
                if not os.path.isfile(os.path.join(folder, f"{name}.mat")):
                    raise ValueError(f"300W-LP: {name}.jpg in {folder} has no {name}.mat.\n{_INSTRUCTIONS}")
                items.append((subset, name))
        if not items:
            raise ValueError(f"300W-LP folder {root} holds no .jpg images in {', '.join(SUBSETS)}.\n{_INSTRUCTIONS}")
        return {"train": self._generate_examples(root, items)}

    def _generate_examples(self, root: str, items: list[tuple[str, str]]):
        for subset, name in items:
            stem = os.path.join(root, subset, name)
            try:
                annotation = {"pose": read_pose(f"{stem}.mat")}
                if subset in BASE_SUBSETS:
                    landmark_path = os.path.join(root, _LANDMARK_DIR, subset, f"{name}_pts.mat")
                    if not os.path.isfile(landmark_path):
                        raise ValueError(f"{landmark_path} (landmarks of {stem}.jpg) is missing.")
                    annotation["landmarks"] = read_landmarks(landmark_path, "pts_2d", transpose=False)
                else:
                    annotation["landmarks"] = read_landmarks(f"{stem}.mat", "pt2d", transpose=True)
                image = read_image(f"{stem}.jpg")
            except ValueError as e:
                raise ValueError(f"300W-LP: {e}\n{_INSTRUCTIONS}") from e
            key = f"{subset}/{name}"
            yield key, {"image": image, **annotation, "subset": subset, "id": key}


def load_w300lp(split: str, data_dir: str, manual_dir: str | None = None):
    """Prepares 300W-LP in ``data_dir`` if needed and returns a random-access source of examples.

    Args:
      split: "train" (the only split).
      data_dir: TFDS data directory that holds (or will hold) the prepared dataset.
      manual_dir: the download, laid out as in the module docstring; only needed while the dataset is not yet
        prepared in ``data_dir``.

    Returns:
      TFDS's array_record data source of dicts as in the module docstring.

    Raises:
      ValueError: bad split, unusable ``manual_dir``, or a missing or malformed image or annotation.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown 300W-LP split {split!r}; valid splits: {', '.join(SPLITS)}.")
    builder = W300LP(data_dir=data_dir)
    return prepared_source(builder, split, manual_dir, _check_manual_dir)
