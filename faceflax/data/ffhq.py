"""FFHQ (Flickr-Faces-HQ) as a TFDS dataset, built from the user's manual download.

Builds the TFDS dataset ``faceflax_ffhq`` (configs ``"256"`` and ``"1024"``) from the official FFHQ release
(https://github.com/NVlabs/ffhq-dataset, "images1024x1024", 70,000 aligned 1024x1024 PNGs). Each example is
``{"image": uint8 [R, R, 3] RGB, "id": "00000.png"}`` (``id`` reads back as ``bytes``); images are resized with
``cv2.resize(..., interpolation=cv2.INTER_AREA)`` (the 1024 config keeps the official pixels).
``load_ffhq`` prepares it on first use and returns TFDS's random-access source of these dicts.

Expected ``manual_dir`` layout (the official one, folders of 1000 images; a flat folder of the same PNGs, as some
mirrors ship it, is accepted too; other files such as ``LICENSE.txt`` are ignored)::

    manual_dir/
      images1024x1024/
        00000/00000.png ... 00999.png
        01000/01000.png ... 01999.png
        ...
        69000/69000.png ... 69999.png

Splits: FFHQ has no official test set; StyleGAN trains on all 70,000 images (``split="all"`` in ``load_ffhq``, i.e.
TFDS's ``"train+test"``). The builder stores the split of the official metadata ``ffhq-dataset-v2.json``, whose
``category`` is "training" for images 00000-59999 and "validation" for 60000-69999: ``train`` = the first 60,000
and ``test`` = the last 10,000, the train / test protocol of GAN-inversion and encoder work that evaluates on FFHQ
(e.g. the FFHQ experiments of Alaluf et al., "ReStyle", ICCV 2021). TFDS runs without TensorFlow as described in
``faceflax.data.celeba``.
"""

from __future__ import annotations

import os
import re
from typing import ClassVar

import cv2
import tensorflow_datasets as tfds

from faceflax.data.tfds_common import ManualDownloadBuilder, image_feature, prepared_source

SPLITS = ("train", "test")
LOAD_SPLITS = {"train": "train", "test": "test", "all": "train+test"}
RESOLUTIONS = (256, 1024)
NUM_IMAGES = 70_000
NUM_TRAIN = 60_000
IMAGES_PER_FOLDER = 1000

_IMAGE_DIR = "images1024x1024"
_NAME = re.compile(r"\d{5}\.png")

_INSTRUCTIONS = f"""\
Download FFHQ's "images1024x1024" from the official page https://github.com/NVlabs/ffhq-dataset
(python download_ffhq.py --images). Expected manual_dir layout:
  manual_dir/{_IMAGE_DIR}/00000/00000.png ... manual_dir/{_IMAGE_DIR}/69000/69999.png
  (or flat: manual_dir/{_IMAGE_DIR}/00000.png ... 69999.png)
Pass it as load_ffhq(..., manual_dir=...) or
download_config=tfds.download.DownloadConfig(manual_dir=...)."""


def _check_manual_dir(manual_dir: str | os.PathLike | None) -> None:
    """Raises ValueError spelling out the expected layout if ``manual_dir`` is unusable."""
    if manual_dir is None:
        problem = "FFHQ is not prepared in data_dir and no manual_dir was given."
    elif not os.path.isdir(manual_dir):
        problem = f"FFHQ manual_dir {manual_dir} does not exist."
    elif not os.path.isdir(os.path.join(manual_dir, _IMAGE_DIR)):
        problem = f"FFHQ manual_dir {manual_dir} lacks {_IMAGE_DIR}/."
    else:
        return
    raise ValueError(f"{problem}\n{_INSTRUCTIONS}")


