"""MvInvert's residual latent encoder (seed 004, sec. 3.2, eq. 2): ReStyle's pSp ``BackboneEncoder`` (Alaluf et al.
2021) over pSp's IR-SE-50, and ReStyle's iterative refinement feeding a StyleGAN2 generator (eq. 3).

The encoder reads the target image beside the generator's current reconstruction (6 channels) and predicts a
W+ residual ``Delta [B, n_styles, 512]``; :func:`refine_latents` adds it to the latent, starting from the mean
latent ``w_0`` (eq. 2: ``w <- Delta + w_0``) and iterating ReStyle's ``w_{t+1} = w_t + E(x, G(w_t))``.

Layout, as ``models/encoders/`` of pSp/ReStyle: ``input_layer`` conv3x3(6 -> 64, no bias) + BN + PReLU; ``body``
of ``bottleneck_IR_SE`` units (``get_blocks(50)``: 3, 4, 14, 3 units of 64, 128, 256, 512 channels, the first
of each stage with stride 2), each ``res_layer`` = BN, conv3x3, PReLU, conv3x3(stride), BN, ``SEModule``
(reduction 16) plus a ``shortcut_layer`` (1x1 conv + BN where the channels change, else stride subsampling);
then per style a ``GradualStyleBlock(512, 512, 16)``: four conv3x3/2 (bias) + LeakyReLU(0.01) from the 16x16
map to 1x1 and an ``EqualLinear(512, 512)``. Submodule names are the state-dict names with ``.`` written ``_``
(``body_3/res_layer_5/fc1`` is ``body.3.res_layer.5.fc1``), which :mod:`faceflax.weights.restyle` relies on.
Inputs are NHWC in ``[0, 1]``, mapped to ReStyle's ``[-1, 1]`` inside; ReStyle works at 256x256.
"""

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.models.arcface import PReLU, torch_batch_norm, torch_conv

#: pSp's ``get_blocks(num_layers)``: IR-SE units per stage (channels 64, 128, 256, 512).
IR_SE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
#: The largest input whose 16x-downsampled map the style blocks reduce to 1x1 (ReStyle resizes to it).
MAX_INPUT_SIZE = 256


