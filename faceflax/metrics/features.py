"""Feature extractors for FID / IS: ``images [N, H, W, 3] in [0, 1] -> (features, logits | None)``.

``config.eval.features`` names one as ``"module:function"``; with ``config.eval.weights`` set, the function is a
factory called with that path first. ``inception_features`` is the published metric (pytorch-fid's Inception v3,
from the user's ``pt_inception-2015-12-05-6726825d.pth``); ``pixel_features`` needs no weights and gives a
self-consistent distance for comparing runs of this library, not published FIDs.
"""

import os

import jax
import jax.numpy as jnp

from faceflax.models.inception import FIDInceptionV3
from faceflax.weights.inception import convert_fid_inception


def pixel_features(images: jax.Array, size: int = 8) -> tuple[jax.Array, None]:
    """Area-downsampled pixels: ``[N, H, W, C] -> [N, size * size * C]`` features, no logits."""
    n, h, w, c = images.shape
    if h % size or w % size:
        raise ValueError(f"pixel_features needs H and W divisible by {size}, got {h}x{w}")
    pooled = images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return jnp.reshape(pooled, (n, -1)), None


def inception_features(weights: str | os.PathLike):
    """pytorch-fid's Inception v3 from ``weights``: ``images -> (pool3 [N, 2048], logits [N, 1008])`` (FID, IS)."""
    variables = convert_fid_inception(weights)
    model = FIDInceptionV3()

    def features(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = model.apply(variables, images)
        return out["pool3"], out["logits"]

    return features
