"""Discriminators of the thesis' methods: projection (ch. 3), VGG-shaped (ch. 5), PatchGAN, and the partial UV
discriminators of ch. 4 (centre and side crops of a UV map). StyleGAN2's lives in :mod:`faceflax.models.stylegan2`.

All take NHWC images in [0, 1] (mapped to [-1, 1] inside) and ``train`` (batch statistics and spectral-norm
power iterations update only then); spectral-norm ``u`` vectors live in the ``spectral_stats`` collection.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.conv import conv, dense
from faceflax.nn.resblocks import DiscriminatorResBlock

_PAD1 = ((1, 1), (1, 1))


class ProjectionDiscriminator(nn.Module):
    """cGAN projection discriminator (Miyato & Koyama 2018; thesis sec. 3.3, the PAS inpainting stage).

    ``D(x, y) = psi(phi(x)) + <V y, phi(x)>``: ``phi`` an SN-ResNet (SN-GAN's blocks) with ReLU and global
    sum pooling, ``psi`` a linear reality score and ``V`` a linear embedding of the condition ``y [B, D]``
    (a one-hot label, or a continuous vector such as the thesis' target 3D landmarks). Trained with the
    hinge loss (thesis eq. 3.14: :func:`faceflax.losses.adversarial.hinge_d_loss`).
    """

    channels: Sequence[int] = (64, 128, 256, 512, 1024)
    spectral_norm: bool = True

    @nn.compact
    def __call__(self, images: jax.Array, condition: jax.Array, train: bool) -> jax.Array:
        """images ``[B, H, W, C]``, condition ``[B, D]`` -> ``[B]`` logits."""
        x = images * 2.0 - 1.0
        for i, features in enumerate(self.channels):
            x = DiscriminatorResBlock(features, i < len(self.channels) - 1, i == 0, self.spectral_norm)(x, train)
        phi = jnp.sum(nn.relu(x), axis=(1, 2))
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)
        embedded = dense(phi.shape[-1], use_bias=False, name="embed", **opts)(condition)
        return dense(1, name="score", **opts)(phi)[:, 0] + jnp.sum(embedded * phi, axis=-1)


class VGGDiscriminator(nn.Module):
    """VGG-shaped discriminator (thesis sec. 5.3.5: "a VGG shaped discriminator"; ESRGAN's VGG128 layout).

    Per stage a 3x3 conv and a 4x4 stride-2 conv, LeakyReLU(0.2), batch norm after every conv but the first
    (or spectral norm instead of batch norm), channels doubling from 64 to 512; then linear 100 -> 1.
    """

    channels: Sequence[int] = (64, 128, 256, 512, 512)
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        """images ``[B, H, W, C]`` (H = W = 128 as ESRGAN, or any multiple of 32) -> ``[B]`` logits."""
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)

        def normalise(y):
            return y if self.spectral_norm else nn.BatchNorm(not train, momentum=0.9, epsilon=1e-5)(y)

        x = images * 2.0 - 1.0
        for i, features in enumerate(self.channels):
            x = conv(features, 3, use_bias=i == 0 or self.spectral_norm, **opts)(x)
            x = nn.leaky_relu(x if i == 0 else normalise(x), 0.2)
            x = conv(features, 4, strides=2, padding=_PAD1, use_bias=self.spectral_norm, **opts)(x)
            x = nn.leaky_relu(normalise(x), 0.2)
        x = nn.leaky_relu(dense(100, **opts)(x.reshape(x.shape[0], -1)), 0.2)
        return dense(1, **opts)(x)[:, 0]


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix's ``NLayerDiscriminator``, Isola et al. 2017): a logit per 70x70 patch at 3 layers.

    4x4 convs with padding 1: ``layers`` stride-2 convs from 64 channels (doubling, at most 512), one
    stride-1 conv, then a 1-channel conv; LeakyReLU(0.2); batch norm after all but the first conv (or
    spectral norm instead). A 256-px input gives 30x30 logits, as pix2pix.
    """

    layers: int = 3
    base: int = 64
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        """images ``[B, H, W, C]`` -> patch logits ``[B, H', W']``."""
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train, padding=_PAD1)
        x = nn.leaky_relu(conv(self.base, 4, strides=2, **opts)(images * 2.0 - 1.0), 0.2)
        for i in range(1, self.layers + 1):
            features = self.base * min(2**i, 8)
            x = conv(features, 4, strides=2 if i < self.layers else 1, use_bias=self.spectral_norm, **opts)(x)
            if not self.spectral_norm:
                x = nn.BatchNorm(not train, momentum=0.9, epsilon=1e-5)(x)
            x = nn.leaky_relu(x, 0.2)
        return conv(1, 4, **opts)(x)[..., 0]


def uv_center(uv: jax.Array, fraction: float = 0.5) -> jax.Array:
    """The central ``fraction`` (width and height) of UV maps ``[B, H, W, C]``: UV_ctr (thesis sec. 4.3.2.2),
    reliable in UV maps sampled from frontal photos."""
    h, w = uv.shape[1:3]
    ch, cw = round(h * fraction), round(w * fraction)
    top, left = (h - ch) // 2, (w - cw) // 2
    return uv[:, top : top + ch, left : left + cw]


def uv_sides(uv: jax.Array) -> jax.Array:
    """Left halves and mirrored right halves of UV maps ``[B, H, W, C]`` as one batch ``[2B, H, W/2, C]``:
    UV_sd (thesis sec. 4.3.2.2: "due to UV map's symmetry, the latter two can be put together")."""
    half = uv.shape[2] // 2
    return jnp.concatenate([uv[:, :, :half], jnp.flip(uv[:, :, -half:], axis=2)], axis=0)


class PartialUVDiscriminators(nn.Module):
    """The two partial UV discriminators of thesis sec. 4.3.2.2 (eq. 4.7): PatchGANs on UV_ctr and UV_sd."""

    center_fraction: float = 0.5
    spectral_norm: bool = True

    @nn.compact
    def __call__(self, uv: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """UV maps ``[B, H, W, C]`` -> (centre patch logits ``[B, ...]``, side patch logits ``[2B, ...]``)."""
        center = PatchDiscriminator(spectral_norm=self.spectral_norm, name="center")
        side = PatchDiscriminator(spectral_norm=self.spectral_norm, name="side")
        return center(uv_center(uv, self.center_fraction), train), side(uv_sides(uv), train)
