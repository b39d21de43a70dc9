"""ArcFace's face-recognition backbone (Deng et al. 2019): insightface arcface_torch's ``IResNet``, NHWC.

MvInvert's identity loss (seed 004, eq. 9) and the thesis' identity loss (eq. 5.7) and evaluation (Table 5.1)
compare ArcFace embeddings ``F^n(I)`` by cosine similarity. The layout is arcface_torch's
``backbones/iresnet.py``: a 3x3 stem conv (64 channels, no bias) + BN + PReLU; four stages of ``IBasicBlock``
(BN-conv3-BN-PReLU-conv3(stride)-BN plus a 1x1 conv + BN shortcut on each stage's first, stride-2, block) with
64/128/256/512 channels; BN, dropout, flatten of the 7x7x512 map, ``fc`` -> 512 and the ``features`` BatchNorm1d.
Submodule names are the state-dict names with ``.`` written ``_`` (``layer1_0/downsample_0`` is
``layer1.0.downsample.0``), which :mod:`faceflax.weights.arcface` relies on. One layout difference: ``fc`` reads
the map flattened NHWC, torch's NCHW; the converter permutes its kernel rows.

BatchNorm uses torch's ``eps=1e-5`` and momentum 0.1 (flax ``momentum=0.9``); running statistics live in the
``batch_stats`` collection and advance only with ``train=True`` (pass ``mutable=["batch_stats"]``).
Initialisers are flax's: weights are meant to come from a checkpoint.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

#: depth -> IBasicBlocks per stage, as arcface_torch's ``iresnet18`` ... ``iresnet100``.
IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
#: The aligned face crop arcface_torch trains and evaluates on.
INPUT_SIZE = 112


def torch_conv(features: int, size: int, strides: int = 1, use_bias: bool = False, name: str | None = None) -> nn.Conv:
    """``torch.nn.Conv2d(in, features, size, strides, padding=(size - 1) // 2)`` as a flax conv (HWIO kernel)."""
    pad = (size - 1) // 2
    return nn.Conv(features, (size, size), (strides, strides), [(pad, pad)] * 2, use_bias=use_bias, name=name)


def torch_batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
    """``torch.nn.BatchNorm2d`` / ``BatchNorm1d`` (eps 1e-5, momentum 0.1) over the last axis."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class PReLU(nn.Module):
    """``torch.nn.PReLU(C)``: ``max(x, 0) + a_c * min(x, 0)`` with one learnt slope per channel (init 0.25)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: ``[..., C]`` -> ``[..., C]``."""
        slope = self.param("negative_slope", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, slope * x)


class IBasicBlock(nn.Module):
    """BN-conv3-BN-PReLU-conv3(stride)-BN plus shortcut, no final activation: ``[B, H, W, C] -> [B, H/s, W/s, F]``."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = torch_conv(self.features, 3, name="conv1")(torch_batch_norm(train, "bn1")(x))
        h = PReLU(name="prelu")(torch_batch_norm(train, "bn2")(h))
        h = torch_batch_norm(train, "bn3")(torch_conv(self.features, 3, self.strides, name="conv2")(h))
        if self.strides != 1 or x.shape[-1] != self.features:
            x = torch_conv(self.features, 1, self.strides, name="downsample_0")(x)
            x = torch_batch_norm(train, "downsample_1")(x)
        return h + x


class IResNet(nn.Module):
    """arcface_torch's ``iresnet{depth}`` (18, 34, 50 or 100): aligned faces -> ``num_features``-d embeddings.

    ``__call__(images [B, 112, 112, 3], train)``: RGB in ``[0, 1]``, mapped to ``(x - 0.5) / 0.5`` inside as
    arcface_torch's inference; returns the embedding ``F(I) [B, num_features]`` (not normalised; eq. 9
    divides by its norm). ``dropout`` (arcface_torch's default 0) needs a ``dropout`` rng when training.
    """

    depth: int = 50
    num_features: int = 512
    dropout: float = 0.0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if self.depth not in IRESNET_LAYERS:
            raise ValueError(f"iresnet depth {self.depth} is not arcface_torch's; use one of {sorted(IRESNET_LAYERS)}")
        if images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"ArcFace takes aligned RGB faces [B, {INPUT_SIZE}, {INPUT_SIZE}, 3], got {images.shape}: "
                f"align and resize the faces to {INPUT_SIZE}x{INPUT_SIZE} first"
            )
        h = torch_conv(64, 3, name="conv1")((images - 0.5) / 0.5)
        h = PReLU(name="prelu")(torch_batch_norm(train, "bn1")(h))
        for stage, blocks in enumerate(IRESNET_LAYERS[self.depth]):
            for index in range(blocks):
                h = IBasicBlock(64 * 2**stage, 2 if index == 0 else 1, name=f"layer{stage + 1}_{index}")(h, train)
        h = torch_batch_norm(train, "bn2")(h).reshape(h.shape[0], -1)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return torch_batch_norm(train, "features")(nn.Dense(self.num_features, name="fc")(h))
