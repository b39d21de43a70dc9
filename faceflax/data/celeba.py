"""CelebA aligned face crops as a TFDS dataset, built from the user's manual download.

Builds the TFDS dataset ``faceflax_celeba`` (configs ``"64"`` and ``"128"``, e.g.
``tfds.builder("faceflax_celeba/64")`` once this module is imported) from the official CelebA
"Align&Cropped Images" release, with the official train / validation / test splits of
``list_eval_partition.txt``. Each example is ``{"image": uint8 [R, R, 3] RGB, "id": "000001.jpg"}``
(``id`` reads back as ``bytes``). ``load_celeba`` prepares it on first use and returns a
random-access source of images.

Expected ``manual_dir`` layout (both items from the official CelebA page,
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html: "Align&Cropped Images" -> unzip
``img_align_celeba.zip``; "Eval partition" -> ``list_eval_partition.txt``)::

    manual_dir/
      img_align_celeba/000001.jpg ... 202599.jpg   (178 wide x 218 high JPEGs)
      list_eval_partition.txt                      (lines "000001.jpg 0"; 0=train,
                                                    1=validation, 2=test)

Crop rule: the centred 140x140 square of the 218x178 (HxW) image, rows ``39:179`` and columns
``19:159`` (0-based, end exclusive), then ``cv2.resize(crop, (R, R),
interpolation=cv2.INTER_AREA)``. JPEGs are decoded with ``cv2.imread`` and converted BGR -> RGB.

TFDS without TensorFlow (tensorflow-datasets 4.9.10 + array-record, no ``tensorflow``):

* features are numpy-only: ``tfds.features.Tensor(..., encoding="zlib")`` and
  ``tfds.features.Text`` (``tfds.features.Image`` needs TensorFlow to encode);
* the file format is ``array_record`` (the builder's default here; TFDS's default, tfrecord,
  cannot be read without TensorFlow) and reading goes through ``builder.as_data_source()``,
  never ``as_dataset()``;
* ``DatasetBuilder.code_path`` unconditionally touches the ``importlib_resources`` backport,
  which TFDS only declares for Python < 3.9, so on 3.11 ``download_and_prepare`` fails with
  ``ModuleNotFoundError: importlib_resources``; ``faceflax.data.tfds_common.ManualDownloadBuilder`` overrides ``code_path`` to avoid it.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import tensorflow_datasets as tfds

from faceflax.data.tfds_common import ManualDownloadBuilder, image_feature, prepared_source

SPLITS = ("train", "validation", "test")
RESOLUTIONS = (64, 128)
SOURCE_SHAPE = (218, 178)  # (height, width) of an aligned CelebA JPEG.
CROP_ROWS = (39, 179)
CROP_COLS = (19, 159)

_IMAGE_DIR = "img_align_celeba"
_PARTITION_FILE = "list_eval_partition.txt"
_PARTITION_TO_SPLIT = {"0": "train", "1": "validation", "2": "test"}

_INSTRUCTIONS = f"""\
Download CelebA from the official page https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html:
"Align&Cropped Images" (img_align_celeba.zip, unzipped) and "Eval partition" ({_PARTITION_FILE}).
Expected manual_dir layout:
  manual_dir/{_IMAGE_DIR}/000001.jpg ... 202599.jpg
  manual_dir/{_PARTITION_FILE}