class EqualLinear(nn.Module):
    """rosinality's equalized linear layer without activation: ``x @ (K * lr_mul / sqrt(in)) + b * lr_mul``.

    The kernel ``K [in, features]`` is stored unscaled (initialised N(0, 1) / ``lr_mul``), as the checkpoints do.
    """

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[..., in]`` -> ``[..., features]``."""
        shape = (x.shape[-1], self.features)
        kernel = self.param("kernel", lambda key: jax.random.normal(key, shape) / self.lr_mul)
        bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
        return x @ (kernel * (self.lr_mul / math.sqrt(x.shape[-1]))) + bias * self.lr_mul


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``, 1x1 convs, no bias."""

    reduction: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        channels = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = torch_conv(channels, 1, name="fc2")(nn.relu(torch_conv(channels // self.reduction, 1, name="fc1")(s)))
        return x * nn.sigmoid(s)


class BottleneckIRSE(nn.Module):
    """pSp's ``bottleneck_IR_SE``: ``res_layer(x) + shortcut_layer(x)``, ``[B, H, W, C] -> [B, H/s, W/s, depth]``."""

    depth: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if x.shape[-1] == self.depth:
            shortcut = x[:, :: self.strides, :: self.strides]  # MaxPool2d(1, stride)
        else:
            shortcut = torch_conv(self.depth, 1, self.strides, name="shortcut_layer_0")(x)
            shortcut = torch_batch_norm(train, "shortcut_layer_1")(shortcut)
        h = torch_conv(self.depth, 3, name="res_layer_1")(torch_batch_norm(train, "res_layer_0")(x))
        h = torch_conv(self.depth, 3, self.strides, name="res_layer_3")(PReLU(name="res_layer_2")(h))
        h = SEModule(name="res_layer_5")(torch_batch_norm(train, "res_layer_4")(h))
        return h + shortcut


class GradualStyleBlock(nn.Module):
    """pSp's map2style block: ``log2(spatial)`` conv3x3/2 + LeakyReLU(0.01), then EqualLinear: -> ``[B, features]``."""

    features: int = 512
    spatial: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[B, h, w, C]`` with ``h, w <= spatial`` (reduced to 1x1) -> ``[B, features]``."""
        for i in range(int(math.log2(self.spatial))):
            x = nn.leaky_relu(torch_conv(self.features, 3, 2, use_bias=True, name=f"convs_{2 * i}")(x), 0.01)
        return EqualLinear(self.features, name="linear")(x.reshape(x.shape[0], self.features))


class BackboneEncoder(nn.Module):
    """ReStyle's pSp encoder ``BackboneEncoder(num_layers, "ir_se", n_styles)`` with 6 input channels: ``E`` of eq. 2.

    ``__call__(images, reconstructions, train)``: the targets and the generator's current images, both
    ``[B, H, W, 3]`` in ``[0, 1]`` with ``H, W <= 256`` (256 as ReStyle) -> the W+ residual ``[B, n_styles, 512]``.
    ``n_styles`` is StyleGAN2's ``n_latent``: 18 at 1024 px (ReStyle's FFHQ encoder), 14 at 256.
    """

    n_styles: int = 18
    num_layers: int = 50

    @nn.compact
    def __call__(self, images: jax.Array, reconstructions: jax.Array, train: bool = False) -> jax.Array:
        if self.num_layers not in IR_SE_UNITS:
            raise ValueError(f"IR-SE depth {self.num_layers} is not pSp's; use one of {sorted(IR_SE_UNITS)}")
        if images.shape != reconstructions.shape or images.shape[-1] != 3:
            raise ValueError(
                f"images {images.shape} and reconstructions {reconstructions.shape} must both be [B, H, W, 3]: "
                "resize the generator's images to the targets' size"
            )
        if max(images.shape[1:3]) > MAX_INPUT_SIZE:
            raise ValueError(
                f"ReStyle's encoder reads images of at most {MAX_INPUT_SIZE}x{MAX_INPUT_SIZE}, got {images.shape}: "
                f"resize them to {MAX_INPUT_SIZE}x{MAX_INPUT_SIZE} (ReStyle's face_pool)"
            )
        x = jnp.concatenate([images, reconstructions], axis=-1) * 2.0 - 1.0
        x = torch_batch_norm(train, "input_layer_1")(torch_conv(64, 3, name="input_layer_0")(x))
        x = PReLU(name="input_layer_2")(x)
        index = 0
        for stage, units in enumerate(IR_SE_UNITS[self.num_layers]):
            for unit in range(units):
                x = BottleneckIRSE(64 * 2**stage, 2 if unit == 0 else 1, name=f"body_{index}")(x, train)
                index += 1
        return jnp.stack([GradualStyleBlock(name=f"styles_{j}")(x) for j in range(self.n_styles)], axis=1)


def _pool_to(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``[B, H*f, W*g, C] -> [B, H, W, C]`` by ``f x g`` average pooling (AdaptiveAvgPool2d, integer factors)."""
    b, h, w, c = images.shape
    if h % size[0] or w % size[1]:
        raise ValueError(
            f"generated images {images.shape[1:3]} are not an integer multiple of the targets' {size}: "
            "generate at a multiple of the target size (e.g. 1024 for 256 targets) or resize the targets"
        )
    return images.reshape(b, size[0], h // size[0], size[1], w // size[1], c).mean(axis=(2, 4))


def refine_latents(
    encode: Callable[[jax.Array, jax.Array], jax.Array],
    generate: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    w0: jax.Array,
    iterations: int,
) -> tuple[jax.Array, jax.Array]:
    """ReStyle's iterative inversion, MvInvert eq. 2-3: ``w_{t+1} = w_t + E(x, G(w_t))`` from the mean latent ``w_0``.

    ``encode(images, reconstructions) -> [B, n, D]``: the residual encoder ``E`` (e.g. a
    :class:`BackboneEncoder` applied with its variables). ``generate(w [B, n, D]) -> [B, H', W', 3]`` in ``[0, 1]``:
    any generator ``G`` (a StyleGAN2's ``[-1, 1]`` output mapped by ``(y + 1) / 2``); ``H', W'`` integer multiples
    of the targets' ``H, W``, average-pooled to them as ReStyle's ``face_pool``. ``images [B, H, W, 3]`` in
    ``[0, 1]``; ``w0 [n, D]`` (or ``[B, n, D]``); ``iterations`` a static count >= 1 (the first one is eq. 2:
    ``w_1 = E(x, G(w_0)) + w_0``). Returns ``(latents [T, B, n, D], reconstructions [T, B, H, W, 3])``: ``w_t``
    and ``G(w_t)`` (pooled) for ``t = 1 .. T``. Jit-able and differentiable; one traced step (``lax.scan``).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1 (ReStyle uses 5), got {iterations}")
    size = images.shape[1:3]
    w = jnp.broadcast_to(w0, (images.shape[0], *w0.shape[-2:]))

    def step(carry, _):
        w, reconstruction = carry
        w = w + encode(images, reconstruction)
        reconstruction = _pool_to(generate(w), size)
        return (w, reconstruction), (w, reconstruction)

    _, (latents, reconstructions) = jax.lax.scan(step, (w, _pool_to(generate(w), size)), length=iterations)
    return latents, reconstructions
