"""U-Net with a ResNet-18 encoder: the face segmentation module N_S of thesis sec. 5.3.2 (Fig. 5.3b).

"N_S follows the classical U-Net structure [Ronneberger et al. 2015], with ResNet18 as encoder, while the
decoder is a stack of convolutional blocks corresponding to each stage of the encoder. Each decoder block
takes features from its previous block and its symmetric encoder stage through skip-connection. Since the
target mask is binary, a single channel output for the decoder suffices." The thesis names no block
internals; these are segmentation_models_pytorch's ``Unet("resnet18")``, the usual realisation: five decoder
blocks of (256, 128, 64, 32, 16) channels, each a 2x nearest upsampling, concatenation with the encoder
feature of that resolution (layer3, layer2, layer1, the stem; none for the last) and two 3x3
conv(no bias)-BN-ReLU; then a 3x3 conv to ``num_classes`` logits at the input resolution.

The encoder is the submodule ``encoder``, exactly ``ResNet(18, num_classes=None)``, so ImageNet weights go in
with ``faceflax.weights.resnet.graft(variables, "encoder", load_resnet(path, 18, num_classes=None))``.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.resblocks import upsample2x
from faceflax.nn.resnet import ResNet


class DecoderBlock(nn.Module):
    """``[B, h, w, C]`` (+ skip ``[B, 2h, 2w, C_s]``) -> up 2x, concat, 2 x (conv3-BN-ReLU) -> ``[B, 2h, 2w, features]``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array | None, train: bool) -> jax.Array:
        h = upsample2x(x)
        if skip is not None:
            h = jnp.concatenate([h, skip], axis=-1)
        for i in (1, 2):
            h = nn.Conv(self.features, (3, 3), padding=[(1, 1)] * 2, use_bias=False, name=f"conv{i}")(h)
            h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{i}")(h))
        return h


class UNet(nn.Module):
    """N_S (thesis sec. 5.3.2): ``x [B, H, W, 3]`` -> logits ``[B, H, W, num_classes]``; H, W multiples of 32.

    ``x`` as the encoder's weights expect (:func:`faceflax.nn.resnet.imagenet_normalize` for ImageNet ones).
    A sigmoid of the single default channel is the face mask of eq. 5.3-5.4.
    """

    num_classes: int = 1
    decoder_features: Sequence[int] = (256, 128, 64, 32, 16)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.shape[1] % 32 or x.shape[2] % 32:
            raise ValueError(f"UNet input {x.shape[1]}x{x.shape[2]} is not a multiple of 32: pad or resize it")
        if len(self.decoder_features) != 5:
            raise ValueError(f"decoder_features needs one width per encoder stage (5), got {self.decoder_features}")
        _, features = ResNet(18, num_classes=None, return_features=True, name="encoder")(x, train)
        h, *skips = features[::-1]
        for i, width in enumerate(self.decoder_features):
            h = DecoderBlock(width, name=f"decoder_{i}")(h, skips[i] if i < len(skips) else None, train)
        return nn.Conv(self.num_classes, (3, 3), padding=[(1, 1)] * 2, name="head")(h)
