"""Networks of thesis chapter 2: the SN-GAN paper's reference GAN architectures and a conv VAE.

Miyato et al. 2018 (Table 3, Figure 8) define the 32x32 "standard CNN" and ResNet generator and
discriminator that SN-GAN, WGAN-GP and SAGAN results are usually reported with; their depth here
follows ``image_size`` (one 2x stage per octave above 4x4), so 64x64 and 128x128 CelebA work too.
Images enter and leave every network in ``[0, 1]`` (faceflax convention); internally they live
in ``[-1, 1]`` with a ``tanh`` output, as in the paper.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.attention import SelfAttention
from faceflax.nn.conv import conv, dense
from faceflax.nn.resblocks import DiscriminatorResBlock, GeneratorResBlock


def num_octaves(image_size: int, base: int = 4) -> int:
    """Number of 2x stages between ``base`` and ``image_size``; raises for non powers of two."""
    octaves = math.log2(image_size / base)
    if image_size < 2 * base or not octaves.is_integer():
        raise ValueError(f"image_size must be {2 * base} times a power of two, got {image_size}")
    return int(octaves)


def _to_unit(x: jax.Array) -> jax.Array:
    return (jnp.tanh(x) + 1.0) / 2.0


def _batch_norm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)


class CnnGenerator(nn.Module):
    """z -> linear 4x4xC0 -> BN-ReLU -> [4x4 stride-2 deconv -> BN-ReLU]* -> 3x3 conv -> tanh.

    ``channels = (512, 256, 128, 64)`` is the paper's 32x32 model; ``attention_resolution`` adds a
    SAGAN self-attention layer (eq. 2.62-2.64) after the stage of that resolution.
    """

    channels: Sequence[int] = (512, 256, 128, 64)
    out_channels: int = 3
    spectral_norm: bool = False
    attention_resolution: int = 0

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        """z: ``[B, latent]`` float32 -> images ``[B, 4 * 2^k, 4 * 2^k, out_channels]`` in [0, 1]."""
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)
        # Layers feeding batch norm have no bias: BN removes it, and its zero gradient would only
        # feed Adam rounding noise.
        x = dense(4 * 4 * self.channels[0], use_bias=False, **opts)(z)
        x = nn.relu(_batch_norm(train)(x.reshape(-1, 4, 4, self.channels[0])))
        for features in self.channels[1:]:
            x = conv(features, 4, strides=2, transpose=True, use_bias=False, **opts)(x)
            x = nn.relu(_batch_norm(train)(x))
            if x.shape[1] == self.attention_resolution:
                x = SelfAttention(spectral_norm=self.spectral_norm)(x, train)
        return _to_unit(conv(self.out_channels, 3, **opts)(x))


class CnnDiscriminator(nn.Module):
    """[3x3 conv -> LReLU -> 4x4 stride-2 conv -> LReLU]* -> 3x3 conv -> LReLU -> linear.

    ``channels = (64, 128, 256, 512)`` is the paper's 32x32 model (LeakyReLU slope 0.1).
    """

    channels: Sequence[int] = (64, 128, 256, 512)
    spectral_norm: bool = True
    attention_resolution: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        """images: ``[B, H, W, C]`` in [0, 1] -> ``[B]`` logits."""
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)
        x = images * 2.0 - 1.0
        for features in self.channels[:-1]:
            x = nn.leaky_relu(conv(features, 3, **opts)(x), 0.1)
            x = nn.leaky_relu(conv(features, 4, strides=2, **opts)(x), 0.1)
            if x.shape[1] == self.attention_resolution:
                x = SelfAttention(spectral_norm=self.spectral_norm)(x, train)
        x = nn.leaky_relu(conv(self.channels[-1], 3, **opts)(x), 0.1)
        return dense(1, **opts)(x.reshape(x.shape[0], -1))[:, 0]


class ResnetGenerator(nn.Module):
    """z -> linear 4x4xC -> up-sampling residual blocks -> BN-ReLU -> 3x3 conv -> tanh."""

    image_size: int = 32
    features: int = 256
    out_channels: int = 3
    spectral_norm: bool = False
    attention_resolution: int = 0

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        """z: ``[B, latent]`` float32 -> images ``[B, image_size, image_size, out_channels]``."""
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)
        x = dense(4 * 4 * self.features, use_bias=False, **opts)(z).reshape(-1, 4, 4, self.features)
        for _ in range(num_octaves(self.image_size)):
            x = GeneratorResBlock(self.features, self.spectral_norm)(x, train)
            if x.shape[1] == self.attention_resolution:
                x = SelfAttention(spectral_norm=self.spectral_norm)(x, train)
        x = nn.relu(_batch_norm(train)(x))
        return _to_unit(conv(self.out_channels, 3, **opts)(x))


class ResnetDiscriminator(nn.Module):
    """Down-sampling residual blocks to 8x8, two more blocks, ReLU, global sum pool, linear."""

    features: int = 128
    spectral_norm: bool = True
    attention_resolution: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        """images: ``[B, H, W, C]`` in [0, 1] -> ``[B]`` logits."""
        x = images * 2.0 - 1.0
        downsamples = num_octaves(images.shape[1], base=8)
        for i in range(downsamples + 2):
            block = DiscriminatorResBlock(self.features, i < downsamples, i == 0, self.spectral_norm)
            x = block(x, train)
            if x.shape[1] == self.attention_resolution:
                x = SelfAttention(spectral_norm=self.spectral_norm)(x, train)
        x = jnp.sum(nn.relu(x), axis=(1, 2))
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)
        return dense(1, **opts)(x)[:, 0]


class VaeEncoder(nn.Module):
    """[4x4 stride-2 conv -> ReLU]* -> linear to ``(mu, log sigma^2)`` (thesis Fig. 2.2b)."""

    latent_dim: int = 128
    channels: Sequence[int] = (64, 128, 256)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """images: ``[B, H, W, C]`` in [0, 1] -> ``mean, log_var``, each ``[B, latent_dim]``."""
        del train  # no layer behaves differently in training
        plain = dict(spectral_norm=False, update_stats=False)
        x = images * 2.0 - 1.0
        for features in self.channels:
            x = nn.relu(conv(features, 4, strides=2, **plain)(x))
        stats = dense(2 * self.latent_dim, **plain)(x.reshape(x.shape[0], -1))
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]


class VaeDecoder(nn.Module):
    """z -> linear 4x4xC0 -> [4x4 stride-2 deconv -> ReLU]* -> 3x3 conv -> sigmoid."""

    channels: Sequence[int] = (256, 128, 64, 32)
    out_channels: int = 3

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        """z: ``[B, latent]`` -> images ``[B, 4 * 2^k, 4 * 2^k, out_channels]`` in [0, 1]."""
        del train  # no layer behaves differently in training
        plain = dict(spectral_norm=False, update_stats=False)
        x = nn.relu(dense(4 * 4 * self.channels[0], **plain)(z)).reshape(-1, 4, 4, self.channels[0])
        for features in self.channels[1:]:
            x = nn.relu(conv(features, 4, strides=2, transpose=True, **plain)(x))
        return jax.nn.sigmoid(conv(self.out_channels, 3, **plain)(x))
