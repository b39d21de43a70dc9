"""ResNets (He et al. 2016) with torchvision's exact architecture, NHWC.

The backbones of thesis ch. 5: the segmentation module N_S encodes with a ResNet-18 (sec. 5.3.2, see
:mod:`faceflax.nn.unet`) and the reconstruction module N_R regresses ``c in R^239`` with a ResNet-50
(sec. 5.3.3: ``ResNet(50, num_classes=239)``). The layout is torchvision's "v1.5": 7x7/2 stem conv
without bias, BN, ReLU, 3x3/2 max pool (padding 1); BasicBlock (two 3x3) or Bottleneck (1x1, 3x3, 1x1
with 4x expansion) with the stride on the 3x3 conv; a 1x1 conv + BN shortcut where the shape changes;
global average pool; fc. Submodule names follow torchvision's state-dict names with ``.`` written ``_``
(``layer1_0/downsample_0`` is ``layer1.0.downsample.0``), which :mod:`faceflax.weights.resnet` relies on.

BatchNorm uses torch's ``eps=1e-5`` and momentum 0.1 (flax ``momentum=0.9``); its running statistics live
in the ``batch_stats`` collection and advance only with ``train=True`` (pass ``mutable=["batch_stats"]``).
One difference remains: flax updates the running variance with the biased batch variance, torch with the
unbiased one (a factor ``n / (n - 1)`` over the ``n = B*H*W`` values of a channel).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

#: depth -> (block kind, blocks per stage), as torchvision's ``resnet18`` ... ``resnet152``.
STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: ImageNet channel statistics that torchvision's pretrained weights expect their inputs normalised by.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's init: kaiming_normal_(mode="fan_out", nonlinearity="relu") for convs; nn.Linear's default
# (uniform in +-1/sqrt(fan_in), weight and bias) for fc.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_fc_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _fc_bias_init(fan_in: int):
    bound = fan_in**-0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def imagenet_normalize(images: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB in ``[0, 1]`` -> ImageNet-standardised input for torchvision-trained weights."""
    return (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def _conv(features: int, size: int, strides: int = 1, name: str | None = None) -> nn.Conv:
    pad = (size - 1) // 2
    return nn.Conv(
        features, (size, size), (strides, strides), [(pad, pad)] * 2, use_bias=False, kernel_init=_conv_init, name=name
    )


def _bn(train: bool, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    """conv3(stride)-BN-ReLU-conv3-BN plus shortcut, ReLU: ``[B, H, W, C] -> [B, H/s, W/s, features]``."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = nn.relu(_bn(train, "bn1")(_conv(self.features, 3, self.strides, "conv1")(x)))
        h = _bn(train, "bn2")(_conv(self.features, 3, name="conv2")(h))
        if self.strides != 1 or x.shape[-1] != self.features:
            x = _bn(train, "downsample_1")(_conv(self.features, 1, self.strides, "downsample_0")(x))
        return nn.relu(h + x)


class Bottleneck(nn.Module):
    """conv1-BN-ReLU-conv3(stride)-BN-ReLU-conv1(4x)-BN plus shortcut, ReLU: ``-> [B, H/s, W/s, 4*features]``."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = 4 * self.features
        h = nn.relu(_bn(train, "bn1")(_conv(self.features, 1, name="conv1")(x)))
        h = nn.relu(_bn(train, "bn2")(_conv(self.features, 3, self.strides, "conv2")(h)))
        h = _bn(train, "bn3")(_conv(out, 1, name="conv3")(h))
        if self.strides != 1 or x.shape[-1] != out:
            x = _bn(train, "downsample_1")(_conv(out, 1, self.strides, "downsample_0")(x))
        return nn.relu(h + x)


class ResNet(nn.Module):
    """torchvision's ResNet-``depth`` (18, 34, 50, 101 or 152); thesis sec. 5.3.2-5.3.3 backbones.

    ``__call__(x [B, H, W, 3], train)``: ``x`` as the weights were trained on (:func:`imagenet_normalize`
    for torchvision's). Returns ``[B, num_classes]`` logits, or the pooled ``[B, 512]`` (BasicBlock) /
    ``[B, 2048]`` (Bottleneck) features when ``num_classes`` is None. With ``return_features`` it returns
    ``(out, features)``: the stem after ReLU (stride 2, 64 channels) and the four stages (strides 4, 8, 16,
    32; 64/128/256/512 channels, times 4 for Bottleneck), each ``[B, H_i, W_i, C_i]`` -- a U-Net's or FPN's
    skip inputs.
    """

    depth: int = 50
    num_classes: int | None = 1000
    return_features: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array | tuple[jax.Array, Sequence[jax.Array]]:
        if self.depth not in STAGES:
            raise ValueError(f"ResNet depth {self.depth} is not torchvision's; use one of {sorted(STAGES)}")
        kind, stage_sizes = STAGES[self.depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        h = nn.relu(_bn(train, "bn1")(_conv(64, 7, 2, "conv1")(x)))
        features = [h]
        h = nn.max_pool(h, (3, 3), (2, 2), [(1, 1), (1, 1)])
        for stage, blocks in enumerate(stage_sizes):
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                h = block(64 * 2**stage, strides, name=f"layer{stage + 1}_{index}")(h, train)
            features.append(h)
        out = jnp.mean(h, axis=(1, 2))
        if self.num_classes is not None:
            out = nn.Dense(self.num_classes, kernel_init=_fc_init, bias_init=_fc_bias_init(out.shape[-1]), name="fc")(
                out
            )
        return (out, features) if self.return_features else out
