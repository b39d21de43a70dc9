"""Inception v3 as FID computes it: pytorch-fid's ``FIDInceptionA/C/E`` variant of the TF 2015 graph.

FID (thesis eq. 2.69) and IS (eq. 2.65-2.68) are defined on this network: pool3 features (2048-d) for FID,
the 1008-way softmax for IS. pytorch-fid (``pytorch_fid/inception.py``, weights
``pt_inception-2015-12-05-6726825d.pth``) reproduces TensorFlow's numbers with torchvision's ``Inception3``
module names and four patched blocks: average pools that exclude padding (``count_include_pad=False``) in the
A, C and first E blocks, and a max pool in the last E block. Inputs are resized to 299x299 (bilinear,
``align_corners=False``, no antialiasing) and mapped to [-1, 1], as its ``resize_input`` / ``normalize_input``.
Convolutions have no bias; batch norm uses eps 0.001 and is always in inference mode (the weights are fixed).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

FID_SIZE = 299
NUM_LOGITS = 1008  # the TF graph's classes (1000 ImageNet + 8 unused), as pytorch-fid's fc


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps 0.001) + ReLU: torchvision's ``BasicConv2d`` (``.conv``, ``.bn``)."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        (ph, pw), s = self.padding, self.strides
        x = nn.Conv(self.features, self.kernel, (s, s), ((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool with padding 1 that averages only in-image pixels (``count_include_pad=False``)."""
    window, pad = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), pad)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    return total / jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, (1, 1, 1, 1), pad)


def _max_pool(x: jax.Array, strides: int, padding: int = 0) -> jax.Array:
    return nn.max_pool(x, (3, 3), (strides, strides), ((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(BasicConv2d(48, (1, 1), name="branch5x5_1")(x))
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        pool = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, pool], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
        d = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        d = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(d)
        d = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(d)
        return jnp.concatenate([b3, d, _max_pool(x, 2)], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        row, col = {"kernel": (1, 7), "padding": (0, 3)}, {"kernel": (7, 1), "padding": (3, 0)}
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c, **row, name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, **col, name="branch7x7_3")(b7)
        d = BasicConv2d(c, (1, 1), name="branch7x7dbl_1")(x)
        for k, (features, shape) in enumerate(((c, col), (c, row), (c, col), (192, row)), start=2):
            d = BasicConv2d(features, **shape, name=f"branch7x7dbl_{k}")(d)
        pool = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, d, pool], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(BasicConv2d(192, (1, 1), name="branch3x3_1")(x))
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x, 2)], -1)


class InceptionE(nn.Module):
    """``max_pool``: pytorch-fid's ``FIDInceptionE_2`` (the last block); else ``FIDInceptionE_1``."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        def split(y, prefix):
            a = BasicConv2d(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(y)
            return jnp.concatenate([a, BasicConv2d(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(y)], -1)

        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = split(BasicConv2d(384, (1, 1), name="branch3x3_1")(x), "branch3x3_2")
        d = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        d = split(BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(d), "branch3x3dbl_3")
        pooled = _max_pool(x, 1, 1) if self.max_pool else _avg_pool_exclude_pad(x)
        pool = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, d, pool], -1)


def resize_bilinear(images: jax.Array, size: Sequence[int]) -> jax.Array:
    """``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` on NHWC (no antialiasing)."""
    out = (images.shape[0], *size, images.shape[-1])
    return jax.image.resize(images, out, method="bilinear", antialias=False)


class FIDInceptionV3(nn.Module):
    """``images [B, H, W, 3]`` in [0, 1] -> ``{"pool3": [B, 2048], "logits": [B, 1008]}``.

    ``resize``: resize to 299x299 first (pytorch-fid's default); without it the input must be at least 75 px.
    """

    resize: bool = True

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        x = resize_bilinear(images, (FID_SIZE, FID_SIZE)) if self.resize else images
        x = 2.0 * x - 1.0
        x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = _max_pool(BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x), 2)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = _max_pool(BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x), 2)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(channels, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        return {"pool3": pool3, "logits": nn.Dense(NUM_LOGITS, name="fc")(pool3)}
