"""Residual blocks of the SN-GAN ResNets (Miyato et al. 2018, appendix; thesis sec. 2.2.3)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.conv import conv


def upsample2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling of ``[B, H, W, C]``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avgpool2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling of ``[B, H, W, C]``."""
    return nn.avg_pool(x, (2, 2), (2, 2))


class GeneratorResBlock(nn.Module):
    """BN-ReLU-up-conv3-BN-ReLU-conv3 with an up-conv1 shortcut.

    Convs have no bias: the next block's (or the generator's last) batch norm removes it, and its
    zero gradient would only feed Adam rounding noise.
    """

    features: int
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train, use_bias=False)
        h = nn.relu(nn.BatchNorm(not train, momentum=0.9)(x))
        h = conv(self.features, 3, **opts)(upsample2x(h))
        h = nn.relu(nn.BatchNorm(not train, momentum=0.9)(h))
        h = conv(self.features, 3, **opts)(h)
        return h + conv(self.features, 1, name="shortcut", **opts)(upsample2x(x))


class DiscriminatorResBlock(nn.Module):
    """ReLU-conv3-ReLU-conv3(-avgpool); ``first`` is SN-GAN's optimised block on raw pixels."""

    features: int
    downsample: bool = True
    first: bool = False
    spectral_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        opts = dict(spectral_norm=self.spectral_norm, update_stats=train)
        h = x if self.first else nn.relu(x)
        h = conv(self.features, 3, **opts)(h)
        h = conv(self.features, 3, **opts)(nn.relu(h))
        if self.downsample:
            h = avgpool2x(h)
        if self.first:
            return h + conv(self.features, 1, name="shortcut", **opts)(avgpool2x(x))
        if self.downsample or x.shape[-1] != self.features:
            shortcut = conv(self.features, 1, name="shortcut", **opts)(x)
            x = avgpool2x(shortcut) if self.downsample else shortcut
        return h + x
