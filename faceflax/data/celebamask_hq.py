"""CelebAMask-HQ (CelebA-HQ images + face-parsing maps) as a TFDS dataset, built from the user's manual download.

Builds the TFDS dataset ``faceflax_celebamask_hq`` (configs ``"256"`` and ``"512"``) from the official
CelebAMask-HQ release (https://github.com/switchablenorms/CelebAMask-HQ, "CelebAMask-HQ.zip"), which holds the
30,000 CelebA-HQ images, the per-part binary masks and the CelebA-HQ -> CelebA index mapping. Each example is
``{"image": uint8 [R, R, 3] RGB, "parsing": uint8 [R, R] class ids, "id": "12.jpg"}`` (``id`` reads back as
``bytes``). ``load_celebamask_hq`` prepares it on first use and returns TFDS's random-access source of these dicts.

Expected ``manual_dir`` layout (``CelebAMask-HQ/`` is the unzipped official archive; ``list_eval_partition.txt``
is CelebA's "Eval partition" file from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)::

    manual_dir/
      CelebAMask-HQ/
        CelebA-HQ-img/0.jpg ... 29999.jpg                  (1024x1024 JPEGs)
        CelebAMask-HQ-mask-anno/{k}/{idx:05d}_{part}.png   (512x512 binary masks; folder k = idx // 2000, 0..14;
                                                            a part absent from a face has no file)
        CelebA-HQ-to-CelebA-mapping.txt                    (header "idx orig_idx orig_file", then lines
                                                            "0 119613 119614.jpg")
      list_eval_partition.txt                              (CelebA: lines "000001.jpg 0"; 0=train,
                                                            1=validation, 2=test)

Splits: the official CelebA partition carried over to CelebA-HQ: image ``idx`` goes to the split of its CelebA file
``orig_file`` in ``list_eval_partition.txt`` (as the CelebAMask-HQ repository's
``face_parsing/Data_preprocessing/g_partition.py`` does; 24,183 train / 2,993 validation / 2,824 test).

Parsing map: the 19 classes of face-parsing.PyTorch (https://github.com/zllrunning/face-parsing.PyTorch,
``prepropess_data.py``), ``CLASSES[i]`` has id ``i`` and 0 is background. Masks are read as grayscale, a pixel
belongs to the part where the mask is > 127, and parts are painted in class-id order, so a later class overwrites
an earlier one (e.g. hair over skin). Images are resized to R with ``cv2.INTER_AREA``, parsing maps with
``cv2.INTER_NEAREST``. TFDS runs without TensorFlow as described in ``faceflax.data.celeba``.
"""

from __future__ import annotations

import os
from typing import ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from faceflax.data.tfds_common import ManualDownloadBuilder, image_feature, prepared_source
from faceflax.models.bisenet import CLASSES  # face-parsing.PyTorch's 19 classes, the parsing maps' labels

SPLITS = ("train", "validation", "test")
RESOLUTIONS = (256, 512)
IMAGES_PER_MASK_FOLDER = 2000

_ROOT = "CelebAMask-HQ"
_IMAGE_DIR = "CelebA-HQ-img"
_MASK_DIR = "CelebAMask-HQ-mask-anno"
_MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
_PARTITION_FILE = "list_eval_partition.txt"
_PARTITION_TO_SPLIT = {"0": "train", "1": "validation", "2": "test"}

_INSTRUCTIONS = f"""\
Download CelebAMask-HQ.zip from the official page https://github.com/switchablenorms/CelebAMask-HQ and unzip it
into manual_dir, and put CelebA's "Eval partition" file ({_PARTITION_FILE}, from
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) next to it. Expected manual_dir layout:
  manual_dir/{_ROOT}/{_IMAGE_DIR}/0.jpg ... 29999.jpg
  manual_dir/{_ROOT}/{_MASK_DIR}/{{0..14}}/{{idx:05d}}_{{part}}.png
  manual_dir/{_ROOT}/{_MAPPING_FILE}
  manual_dir/{_PARTITION_FILE}
Pass it as load_celebamask_hq(..., manual_dir=...) or
download_config=tfds.download.DownloadConfig(manual_dir=...)."""


def _check_manual_dir(manual_dir: str | os.PathLike | None) -> None:
    """Raises ValueError spelling out the expected layout if ``manual_dir`` is unusable."""
    if manual_dir is None:
        raise ValueError(f"CelebAMask-HQ is not prepared in data_dir and no manual_dir was given.\n{_INSTRUCTIONS}")
    if not os.path.isdir(manual_dir):
        raise ValueError(f"CelebAMask-HQ manual_dir {manual_dir} does not exist.\n{_INSTRUCTIONS}")
    required = [
        (os.path.join(_ROOT, _IMAGE_DIR), os.path.isdir),
        (os.path.join(_ROOT, _MASK_DIR), os.path.isdir),
        (os.path.join(_ROOT, _MAPPING_FILE), os.path.isfile),
        (_PARTITION_FILE, os.path.isfile),
    ]
    for relative, exists in required:
        if not exists(os.path.join(manual_dir, relative)):
            suffix = "/" if exists is os.path.isdir else ""
            raise ValueError(f"CelebAMask-HQ manual_dir {manual_dir} lacks {relative}{suffix}.\n{_INSTRUCTIONS}")


def _read_partition(path: str) -> dict[str, str]:
    """CelebA file name -> split name from ``list_eval_partition.txt``."""
    partition = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in _PARTITION_TO_SPLIT:
                raise ValueError(f'{_PARTITION_FILE}:{line_no}: expected "<name>.jpg <0|1|2>", got {line!r}.')
            partition[fields[0]] = _PARTITION_TO_SPLIT[fields[1]]
    return partition


