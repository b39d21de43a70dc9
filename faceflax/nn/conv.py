"""Conv and dense layers whose kernel is optionally spectrally normalised (thesis eq. 2.59-2.61).

Both take ``update_stats`` (advance the power iteration's ``u``; ignored without spectral norm).
4x4 stride-2 ``SAME`` transposed convolutions run through :mod:`faceflax.nn.stride2`, which
computes the same function with fast gradients on XLA:CPU.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from faceflax.nn.spectral_norm import SpectralKernel
from faceflax.nn.stride2 import NHWC_DIMS, conv_transpose_stride2


def _kernel(module: nn.Module, shape: tuple[int, ...], spectral_norm: bool, update_stats: bool):
    init = nn.initializers.lecun_normal()
    if spectral_norm:
        return SpectralKernel(shape, init, name="sn")(update_stats)
    return module.param("kernel", init, shape)


def convolve(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int],
    padding,
    transpose: bool,
    dilation: tuple[int, int] = (1, 1),
) -> jax.Array:
    """NHWC (transposed) convolution with an HWIO kernel, with the stride-2 transposed fast path.

    ``dilation`` spaces the kernel taps (atrous convolution, PyTorch's ``dilation``); plain convs only.
    """
    if not transpose:
        return jax.lax.conv_general_dilated(
            x, kernel, strides, padding, rhs_dilation=dilation, dimension_numbers=NHWC_DIMS
        )
    if dilation != (1, 1):
        raise ValueError(f"dilation {dilation} needs transpose=False; dilated transposed convs are not supported")
    if strides == (2, 2) and kernel.shape[:2] == (4, 4) and padding == "SAME":
        return conv_transpose_stride2(x, kernel)
    return jax.lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=NHWC_DIMS)


class Conv(nn.Module):
    """2-D convolution (or ``transpose``-d, as ``flax.linen.ConvTranspose``), NHWC.

    The kernel is ``[kh, kw, in, out]``; with ``spectral_norm`` it lives in submodule ``sn``
    beside its ``u`` vector and is divided by its spectral norm.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    transpose: bool = False
    spectral_norm: bool = False
    kernel_dilation: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = True) -> jax.Array:
        """x: ``[B, H, W, C]`` -> ``[B, H', W', features]``."""
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = _kernel(self, shape, self.spectral_norm, update_stats)
        y = convolve(x, kernel, tuple(self.strides), self.padding, self.transpose, tuple(self.kernel_dilation))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class Dense(nn.Module):
    """Dense layer ``[..., in] -> [..., features]``, optionally spectrally normalised."""

    features: int
    use_bias: bool = True
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = True) -> jax.Array:
        kernel = _kernel(self, (x.shape[-1], self.features), self.spectral_norm, update_stats)
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def conv(
    features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    spectral_norm: bool,
    update_stats: bool,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    transpose: bool = False,
    use_bias: bool = True,
    dilation: int = 1,
    name: str | None = None,
):
    """A :class:`Conv` as a function ``x -> y`` with ``update_stats`` bound; call in ``nn.compact``."""
    size, step, spacing = (kernel_size, kernel_size), (strides, strides), (dilation, dilation)
    layer = Conv(features, size, step, padding, use_bias, transpose, spectral_norm, spacing, name=name)
    return lambda x: layer(x, update_stats)


def dense(
    features: int,
    *,
    spectral_norm: bool,
    update_stats: bool,
    use_bias: bool = True,
    name: str | None = None,
):
    """A :class:`Dense` as a function ``x -> y`` with ``update_stats`` bound; call in ``nn.compact``."""
    layer = Dense(features, use_bias, spectral_norm, name=name)
    return lambda x: layer(x, update_stats)
