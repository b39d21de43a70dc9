"""What faceflax's TFDS builders share: they read a user's manual download and run without TensorFlow.

Builders write ``array_record`` files (TFDS's default, tfrecord, needs TensorFlow to read) and are read
through ``as_data_source``; ``code_path`` points at the builder's module because TFDS's own lookup needs the
``importlib_resources`` backport, which it only declares for Python < 3.9 (see :mod:`faceflax.data.celeba`).
"""

import os
import sys
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds
from etils import epath


def image_feature(height: int, width: int | None = None) -> tfds.features.Tensor:
    """A uint8 RGB image ``[height, width, 3]`` feature, zlib-compressed (``tfds.features.Image`` needs TensorFlow)."""
    return tfds.features.Tensor(shape=(height, width or height, 3), dtype=np.uint8, encoding="zlib")


class ManualDownloadBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of the builders: ``array_record`` files, a working ``code_path``, and a missing ``manual_dir``
    reported with the subclass's ``MANUAL_DOWNLOAD_INSTRUCTIONS`` (the expected layout)."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(sys.modules[cls.__module__].__file__)

    def __init__(self, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    @property
    def resolution(self) -> int:
        """The image side, for builders whose configs are named by it (``"256"``)."""
        return int(self.builder_config.name)

    def manual_path(self, dl_manager: tfds.download.DownloadManager) -> str:
        """The download manager's manual directory, or a ValueError giving the expected layout."""
        try:
            return os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS: manual_dir missing or empty
            raise ValueError(f"{e}\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}") from e


def prepared_source(
    builder: tfds.core.DatasetBuilder, split: str, manual_dir, check_manual_dir: Callable[[object], None]
):
    """``builder``'s random-access source of ``split``, prepared from ``manual_dir`` first if needed
    (``check_manual_dir`` raises a ValueError naming the layout when it cannot be)."""
    if not builder.is_prepared():
        check_manual_dir(manual_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    missing = [part for part in split.split("+") if part not in builder.info.splits]
    if missing:  # e.g. a partial copy of a dataset whose split is by subject
        raise ValueError(
            f"this copy of {builder.name} has no {missing[0]!r} split; it has {sorted(builder.info.splits)}"
        )
    return builder.as_data_source(split=split)