def _read_mapping(path: str) -> list[tuple[int, str]]:
    """(CelebA-HQ index, CelebA file name) pairs from ``CelebA-HQ-to-CelebA-mapping.txt``."""
    pairs = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields or (line_no == 1 and fields[0] == "idx"):
                continue
            if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
                raise ValueError(f'{_MAPPING_FILE}:{line_no}: expected "<idx> <orig_idx> <orig_file>", got {line!r}.')
            pairs.append((int(fields[0]), fields[2]))
    return pairs


def combine_masks(masks: dict[str, np.ndarray]) -> np.ndarray:
    """Paints binary part masks into one parsing map in ``CLASSES`` order (later classes win).

    Args:
      masks: part name (a ``CLASSES`` entry other than "background") -> uint8 [H, W] mask, part where > 127.

    Returns:
      uint8 [H, W] map of class ids (0 where no part is set).
    """
    unknown = set(masks) - set(CLASSES[1:])
    if unknown:
        raise ValueError(f"unknown CelebAMask-HQ parts {sorted(unknown)}; valid parts: {', '.join(CLASSES[1:])}.")
    if not masks:
        raise ValueError("combine_masks needs at least one mask.")
    shapes = {m.shape for m in masks.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"part masks must share one [H, W] shape, got {sorted(shapes)}.")
    parsing = np.zeros(next(iter(shapes)), np.uint8)
    for class_id, part in enumerate(CLASSES):
        if part in masks:
            parsing[masks[part] > 127] = class_id
    return parsing


class CelebAMaskHQ(ManualDownloadBuilder):
    """CelebA-HQ images with face-parsing maps, ``{"image", "parsing", "id"}``, R = 256 | 512."""

    name = "faceflax_celebamask_hq"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=str(r), description=f"{r}x{r} RGB images and parsing maps.") for r in RESOLUTIONS
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        r = self.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": image_feature(r),
                    "parsing": tfds.features.Tensor(shape=(r, r), dtype=np.uint8, encoding="zlib"),
                    "id": tfds.features.Text(),
                }
            ),
            homepage="https://github.com/switchablenorms/CelebAMask-HQ",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self.manual_path(dl_manager)
        _check_manual_dir(manual_dir)
        partition = _read_partition(os.path.join(manual_dir, _PARTITION_FILE))
        indices = {split: [] for split in SPLITS}
        for idx, orig_file in _read_mapping(os.path.join(manual_dir, _ROOT, _MAPPING_FILE)):
            if orig_file not in partition:
                raise ValueError(
                    f"{_MAPPING_FILE}: CelebA-HQ image {idx} maps to {orig_file}, which {_PARTITION_FILE} does not "
                    f"list.\n{_INSTRUCTIONS}"
                )
            indices[partition[orig_file]].append(idx)
        root = os.path.join(manual_dir, _ROOT)
        return {split: self._generate_examples(root, indices[split]) for split in SPLITS}

    def _generate_examples(self, root: str, indices: list[int]):
        r = self.resolution
        for idx in indices:
            path = os.path.join(root, _IMAGE_DIR, f"{idx}.jpg")
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"CelebA-HQ image {path} is missing or unreadable.\n{_INSTRUCTIONS}")
            mask_dir = os.path.join(root, _MASK_DIR, str(idx // IMAGES_PER_MASK_FOLDER))
            if not os.path.isdir(mask_dir):
                raise ValueError(
                    f"CelebAMask-HQ mask folder {mask_dir}/ (for image {idx}) is missing.\n{_INSTRUCTIONS}"
                )
            masks = {}
            for part in CLASSES[1:]:
                mask_path = os.path.join(mask_dir, f"{idx:05d}_{part}.png")
                if os.path.exists(mask_path):
                    mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
                    if mask is None:
                        raise ValueError(f"CelebAMask-HQ mask {mask_path} is unreadable.\n{_INSTRUCTIONS}")
                    masks[part] = mask
            if masks:
                try:
                    parsing = combine_masks(masks)
                except ValueError as e:
                    raise ValueError(f"CelebAMask-HQ masks of image {idx} in {mask_dir}: {e}") from e
            else:
                parsing = np.zeros((r, r), np.uint8)
            image = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (r, r), interpolation=cv2.INTER_AREA)
            parsing = cv2.resize(parsing, (r, r), interpolation=cv2.INTER_NEAREST)
            yield idx, {"image": image, "parsing": parsing, "id": f"{idx}.jpg"}


def load_celebamask_hq(split: str, resolution: int, data_dir: str, manual_dir: str | None = None):
    """Prepares CelebAMask-HQ in ``data_dir`` if needed and returns a random-access source of examples.

    Args:
      split: "train", "validation" or "test" (CelebA's official partition, see the module docstring).
      resolution: 256 or 512.
      data_dir: TFDS data directory that holds (or will hold) the prepared dataset.
      manual_dir: the download, laid out as in the module docstring; only needed while the dataset is not yet
        prepared in ``data_dir``.

    Returns:
      TFDS's array_record data source: ``len()`` is the split size and ``source[i]`` a dict with "image" uint8
      [R, R, 3] RGB, "parsing" uint8 [R, R] (ids into ``CLASSES``) and "id" (bytes, e.g. b"12.jpg").

    Raises:
      ValueError: bad split or resolution, unusable ``manual_dir``, or a listed file missing or malformed.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown CelebAMask-HQ split {split!r}; valid splits: {', '.join(SPLITS)}.")
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"Unsupported CelebAMask-HQ resolution {resolution!r}; "
            f"valid resolutions: {', '.join(map(str, RESOLUTIONS))}."
        )
    builder = CelebAMaskHQ(config=str(resolution), data_dir=data_dir)
    return prepared_source(builder, split, manual_dir, _check_manual_dir)
