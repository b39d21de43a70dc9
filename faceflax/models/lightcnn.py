"""LightCNN-29 v2 (Wu et al. 2018, "A Light CNN for Deep Face Representation with Noisy Labels").

The identity network of thesis ch. 3: its 256-d feature conditions the inpainting decoder (sec. 3.3.3) and
defines the identity loss ``L_id = 1/N sum_i |F(J_fake)_i - F(J)_i|`` (eq. 3.11); ch. 4 scores identity
preservation by the cosine similarity of these features. The architecture and module names are
AlfredXiangWu/LightCNN's ``light_cnn.py`` ``network_29layers_v2`` (checkpoint
``LightCNN_29Layers_V2_checkpoint.pth.tar``, converted by :mod:`faceflax.weights.lightcnn`):

- ``mfm``: max-feature-map (paper eq. 1), a conv to ``2 * out`` channels and the elementwise max of its two
  halves (``filter`` is the conv);
- ``resblock``: two 3x3 ``mfm`` (``conv1``, ``conv2``) plus the identity;
- ``group``: a 1x1 ``mfm`` (``conv_a``) then a 3x3 ``mfm`` (``conv``);
- the network: ``conv1`` (5x5 ``mfm``, 48), then ``block1`` (1 resblock), ``group1`` (96), ``block2`` (2),
  ``group2`` (192), ``block3`` (3), ``group3`` (128), ``block4`` (4), ``group4`` (128), with a 2x2 stride-2
  max pool plus average pool after ``conv1``, ``group1``, ``group2`` and ``group4``; ``fc`` (8*8*128 -> 256,
  the feature) and ``fc2`` (256 -> classes, no bias; 80,013 in the published checkpoint). The dropout before
  ``fc2`` (training only) is omitted.

Input: 128x128 grayscale faces in [0, 1] (the original ``extract_features.py``: ``cv2.IMREAD_GRAYSCALE``
then ``ToTensor``), aligned as the authors' crops; RGB is converted by :func:`to_gray`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

#: The input size ``fc`` needs.
IMAGE_SIZE = 128
#: Identities of the published checkpoint's classifier ``fc2``.
NUM_CLASSES = 80013
#: ITU-R BT.601 luma weights, as OpenCV's and PIL's grayscale conversion.
LUMA = (0.299, 0.587, 0.114)


def to_gray(images: jax.Array) -> jax.Array:
    """RGB ``[..., 3]`` -> luma ``[..., 1]`` (BT.601 weights :data:`LUMA`)."""
    return images @ jnp.asarray(LUMA, images.dtype)[:, None]


def _pool(x: jax.Array) -> jax.Array:
    """``F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)``: ``[B, H, W, C] -> [B, H // 2, W // 2, C]``."""
    return nn.max_pool(x, (2, 2), (2, 2)) + nn.avg_pool(x, (2, 2), (2, 2))


class MFM(nn.Module):
    """Max-feature-map conv (``mfm``): ``[B, H, W, C] -> [B, H, W, features]``, max of two conv halves."""

    features: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = (self.kernel_size - 1) // 2
        y = nn.Conv(2 * self.features, (self.kernel_size,) * 2, padding=((pad, pad),) * 2, name="filter")(x)
        first, second = jnp.split(y, 2, axis=-1)
        return jnp.maximum(first, second)


class Group(nn.Module):
    """``group``: 1x1 ``mfm`` keeping the channels (``conv_a``), then 3x3 ``mfm`` to ``features`` (``conv``)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return MFM(self.features, name="conv")(MFM(x.shape[-1], 1, name="conv_a")(x))


class ResBlock(nn.Module):
    """``resblock``: ``x + mfm(mfm(x))`` with 3x3 ``mfm`` ``conv1``, ``conv2`` of ``x``'s channels."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        return x + MFM(channels, name="conv2")(MFM(channels, name="conv1")(x))


class LightCNN29v2(nn.Module):
    """``network_29layers_v2(resblock, [1, 2, 3, 4])``; ``num_classes=None`` leaves out ``fc2``.

    ``init`` through ``__call__`` creates the feature network only; ``init(..., method="logits")`` adds ``fc2``.
    """

    num_classes: int | None = NUM_CLASSES

    def setup(self):
        self.conv1 = MFM(48, 5)
        self.block1 = [ResBlock()]
        self.group1 = Group(96)
        self.block2 = [ResBlock() for _ in range(2)]
        self.group2 = Group(192)
        self.block3 = [ResBlock() for _ in range(3)]
        self.group3 = Group(128)
        self.block4 = [ResBlock() for _ in range(4)]
        self.group4 = Group(128)
        self.fc = nn.Dense(256)
        if self.num_classes is not None:
            self.fc2 = nn.Dense(self.num_classes, use_bias=False)

    def __call__(self, images: jax.Array) -> jax.Array:
        """images ``[B, 128, 128, 1]`` gray (or ``[..., 3]`` RGB) in [0, 1] -> ``[B, 256]`` identity features.

        The feature ``F`` of thesis eq. 3.11 (``fc``'s output, before dropout and ``fc2``).
        """
        if images.ndim != 4 or images.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE) or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"LightCNN-29 v2 takes aligned faces [B, {IMAGE_SIZE}, {IMAGE_SIZE}, 1 or 3] in [0, 1], got shape "
                f"{images.shape}: crop or resize them to {IMAGE_SIZE}x{IMAGE_SIZE} (jax.image.resize) first"
            )
        x = to_gray(images) if images.shape[-1] == 3 else images
        x = _pool(self.conv1(x))
        for blocks, group, pool in (
            (self.block1, self.group1, True),
            (self.block2, self.group2, True),
            (self.block3, self.group3, False),
            (self.block4, self.group4, True),
        ):
            for block in blocks:
                x = block(x)
            x = group(x)
            x = _pool(x) if pool else x
        return self.fc(x.reshape(x.shape[0], -1))

    def logits(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images as ``__call__`` -> (``[B, num_classes]`` logits, ``[B, 256]`` features), torch's ``(out, fc)``."""
        if self.num_classes is None:
            raise ValueError("LightCNN29v2(num_classes=None) has no classifier fc2; build it with num_classes set")
        features = self(images)
        return self.fc2(features), features
