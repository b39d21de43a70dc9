"""CMU Multi-PIE, Setting 1 of TP-GAN (thesis sec. 3.4.3), as a TFDS dataset built from the user's copy.

Builds ``faceflax_multipie`` (configs ``"128"`` and ``"256"``) from Multi-PIE's session 1 multiview images
(https://www.cs.cmu.edu/afs/cs/project/PIE/MultiPie/Multi-Pie/Home.html; licensed from CMU). Setting 1 (Huang et
al., TP-GAN, ICCV 2017, as the thesis uses it): session 1 only, 13 poses within +-90 degrees of yaw, 20
illuminations; the first 150 subjects (in increasing ID order) train, the remaining 99 test. Each example is
``{"image": uint8 [R, R, 3] RGB, "subject": int, "camera": "05_1", "yaw": float degrees, "illumination": int,
"id": file name}``. Images (640x480) are cut to their central 480x480 square and resized with ``INTER_AREA``; faces
are aligned afterwards from landmarks (:mod:`faceflax.data.align`).

Expected ``manual_dir`` layout (Multi-PIE's own; other sessions and cameras are ignored)::

    manual_dir/Multi-Pie/data/session01/multiview/
      001/01/05_1/001_01_01_051_00.png ... 001_01_01_051_19.png
      001/01/14_0/001_01_01_140_07.png ...
      ...  ({subject:03d}/{recording:02d}/{camera}/{subject:03d}_01_{recording:02d}_{camera without _}_{illum:02d}.png)
"""

from __future__ import annotations

import os
import re
from typing import ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from faceflax.data.tfds_common import ManualDownloadBuilder, image_feature, prepared_source

CAMERA_YAW = {
    "11_0": -90.0, "12_0": -75.0, "09_0": -60.0, "08_0": -45.0, "13_0": -30.0, "14_0": -15.0, "05_1": 0.0,
    "05_0": 15.0, "04_1": 30.0, "19_0": 45.0, "20_0": 60.0, "01_0": 75.0, "24_0": 90.0,
}  # fmt: skip
"""The 13 cameras of Setting 1 and their yaw (degrees), as TP-GAN and the thesis list them."""
NUM_TRAIN_SUBJECTS = 150
RESOLUTIONS = (128, 256)
_ROOT = os.path.join("Multi-Pie", "data", "session01", "multiview")
_NAME = re.compile(r"(\d{3})_01_(\d{2})_(\d{3})_(\d{2})\.png")
_INSTRUCTIONS = f"""\
Multi-PIE is licensed from CMU (https://www.cs.cmu.edu/afs/cs/project/PIE/MultiPie/Multi-Pie/Home.html).
Expected manual_dir layout (session 1 multiview images):
  manual_dir/{_ROOT}/{{subject:03d}}/{{recording:02d}}/{{camera, e.g. 05_1}}/
      {{subject:03d}}_01_{{recording:02d}}_{{camera without '_', e.g. 051}}_{{illumination:02d}}.png
Pass it as load_multipie(..., manual_dir=...)."""


def _check_manual_dir(manual_dir) -> None:
    if manual_dir is None or not os.path.isdir(manual_dir):
        raise ValueError(f"Multi-PIE is not prepared and manual_dir {manual_dir} is not a folder.\n{_INSTRUCTIONS}")


def find_images(manual_dir: str) -> list[tuple[int, str, int, str]]:
    """``(subject, camera, illumination, path)`` of every Setting-1 image under ``manual_dir``, sorted.

    Raises:
      ValueError: the session-1 folder is missing, holds no Setting-1 image, or a file is misnamed.
    """
    root = os.path.join(manual_dir, _ROOT)
    if not os.path.isdir(root):
        raise ValueError(f"Multi-PIE manual_dir {manual_dir} lacks {_ROOT}/.\n{_INSTRUCTIONS}")
    found = []
    for subject in sorted(os.listdir(root)):
        for recording in sorted(os.listdir(os.path.join(root, subject))):
            for camera in sorted(os.listdir(os.path.join(root, subject, recording))):
                if camera not in CAMERA_YAW:
                    continue
                folder = os.path.join(root, subject, recording, camera)
                for name in sorted(os.listdir(folder)):
                    match = _NAME.fullmatch(name)
                    if not match or match[1] != subject or match[2] != recording or match[3] != camera.replace("_", ""):
                        raise ValueError(f"Multi-PIE file {os.path.join(folder, name)} is misnamed.\n{_INSTRUCTIONS}")
                    found.append((int(subject), camera, int(match[4]), os.path.join(folder, name)))
    if not found:
        raise ValueError(f"Multi-PIE folder {root} holds no image of the 13 Setting-1 cameras.\n{_INSTRUCTIONS}")
    return found


class MultiPIE(ManualDownloadBuilder):
    """Multi-PIE Setting 1 (module docstring), R = 128 | 256."""

    name = "faceflax_multipie"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=str(r), description=f"central square at {r}x{r}") for r in RESOLUTIONS
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        r = self.resolution
        features = {
            "image": image_feature(r),
            "subject": tfds.features.Tensor(shape=(), dtype=np.int32),
            "camera": tfds.features.Text(),
            "yaw": tfds.features.Tensor(shape=(), dtype=np.float32),
            "illumination": tfds.features.Tensor(shape=(), dtype=np.int32),
            "id": tfds.features.Text(),
        }
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self.manual_path(dl_manager)
        images = find_images(manual_dir)
        train_subjects = set(sorted({s for s, *_ in images})[:NUM_TRAIN_SUBJECTS])
        splits = {
            "train": [x for x in images if x[0] in train_subjects],
            "test": [x for x in images if x[0] not in train_subjects],
        }  # a partial copy (150 subjects or fewer) has no test split
        return {name: self._generate_examples(examples) for name, examples in splits.items() if examples}

    def _generate_examples(self, images):
        r = self.resolution
        for subject, camera, illumination, path in images:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"Multi-PIE image {path} is unreadable.\n{_INSTRUCTIONS}")
            h, w = bgr.shape[:2]
            side = min(h, w)
            square = bgr[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
            image = cv2.resize(cv2.cvtColor(square, cv2.COLOR_BGR2RGB), (r, r), interpolation=cv2.INTER_AREA)
            name = os.path.basename(path)
            yield (
                name,
                {
                    "image": image,
                    "subject": subject,
                    "camera": camera,
                    "yaw": CAMERA_YAW[camera],
                    "illumination": illumination,
                    "id": name,
                },
            )


def load_multipie(split: str, resolution: int, data_dir: str, manual_dir: str | None = None):
    """Prepares Multi-PIE Setting 1 in ``data_dir`` if needed; returns TFDS's random-access source of examples.

    Raises:
      ValueError: bad split or resolution, or an unusable ``manual_dir`` (the message gives the layout).
    """
    if split not in ("train", "test"):
        raise ValueError(f"Unknown Multi-PIE split {split!r}; valid splits: train, test.")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"Unsupported Multi-PIE resolution {resolution!r}; valid: {', '.join(map(str, RESOLUTIONS))}.")
    builder = MultiPIE(config=str(resolution), data_dir=data_dir)
    return prepared_source(builder, split, manual_dir, _check_manual_dir)
