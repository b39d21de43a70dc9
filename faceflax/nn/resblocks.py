"""Residual blocks of the SN-GAN ResNets (Miyato et al. 2018, appendix; thesis sec. 2.2.3) and the
He et al. (2016) basic block of the UV sampler's SN feature extractor (thesis sec. 4.3.1).
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.conv import conv

NORMS = ("batch", "instance", None)


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


def _norm(kind: str | None, train: bool, name: str) -> Callable[[jax.Array], jax.Array]:
    """Batch norm (torch's eps and momentum), affine instance norm (``InstanceNorm2d(affine=True)``) or none."""
    if kind == "batch":
        return nn.BatchNorm(not train, momentum=0.9, epsilon=1e-5, use_fast_variance=False, name=name)
    if kind == "instance":
        return nn.InstanceNorm(epsilon=1e-5, use_fast_variance=False, name=name)
    return lambda x: x


class ResidualBlock(nn.Module):
    """He et al. [112] basic block: ``act(norm(conv3(act(norm(conv3_s(x))))) + shortcut(x))``.

    Thesis sec. 4.3.1: the UV sampler's feature extractor "is composed of stacked residual blocks [112].
    Spectral normalization [59] is applied to each convolution layer". The seed names neither the
    normalisation, the activation nor how blocks downsample, so this follows [112]: the first 3x3 conv
    carries ``strides`` (padding 1, output ``ceil(H / strides)``), batch norm after each conv, ReLU, and
    the shortcut is the identity or, when the stride or channel count changes, a normalised 1x1 strided
    conv (projection "option B"). ``norm`` may be ``"batch"``, ``"instance"`` or ``None``; convs have a
    bias only without norm. ``spectral_norm`` (default on, as the seed) covers every conv, shortcut included.
    """

    features: int
    strides: int = 1
    norm: str | None = "batch"
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    spectral_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """x: ``[B, H, W, C]`` float32 -> ``[B, ceil(H / strides), ceil(W / strides), features]``."""
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} is not supported; use one of {NORMS}")
        opts = {"spectral_norm": self.spectral_norm, "update_stats": train, "use_bias": self.norm is None}
        pad = ((1, 1), (1, 1))
        h = conv(self.features, 3, strides=self.strides, padding=pad, name="conv1", **opts)(x)
        h = self.activation(_norm(self.norm, train, "norm1")(h))
        h = _norm(self.norm, train, "norm2")(conv(self.features, 3, padding=pad, name="conv2", **opts)(h))
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, strides=self.strides, name="shortcut", **opts)(x)
            x = _norm(self.norm, train, "shortcut_norm")(x)
        return self.activation(h + x)
