"""Random-access image sources: the embedded LFW faces and TFDS datasets.

A source has ``len(source)`` and ``source[i] -> [H, W, 3]`` (uint8, or float32 in [0, 1]).
"""

import cv2
import numpy as np
from ml_collections import ConfigDict

LFW_FACES = 100  # skimage's lfw_subset holds 100 faces followed by 100 non-faces


def lfw_faces(image_size: int) -> np.ndarray:
    """The 100 real 25x25 LFW faces shipped by scikit-image, resized and as RGB.

    Returns:
      ``[100, image_size, image_size, 3]`` float32 in [0, 1] (grey replicated to three channels,
      so the colour architectures of the seeds apply unchanged).
    """
    import skimage.data  # deferred: scikit-image is only needed for the embedded data

    faces = skimage.data.lfw_subset()[:LFW_FACES].astype(np.float32)
    resized = np.stack([cv2.resize(f, (image_size, image_size), interpolation=cv2.INTER_CUBIC) for f in faces])
    return np.repeat(np.clip(resized, 0.0, 1.0)[..., None], 3, axis=-1)


def make_source(config: ConfigDict):
    """The source named by ``config.name``: ``lfw`` (embedded) or ``celeba`` (TFDS, manual dir)."""
    if config.name == "lfw":
        return lfw_faces(config.image_size)
    if config.name == "celeba":
        from faceflax.data.celeba import load_celeba  # deferred: imports tensorflow_datasets

        return load_celeba(config.split, config.image_size, config.data_dir, config.manual_dir)
    raise ValueError(f"unknown dataset {config.name!r}; use 'lfw' or 'celeba'")
