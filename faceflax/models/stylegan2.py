"""StyleGAN2 generator and discriminator (Karras et al. 2020, config-f), as rosinality's stylegan2-pytorch.

MvInvert (sec. 3.2) decodes the latent ``w_i = Delta_i + w_0`` of its residual encoder (eq. 2) with a
pre-trained StyleGAN2 generator, ``I_inv = G(w_i)`` (eq. 3); ReStyle, which it follows, loads rosinality's
``Generator`` from the ``g_ema`` entry of a checkpoint and feeds it W+ latents ``[B, n_latent, 512]``.
The modules here mirror rosinality's layer by layer so :mod:`faceflax.weights.stylegan2` maps a checkpoint
one to one:

- equalized learning rate: weights are stored unscaled (initialised N(0, 1) / ``lr_mul``) and scaled at
  run time by ``lr_mul / sqrt(fan_in)``; biases are scaled by ``lr_mul``;
- "fused" leaky ReLU: ``leaky_relu(x + b, 0.2) * sqrt(2)``;
- modulated convolution (StyleGAN2 eq. 1) with demodulation (eq. 3), computed as input scaling, one shared
  convolution and output scaling (the same function as the per-sample grouped convolution);
  upsampling as a stride-2 transposed convolution followed by a ``[1, 3, 3, 1]`` blur;
- ToRGB outputs summed over resolutions through FIR-upsampled skips; noise injection per layer.

Layout: NHWC images and HWIO kernels, dense kernels ``[in, out]``. Generator outputs and discriminator inputs
are images in about ``[-1, 1]`` (rosinality's range; ``(x + 1) / 2`` gives faceflax's ``[0, 1]``).
Variables: ``params``, plus the generator's fixed per-layer noise in collection ``noise`` (rosinality's
``noises.noise_i`` buffers, used when neither ``noise`` nor ``key`` is given, i.e. ``randomize_noise=False``).
"""

import itertools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.stride2 import NHWC_DIMS, conv_transpose_stride2_full
from faceflax.nn.upfirdn import blur, upsample

SQRT2 = math.sqrt(2.0)