def find_images(image_dir: str) -> dict[int, str]:
    """Image index -> path of every FFHQ PNG under ``image_dir`` (official folders of 1000, or flat).

    Raises:
      ValueError: no PNGs, a PNG not named 00000.png..69999.png, one in the wrong folder, or a duplicate index.
    """
    paths = {}
    for entry in sorted(os.listdir(image_dir)):
        full = os.path.join(image_dir, entry)
        if os.path.isdir(full):
            candidates = [(entry, name, os.path.join(full, name)) for name in sorted(os.listdir(full))]
        else:
            candidates = [(None, entry, full)]
        for folder, name, path in candidates:
            if not name.endswith(".png"):
                continue
            if not _NAME.fullmatch(name) or int(name[:5]) >= NUM_IMAGES:
                raise ValueError(f"FFHQ image {path}: expected a name 00000.png ... 69999.png.\n{_INSTRUCTIONS}")
            idx = int(name[:5])
            expected_folder = f"{idx // IMAGES_PER_FOLDER * IMAGES_PER_FOLDER:05d}"
            if folder is not None and folder != expected_folder:
                raise ValueError(f"FFHQ image {path} belongs in {_IMAGE_DIR}/{expected_folder}/.\n{_INSTRUCTIONS}")
            if idx in paths:
                raise ValueError(f"FFHQ image {name} appears twice: {paths[idx]} and {path}.\n{_INSTRUCTIONS}")
            paths[idx] = path
    if not paths:
        raise ValueError(f"FFHQ folder {image_dir} holds no PNG images.\n{_INSTRUCTIONS}")
    return paths


class FFHQ(ManualDownloadBuilder):
    """FFHQ aligned faces, ``{"image": uint8 [R, R, 3] RGB, "id": str}``, R = 256 | 1024."""

    name = "faceflax_ffhq"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=str(r), description=f"{r}x{r} RGB images (INTER_AREA).") for r in RESOLUTIONS
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        r = self.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": image_feature(r),
                    "id": tfds.features.Text(),
                }
            ),
            homepage="https://github.com/NVlabs/ffhq-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self.manual_path(dl_manager)
        _check_manual_dir(manual_dir)
        paths = find_images(os.path.join(manual_dir, _IMAGE_DIR))
        train = {i: p for i, p in paths.items() if i < NUM_TRAIN}
        test = {i: p for i, p in paths.items() if i >= NUM_TRAIN}
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, paths: dict[int, str]):
        r = self.resolution
        for idx, path in paths.items():
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"FFHQ image {path} is unreadable.\n{_INSTRUCTIONS}")
            image = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (r, r), interpolation=cv2.INTER_AREA)
            yield idx, {"image": image, "id": f"{idx:05d}.png"}


def load_ffhq(split: str, resolution: int, data_dir: str, manual_dir: str | None = None):
    """Prepares FFHQ in ``data_dir`` if needed and returns a random-access source of examples.

    Args:
      split: "train" (images 00000-59999), "test" (60000-69999) or "all" (both, the StyleGAN training set).
      resolution: 256 or 1024.
      data_dir: TFDS data directory that holds (or will hold) the prepared dataset.
      manual_dir: the download, laid out as in the module docstring; only needed while the dataset is not yet
        prepared in ``data_dir``.

    Returns:
      TFDS's array_record data source: ``len()`` is the split size and ``source[i]`` a dict with "image" uint8
      [R, R, 3] RGB and "id" (bytes, e.g. b"00042.png").

    Raises:
      ValueError: bad split or resolution, unusable ``manual_dir``, or a misnamed, misplaced or unreadable PNG.
    """
    if split not in LOAD_SPLITS:
        raise ValueError(f"Unknown FFHQ split {split!r}; valid splits: {', '.join(LOAD_SPLITS)}.")
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"Unsupported FFHQ resolution {resolution!r}; valid resolutions: {', '.join(map(str, RESOLUTIONS))}."
        )
    builder = FFHQ(config=str(resolution), data_dir=data_dir)
    return prepared_source(builder, LOAD_SPLITS[split], manual_dir, _check_manual_dir)