Pass it as load_celeba(..., manual_dir=...) or
download_config=tfds.download.DownloadConfig(manual_dir=...)."""


def _check_manual_dir(manual_dir: str | os.PathLike | None) -> None:
    """Raises ValueError spelling out the expected layout if ``manual_dir`` is unusable."""
    if manual_dir is None:
        problem = "CelebA is not prepared in data_dir and no manual_dir was given."
    elif not os.path.isdir(manual_dir):
        problem = f"CelebA manual_dir {manual_dir} does not exist."
    elif not os.path.isdir(os.path.join(manual_dir, _IMAGE_DIR)):
        problem = f"CelebA manual_dir {manual_dir} lacks {_IMAGE_DIR}/."
    elif not os.path.isfile(os.path.join(manual_dir, _PARTITION_FILE)):
        problem = f"CelebA manual_dir {manual_dir} lacks {_PARTITION_FILE}."
    else:
        return
    raise ValueError(f"{problem}\n{_INSTRUCTIONS}")


def crop_and_resize(image: np.ndarray, resolution: int) -> np.ndarray:
    """Applies the documented centre crop and INTER_AREA resize.

    Args:
      image: uint8 [218, 178, C] aligned CelebA image (any channel order).
      resolution: output side length R.

    Returns:
      uint8 [R, R, C] image in the input's channel order.
    """
    if image.shape[:2] != SOURCE_SHAPE:
        raise ValueError(
            f"expected a {SOURCE_SHAPE[0]}x{SOURCE_SHAPE[1]} (HxW) aligned CelebA image, got shape {image.shape}"
        )
    crop = image[CROP_ROWS[0] : CROP_ROWS[1], CROP_COLS[0] : CROP_COLS[1]]
    return cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA)


class CelebA(ManualDownloadBuilder):
    """Aligned CelebA centre crops, ``{"image": uint8 [R, R, 3] RGB, "id": str}``, R = 64 | 128."""

    name = "faceflax_celeba"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=str(r), description=f"{r}x{r} RGB centre crops.") for r in RESOLUTIONS
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
            homepage="https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self.manual_path(dl_manager)
        _check_manual_dir(manual_dir)
        names = {split: [] for split in SPLITS}
        with open(os.path.join(manual_dir, _PARTITION_FILE)) as f:
            for line_no, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or fields[1] not in _PARTITION_TO_SPLIT:
                    raise ValueError(f'{_PARTITION_FILE}:{line_no}: expected "<name>.jpg <0|1|2>", got {line!r}.')
                names[_PARTITION_TO_SPLIT[fields[1]]].append(fields[0])
        image_dir = os.path.join(manual_dir, _IMAGE_DIR)
        return {split: self._generate_examples(image_dir, names[split]) for split in SPLITS}

    def _generate_examples(self, image_dir: str, names: list[str]):
        for name in names:
            path = os.path.join(image_dir, name)
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(
                    f"CelebA image {path} (listed in {_PARTITION_FILE}) is missing or unreadable; "
                    f"re-extract img_align_celeba.zip.\n{_INSTRUCTIONS}"
                )
            try:
                image = crop_and_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.resolution)
            except ValueError as e:
                raise ValueError(f"CelebA image {path}: {e}.\n{_INSTRUCTIONS}") from e
            yield name, {"image": image, "id": name}


class CelebASource:
    """Random-access view of one prepared CelebA split that yields only the images.

    ``len(source)`` is the split size; ``source[i]`` is a uint8 [R, R, 3] RGB array. The order is
    TFDS's fixed (key-hashed) order, not the partition file's.
    """

    def __init__(self, data_source):
        self._source = data_source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self._source[index]["image"], dtype=np.uint8)


def load_celeba(split: str, resolution: int, data_dir: str, manual_dir: str | None = None) -> CelebASource:
    """Prepares CelebA in ``data_dir`` if needed and returns a random-access image source.

    Args:
      split: "train", "validation" or "test" (the official partition).
      resolution: 64 or 128.
      data_dir: TFDS data directory that holds (or will hold) the prepared dataset.
      manual_dir: the CelebA download, laid out as in the module docstring; only needed
        while the dataset is not yet prepared in ``data_dir``.

    Returns:
      A ``CelebASource``: ``len()`` is the split size and ``source[i]`` a uint8
      [resolution, resolution, 3] RGB image.

    Raises:
      ValueError: bad split or resolution, unusable ``manual_dir``, or an image listed in the
        partition file that is missing or unreadable.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown CelebA split {split!r}; valid splits: {', '.join(SPLITS)}.")
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"Unsupported CelebA resolution {resolution!r}; valid resolutions: {', '.join(map(str, RESOLUTIONS))}."
        )
    builder = CelebA(config=str(resolution), data_dir=data_dir)
    return CelebASource(prepared_source(builder, split, manual_dir, _check_manual_dir))