def channel_table(size: int, channel_multiplier: int = 2, channels: Sequence[int] | None = None) -> tuple[int, ...]:
    """Channels at resolutions 4, 8, ..., ``size``: rosinality's table (512 up to 32 px, then
    ``16384 / r * channel_multiplier``), or ``channels`` given explicitly (one per resolution)."""
    log_size = int(math.log2(size)) if size > 0 else 0
    if size < 4 or 2**log_size != size:
        raise ValueError(f"StyleGAN2 size must be a power of two >= 4, got {size}")
    if channels is not None:
        if len(channels) != log_size - 1:
            raise ValueError(
                f"channels must list one width per resolution 4..{size} ({log_size - 1} values), got {len(channels)}"
            )
        return tuple(int(c) for c in channels)
    if size > 1024:
        raise ValueError(f"rosinality's channel table stops at 1024 px; pass channels=... for size {size}")
    return tuple(512 if r <= 32 else 16384 // r * channel_multiplier for r in _resolutions(size))


def _resolutions(size: int) -> list[int]:
    return [2**i for i in range(2, int(math.log2(size)) + 1)]


def fused_leaky_relu(x: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` (rosinality's ``fused_leaky_relu``); ``bias [C]`` on the last axis."""
    if bias is not None:
        x = x + bias
    return jax.nn.leaky_relu(x, 0.2) * SQRT2


def _normal(scale: float = 1.0):
    return lambda key, shape: jax.random.normal(key, shape, jnp.float32) * scale


class EqualLinear(nn.Module):
    """Dense layer with equalized learning rate: ``x @ (kernel * lr_mul / sqrt(in)) + bias * lr_mul``.

    ``activate`` applies the fused leaky ReLU. x: ``[..., in]`` -> ``[..., features]``.
    """

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    activate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _normal(1.0 / self.lr_mul), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
        y = x @ (kernel * (self.lr_mul / math.sqrt(x.shape[-1])))
        return fused_leaky_relu(y, bias * self.lr_mul) if self.activate else y + bias * self.lr_mul


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate (kernel ``[k, k, in, out]`` scaled by ``1 / sqrt(in k^2)``)."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[B, H, W, in]`` -> ``[B, H', W', features]``."""
        k = self.kernel_size
        kernel = self.param("kernel", _normal(), (k, k, x.shape[-1], self.features))
        y = jax.lax.conv_general_dilated(
            x,
            kernel / math.sqrt(x.shape[-1] * k * k),
            (self.stride, self.stride),
            [(self.padding, self.padding)] * 2,
            dimension_numbers=NHWC_DIMS,
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class FusedLeakyReLU(nn.Module):
    """Per-channel bias then ``leaky_relu(., 0.2) * sqrt(2)``; x: ``[..., C]``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return fused_leaky_relu(x, self.param("bias", nn.initializers.zeros, (x.shape[-1],)))


class ModulatedConv2d(nn.Module):
    """Modulated convolution (StyleGAN2 eq. 1: ``w'_ijk = s_i w_ijk``, ``s`` an affine map of the style) with
    optional demodulation (eq. 3: ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + 1e-8)``).

    ``upsample``: stride-2 transposed convolution then a 4x-gain ``[1, 3, 3, 1]`` blur (rosinality), 2x output.
    """

    features: int
    kernel_size: int
    demodulate: bool = True
    upsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        """x: ``[B, H, W, in]``, style: ``[B, style_dim]`` -> ``[B, H, W, features]`` (``2H, 2W`` upsampling)."""
        k, channels = self.kernel_size, x.shape[-1]
        weight = self.param("weight", _normal(), (k, k, channels, self.features))
        weight = weight / math.sqrt(channels * k * k)
        s = EqualLinear(channels, bias_init=1.0, name="modulation")(style)
        x = x * s[:, None, None, :]
        if self.upsample:
            y = conv_transpose_stride2_full(x, weight)  # torch's conv_transpose2d(stride=2, padding=0)
            p = 2 - (k - 1)
            y = blur(y, ((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        else:
            y = jax.lax.conv_general_dilated(x, weight, (1, 1), [(k // 2, k // 2)] * 2, dimension_numbers=NHWC_DIMS)
        if self.demodulate:
            y = y * jax.lax.rsqrt((s**2) @ (weight**2).sum((0, 1)) + 1e-8)[:, None, None, :]
        return y


class NoiseInjection(nn.Module):
    """``image + weight * noise`` with a learned scalar ``weight``; noise ``[B or 1, H, W, 1]``."""

    @nn.compact
    def __call__(self, image: jax.Array, noise: jax.Array) -> jax.Array:
        return image + self.param("weight", nn.initializers.zeros, (1,)) * noise


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, noise injection, fused leaky ReLU (one synthesis layer)."""

    features: int
    upsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array, noise: jax.Array) -> jax.Array:
        """x: ``[B, H, W, in]``, style ``[B, D]``, noise ``[B or 1, H', W', 1]`` -> ``[B, H', W', features]``."""
        x = ModulatedConv2d(self.features, 3, upsample=self.upsample, name="conv")(x, style)
        return FusedLeakyReLU(name="activate")(NoiseInjection(name="noise")(x, noise))


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to RGB (no demodulation) plus bias, plus the FIR-upsampled previous RGB."""

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array, skip: jax.Array | None = None) -> jax.Array:
        """x: ``[B, H, W, C]``, style ``[B, D]``, skip ``[B, H/2, W/2, 3]`` or None -> ``[B, H, W, 3]``."""
        out = ModulatedConv2d(3, 1, demodulate=False, name="conv")(x, style)
        out = out + self.param("bias", nn.initializers.zeros, (3,))
        return out if skip is None else out + upsample(skip)


class Generator(nn.Module):
    """rosinality's StyleGAN2 ``Generator``: mapping network z -> w, then synthesis W+ -> image (MvInvert eq. 3).

    FFHQ config-f at 256 px (ReStyle, MvInvert): ``Generator(256, 512, 8, channel_multiplier=2)``.
    ``channels`` optionally replaces rosinality's channel table (one width per resolution 4..size).
    """

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    channels: tuple[int, ...] | None = None

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels at resolutions 4, 8, ..., size."""
        return channel_table(self.size, self.channel_multiplier, self.channels)

    @property
    def num_layers(self) -> int:
        """Number of noise inputs (one per StyledConv): ``2 log2(size) - 3``."""
        return 2 * int(math.log2(self.size)) - 3

    @property
    def n_latent(self) -> int:
        """Number of W+ entries: ``2 log2(size) - 2`` (each StyledConv and ToRGB reads one)."""
        return 2 * int(math.log2(self.size)) - 2

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes ``[1, r, r, 1]`` of the per-layer noise inputs (4 px once, then twice per resolution)."""
        return [(1, r, r, 1) for r in [4] + [r for r in _resolutions(self.size)[1:] for _ in range(2)]]

    def setup(self):
        widths = self.widths
        self.style = [EqualLinear(self.style_dim, lr_mul=self.lr_mlp, activate=True) for _ in range(self.n_mlp)]
        self.input = self.param("input", _normal(), (1, 4, 4, widths[0]))
        self.conv1 = StyledConv(widths[0])
        self.to_rgb1 = ToRGB()
        self.convs = [StyledConv(w, upsample=up) for w in widths[1:] for up in (True, False)]
        self.to_rgbs = [ToRGB() for _ in widths[1:]]
        if self.is_initializing() or self.has_variable("noise", "noise_0"):
            self.noises = [
                self.variable("noise", f"noise_{i}", lambda s=s: _normal()(self.make_rng("params"), s)).value
                for i, s in enumerate(self.noise_shapes())
            ]
        else:
            self.noises = None

    def mapping(self, z: jax.Array) -> jax.Array:
        """Mapping network f: Z -> W (rosinality's ``get_latent``): z ``[B, D]`` -> w ``[B, D]``.

        PixelNorm, then ``n_mlp`` EqualLinear layers (lr_mul 0.01) with fused leaky ReLU.
        """
        w = z * jax.lax.rsqrt(jnp.mean(z**2, axis=-1, keepdims=True) + 1e-8)
        for layer in self.style:
            w = layer(w)
        return w

    def mean_latent(self, key: jax.Array, n: int = 4096) -> jax.Array:
        """The mean latent ``w_0`` of MvInvert eq. 2 (rosinality's ``mean_latent``): mean of ``n`` mapped
        ``z ~ N(0, I)``, ``[1, style_dim]``."""
        return self.mapping(jax.random.normal(key, (n, self.style_dim))).mean(0, keepdims=True)

    def __call__(
        self,
        styles: jax.Array | Sequence[jax.Array],
        *,
        input_is_latent: bool = False,
        inject_index: int | jax.Array | None = None,
        truncation: float | jax.Array = 1.0,
        truncation_latent: jax.Array | None = None,
        noise: Sequence[jax.Array] | None = None,
        key: jax.Array | None = None,
        return_latents: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Images ``G(w)`` (MvInvert eq. 3) ``[B, size, size, 3]`` float32 in about [-1, 1].

        Args:
          styles: one array or a sequence of one or two: z ``[B, style_dim]`` (mapped to w), or with
            ``input_is_latent`` w ``[B, style_dim]`` (used by every layer) or W+ ``[B, n_latent, style_dim]``.
            Two styles mix: layers ``< inject_index`` read the first, the rest the second.
          inject_index: the mixing crossover in ``[1, n_latent - 1]`` (int or traced scalar), required for two.
          truncation, truncation_latent: ``w <- w_avg + truncation (w - w_avg)`` with ``w_avg [1, style_dim]``
            (e.g. ``mean_latent``); applied when ``truncation_latent`` is given.
          noise: ``num_layers`` arrays ``[B or 1, r, r, 1]`` (shapes: ``noise_shapes``); otherwise drawn from
            ``key``; with neither, the stored ``noise`` collection (rosinality's ``randomize_noise=False``).
          return_latents: also return the W+ latent ``[B, n_latent, style_dim]`` that was synthesised.
        """
        styles = [styles] if hasattr(styles, "shape") else list(styles)
        if len(styles) not in (1, 2):
            raise ValueError(f"pass one style (or two to mix), got {len(styles)}")
        if not input_is_latent:
            for s in styles:
                if s.ndim != 2 or s.shape[-1] != self.style_dim:
                    raise ValueError(f"z must be [B, {self.style_dim}], got {s.shape}; W/W+ needs input_is_latent=True")
            styles = [self.mapping(s) for s in styles]
        if truncation_latent is not None:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        elif not (isinstance(truncation, int | float) and truncation == 1):
            raise ValueError("truncation needs truncation_latent (the mean latent: Generator.mean_latent)")
        latent = self._latent(styles, inject_index)
        image = self.synthesis(latent, self._noise(latent.shape[0], noise, key))
        return (image, latent) if return_latents else image

    def _latent(self, styles: list[jax.Array], inject_index) -> jax.Array:
        n = self.n_latent
        if len(styles) == 1:
            w = styles[0]
            if w.ndim == 2:
                return jnp.repeat(w[:, None, :], n, axis=1)
            if w.shape[1:] != (n, self.style_dim):
                raise ValueError(f"W+ latents must be [B, {n}, {self.style_dim}] for size {self.size}, got {w.shape}")
            return w
        if any(s.ndim != 2 for s in styles):
            raise ValueError("style mixing takes two [B, style_dim] styles (z or w), not W+ latents")
        if inject_index is None:
            raise ValueError(f"mixing two styles needs inject_index in [1, {n - 1}] (rosinality draws it uniformly)")
        if isinstance(inject_index, int) and not 1 <= inject_index < n:
            raise ValueError(f"inject_index must lie in [1, {n - 1}], got {inject_index}")
        first = (jnp.arange(n) < inject_index)[None, :, None]
        return jnp.where(first, styles[0][:, None, :], styles[1][:, None, :])

    def _noise(self, batch: int, noise, key) -> list[jax.Array]:
        shapes = self.noise_shapes()
        if noise is not None:
            if key is not None:
                raise ValueError("pass either noise or key, not both")
            if len(noise) != len(shapes):
                raise ValueError(f"noise must list {len(shapes)} arrays of shapes {shapes} (B or 1 leading)")
            for n, s in zip(noise, shapes, strict=True):
                if n.ndim != 4 or n.shape[1:] != s[1:] or n.shape[0] not in (1, batch):
                    raise ValueError(f"noise of shape {n.shape} where [{batch} or 1, {s[1]}, {s[2]}, 1] is needed")
            return list(noise)
        if key is not None:  # one draw for all layers: one RNG kernel to compile
            sizes = [s[1] * s[2] for s in shapes]
            flat = jnp.split(
                jax.random.normal(key, (batch, sum(sizes))), list(itertools.accumulate(sizes[:-1])), axis=1
            )
            return [f.reshape(batch, *s[1:]) for f, s in zip(flat, shapes, strict=True)]
        if self.noises is None:
            raise ValueError(
                "no noise given: pass noise=[...] or key=..., or apply with the 'noise' collection of the variables "
                "(from init or faceflax.weights.stylegan2.load_generator)"
            )
        return self.noises

    def synthesis(self, latent: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
        """Synthesis network: W+ ``[B, n_latent, D]``, ``num_layers`` noises -> images ``[B, size, size, 3]``."""
        out = jnp.broadcast_to(self.input, (latent.shape[0], *self.input.shape[1:]))
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1
            out = self.convs[i - 1](out, latent[:, i], noise[i])
            out = self.convs[i](out, latent[:, i + 1], noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip


class ConvLayer(nn.Module):
    """Discriminator conv: optional blur + stride-2 (downsample), EqualConv2d, fused leaky ReLU (``activate``)."""

    features: int
    kernel_size: int
    downsample: bool = False
    use_bias: bool = True
    activate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[B, H, W, in]`` -> ``[B, H (or H/2), W (or W/2), features]``."""
        k = self.kernel_size
        if self.downsample:
            p = 2 + (k - 1)
            x = blur(x, ((p + 1) // 2, p // 2))
        stride, padding = (2, 0) if self.downsample else (1, k // 2)
        x = EqualConv2d(self.features, k, stride, padding, use_bias=self.use_bias and not self.activate, name="conv")(x)
        if not self.activate:
            return x
        return FusedLeakyReLU(name="activate")(x) if self.use_bias else fused_leaky_relu(x)


class ResBlock(nn.Module):
    """``(conv2(conv1(x)) + skip(x)) / sqrt(2)`` with 2x blur-downsampling in ``conv2`` and the 1x1 skip."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[B, H, W, in]`` -> ``[B, H/2, W/2, features]``."""
        out = ConvLayer(x.shape[-1], 3, name="conv1")(x)
        out = ConvLayer(self.features, 3, downsample=True, name="conv2")(out)
        skip = ConvLayer(self.features, 1, downsample=True, use_bias=False, activate=False, name="skip")(x)
        return (out + skip) / SQRT2


class Discriminator(nn.Module):
    """rosinality's StyleGAN2 ``Discriminator``: 1x1 from-RGB, ResBlocks down to 4x4, minibatch stddev
    (groups of ``min(B, 4)``), 3x3 conv, two EqualLinear layers to one logit."""

    size: int
    channel_multiplier: int = 2
    channels: tuple[int, ...] | None = None
    stddev_group: int = 4

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """images: ``[B, size, size, 3]`` in about [-1, 1] -> logits ``[B, 1]``."""
        widths = channel_table(self.size, self.channel_multiplier, self.channels)
        if images.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"the discriminator takes [B, {self.size}, {self.size}, 3] images, got {images.shape}")
        out = ConvLayer(widths[-1], 1, name="convs_0")(images)
        for i, width in enumerate(reversed(widths[:-1])):
            out = ResBlock(width, name=f"convs_{i + 1}")(out)
        batch, height, width, channels = out.shape
        group = min(batch, self.stddev_group)
        if batch % group:
            raise ValueError(f"batch {batch} must be divisible by the minibatch-stddev group {group}")
        grouped = out.reshape(group, batch // group, height, width, channels)
        stddev = jnp.sqrt(jnp.var(grouped, axis=0) + 1e-8).mean(axis=(1, 2, 3))
        stddev = jnp.broadcast_to(jnp.tile(stddev, group)[:, None, None, None], (batch, height, width, 1))
        out = ConvLayer(widths[0], 3, name="final_conv")(jnp.concatenate([out, stddev], axis=-1))
        out = EqualLinear(widths[0], activate=True, name="final_linear_0")(out.reshape(batch, -1))
        return EqualLinear(1, name="final_linear_1")(out)
