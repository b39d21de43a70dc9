"""Gated convolution and gated residual blocks (Yu et al., "Free-Form Image Inpainting with Gated
Convolution", ICCV 2019, sec. 3.2), the building blocks of the de-occlusion generator N_G (thesis sec. 5.3.4:
"constructed from stacked gated residual blocks [47]").
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

from faceflax.nn.conv import Conv, conv

Activation = Callable[[jax.Array], jax.Array]


class GatedConv(nn.Module):
    """``O = act(conv_f(x)) * sigmoid(conv_g(x))``: a feature conv modulated by a learned soft mask (sec. 3.2).

    ``conv_f`` (submodule ``feature``) and ``conv_g`` (``gating``) have the same size, stride, dilation and
    padding, each with its own spectral norm when ``spectral_norm``. ``activation`` defaults to ELU, as in
    Yu et al.; ``None`` leaves the features linear. The gate ``[B, H', W', features]`` in (0, 1) is sown
    as ``intermediates/gate`` (``apply(..., mutable=["intermediates"])`` to read it).
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    dilation: int = 1
    padding: str | Sequence[tuple[int, int]] = "SAME"
    activation: Activation | None = nn.elu
    spectral_norm: bool = False
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = True) -> jax.Array:
        """x: ``[B, H, W, C]`` float32 -> ``[B, H', W', features]``."""
        opts = {
            "strides": self.strides,
            "dilation": self.dilation,
            "padding": self.padding,
            "use_bias": self.use_bias,
            "spectral_norm": self.spectral_norm,
            "update_stats": update_stats,
        }
        feature = conv(self.features, self.kernel_size, name="feature", **opts)(x)
        gate = jax.nn.sigmoid(conv(self.features, self.kernel_size, name="gating", **opts)(x))
        self.sow("intermediates", "gate", gate)
        if self.activation is not None:
            feature = self.activation(feature)
        return feature * gate


class GatedResBlock(nn.Module):
    """``gated2(gated1(x)) + shortcut(x)`` with 3x3 gated convs (thesis sec. 5.3.4, N_G).

    ``gated1`` carries the stride; both are dilated by ``dilation`` and padded by it on every side
    (PyTorch's ``padding=dilation``, ``SAME`` at stride 1, output ``ceil(H / strides)``). The shortcut is
    the identity, or a 1x1 strided projection when the stride or channel count changes: a plain conv, or
    with ``gated_shortcut`` a :class:`GatedConv` without activation.
    """

    features: int
    strides: int = 1
    dilation: int = 1
    activation: Activation | None = nn.elu
    spectral_norm: bool = False
    gated_shortcut: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = True) -> jax.Array:
        """x: ``[B, H, W, C]`` float32 -> ``[B, ceil(H / strides), ceil(W / strides), features]``."""
        d, sn = self.dilation, self.spectral_norm
        opts = {"dilation": d, "padding": ((d, d), (d, d)), "activation": self.activation, "spectral_norm": sn}
        h = GatedConv(self.features, 3, self.strides, name="gated1", **opts)(x, update_stats)
        h = GatedConv(self.features, 3, name="gated2", **opts)(h, update_stats)
        if self.strides == 1 and x.shape[-1] == self.features:
            return h + x
        if self.gated_shortcut:
            projection = GatedConv(self.features, 1, self.strides, activation=None, spectral_norm=sn, name="shortcut")
        else:
            projection = Conv(self.features, (1, 1), (self.strides, self.strides), spectral_norm=sn, name="shortcut")
        return h + projection(x, update_stats)
