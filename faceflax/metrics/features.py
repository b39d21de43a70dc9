"""Feature extractors for FID / IS: ``images [N, H, W, 3] in [0, 1] -> (features, logits | None)``.

``config.eval.features`` names one as ``"module:function"``. Inception v3 (pytorch-fid layout)
plugs in here once its weights are converted; until then ``pixel_features`` gives a
self-consistent distance for comparing runs of this library, not published FIDs.
"""

import jax
import jax.numpy as jnp


def pixel_features(images: jax.Array, size: int = 8) -> tuple[jax.Array, None]:
    """Area-downsampled pixels: ``[N, H, W, C] -> [N, size * size * C]`` features, no logits."""
    n, h, w, c = images.shape
    if h % size or w % size:
        raise ValueError(f"pixel_features needs H and W divisible by {size}, got {h}x{w}")
    pooled = images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return jnp.reshape(pooled, (n, -1)), None
