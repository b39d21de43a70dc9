"""FPN segmentation head: the UV sampler's face-mask branch of thesis sec. 4.3.1 (Fig. 4.3).

The thesis feeds "2D feature maps of different scales" of its residual feature extractor "into the FPN
structured [Lin et al. 2017] segmentation head" that outputs the attention mask m (trained with the BCE of
eq. 4.3-4.4); it gives no further detail. The pyramid is Lin et al.'s: a 1x1 lateral conv per level to
``pyramid_features`` channels, a top-down pathway adding the nearest-upsampled coarser level, and a 3x3
conv on each merged map. The per-pixel prediction is the semantic branch of Panoptic FPN (Kirillov et al.
2019), as in segmentation_models_pytorch's ``FPN``: every level goes through 3x3 conv-GroupNorm-ReLU stages,
each followed by a 2x bilinear upsampling, until it reaches the finest level (one stage for the finest);
the levels are summed, a 1x1 conv gives ``num_classes`` logits, resized bilinearly to ``size`` (the input
image's 256x256 in the thesis, where m masks the input). No batch statistics: GroupNorm needs no ``train``.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax


def _resize(x: jax.Array, height: int, width: int, method: str) -> jax.Array:
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), method)


class FPNHead(nn.Module):
    """Multi-scale features -> per-pixel logits (thesis sec. 4.3.1's segmentation head).

    ``__call__(features)``: ``features`` finest first, ``[B, H_i, W_i, C_i]`` with each level about half the
    previous one's size (any channels). Returns ``[B, H, W, num_classes]`` with ``(H, W) = size``, by default
    the finest level's.
    """

    num_classes: int = 1
    size: tuple[int, int] | None = None
    pyramid_features: int = 256
    segmentation_features: int = 128
    groups: int = 32

    @nn.compact
    def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
        if not features:
            raise ValueError("FPNHead needs at least one feature map, finest first")
        if self.segmentation_features % self.groups:
            raise ValueError(
                f"segmentation_features {self.segmentation_features} must be a multiple of groups {self.groups}"
            )
        shapes = [f.shape[1:3] for f in features]
        laterals = [nn.Conv(self.pyramid_features, (1, 1), name=f"lateral_{i}")(f) for i, f in enumerate(features)]
        merged = [laterals[-1]]
        for lateral in laterals[-2::-1]:
            merged.insert(0, lateral + _resize(merged[0], *lateral.shape[1:3], "nearest"))
        total = 0.0
        for i, level in enumerate(merged):
            h = nn.Conv(self.pyramid_features, (3, 3), padding=[(1, 1)] * 2, name=f"smooth_{i}")(level)
            for stage, target in enumerate([None] if i == 0 else shapes[i - 1 :: -1]):
                h = nn.Conv(
                    self.segmentation_features, (3, 3), padding=[(1, 1)] * 2, use_bias=False, name=f"seg_{i}_{stage}"
                )(h)
                h = nn.relu(nn.GroupNorm(self.groups, epsilon=1e-5, name=f"gn_{i}_{stage}")(h))
                if target is not None:
                    h = _resize(h, *target, "bilinear")
            total = total + h
        logits = nn.Conv(self.num_classes, (1, 1), name="classifier")(total)
        return _resize(logits, *(self.size or shapes[0]), "bilinear")
