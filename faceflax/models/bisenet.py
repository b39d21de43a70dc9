"""BiSeNet face parsing (Yu et al. 2018) as zllrunning/face-parsing.PyTorch, trained on CelebAMask-HQ.

The face segmentation of MvInvert (seed 004, sec. 4: "a modified BiSeNet pre-trained on CelebAMask-HQ ... for
face segmentation and facial region mask prediction") and a stand-in for the thesis' face masks ``M_f``
(sec. 5.3.2, eq. 5.1; ch. 4's ground-truth face masks). The layout is that repository's ``model.py`` and
``resnet.py``, whose public checkpoint ``79999_iter.pth`` :mod:`faceflax.weights.bisenet` converts; submodules
carry its state-dict names:

- ``cp`` (``ContextPath``): ``resnet``, a ResNet-18 trunk (torchvision's layout without ``fc``:
  :class:`faceflax.nn.resnet.ResNet`, whose ``layer1_0`` is torch's ``layer1.0``) giving ``feat8`` (layer2,
  128 ch), ``feat16`` (layer3, 256) and ``feat32`` (layer4, 512); ``conv_avg`` (1x1 ConvBNReLU of the global
  mean of ``feat32``); ``arm32`` / ``arm16`` (``AttentionRefinementModule`` -> 128 ch); ``conv_head32`` /
  ``conv_head16`` (3x3 ConvBNReLU after nearest upsampling to the next stride);
- ``ffm`` (``FeatureFusionModule(256, 256)``) fusing ``feat8`` (the "spatial path" of this variant) with the
  context path at stride 8;
- heads ``conv_out`` (``BiSeNetOutput(256, 256, 19)``), ``conv_out16`` and ``conv_out32`` (``(128, 64, 19)``),
  each upsampled to the input size bilinearly with ``align_corners=True``.

BatchNorm is torch's (eps 1e-5, momentum 0.1, i.e. flax ``momentum=0.9``); running statistics live in
``batch_stats``. Initialisers are flax's: weights are meant to come from a checkpoint.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from faceflax.nn.resnet import ResNet, imagenet_normalize

#: The input size face-parsing.PyTorch resizes faces to (its ``test.py``); any size runs.
IMAGE_SIZE = 512
#: The 19 classes in label order: 0 is background, 1-18 the CelebAMask-HQ attributes as that repository's
#: ``face_dataset.py`` numbers them (``atts``, from 1).
CLASSES = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)
#: The face region: the thesis gathers "the labels of eyes, nose, lips, mouth, and skin" (sec. 5.3.2); the brows
#: are added, as they lie inside the face and would otherwise count as occlusions in eq. 5.1. Eyeglasses
#: (``eye_g``), ears, neck, hair and hat are outside.
FACE_CLASSES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")


def _source_index_nearest(in_size: int, out_size: int) -> np.ndarray:
    """torch's ``nearest`` source rows: ``min(floor(dst * (in / out)), in - 1)`` in float32, as ATen."""
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64), in_size - 1)


def resize_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``F.interpolate(x, size, mode="nearest")`` of ``[B, H, W, C]`` -> ``[B, *size, C]``, torch's exact indices."""
    rows, cols = (_source_index_nearest(n, m) for n, m in zip(x.shape[1:3], size, strict=True))
    return jnp.take(jnp.take(x, rows, axis=1), cols, axis=2)


def _lerp_along(x: jax.Array, axis: int, out_size: int) -> jax.Array:
    """Linear interpolation along ``axis`` with ``align_corners=True``, as ATen's ``upsample_bilinear2d`` (float32)."""
    in_size = x.shape[axis]
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0.0)
    source = np.arange(out_size, dtype=np.float32) * scale
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    weight = np.clip(source - low.astype(np.float32), 0.0, 1.0)
    shape = [1] * x.ndim
    shape[axis] = out_size
    weight = jnp.asarray(weight.reshape(shape), x.dtype)
    return jnp.take(x, low, axis=axis) * (1.0 - weight) + jnp.take(x, high, axis=axis) * weight


def resize_bilinear_align_corners(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``F.interpolate(x, size, mode="bilinear", align_corners=True)`` of ``[B, H, W, C]`` -> ``[B, *size, C]``.

    Corner pixels of input and output coincide: output row ``i`` samples input row ``i (H - 1) / (size[0] - 1)``
    (row 0 for a one-row output). Width first, then height, as torch.
    """
    return _lerp_along(_lerp_along(x, 2, size[1]), 1, size[0])


class ConvBNReLU(nn.Module):
    """``ConvBNReLU(in, features, ks=kernel, stride=1, padding=(kernel - 1) // 2)``: conv (no bias), BN, ReLU."""

    features: int
    kernel: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        pad = (self.kernel - 1) // 2
        x = nn.Conv(self.features, (self.kernel,) * 2, padding=[(pad, pad)] * 2, use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(not train, momentum=0.9, epsilon=1e-5, name="bn")(x))


class AttentionRefinementModule(nn.Module):
    """3x3 ConvBNReLU, times a channel attention ``sigmoid(bn_atten(conv_atten(global mean)))``: ``-> [B, H, W, features]``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        feat = ConvBNReLU(self.features, name="conv")(x, train)
        atten = nn.Conv(self.features, (1, 1), use_bias=False, name="conv_atten")(jnp.mean(feat, (1, 2), keepdims=True))
        atten = nn.BatchNorm(not train, momentum=0.9, epsilon=1e-5, name="bn_atten")(atten)
        return feat * nn.sigmoid(atten)


class ContextPath(nn.Module):
    """ResNet-18 trunk with attention refinement: ``[B, H, W, 3]`` -> (feat8 ``[B, H/8, W/8, 128]``, the
    context at stride 8 ``[B, H/8, W/8, 128]``, at stride 16 ``[B, H/16, W/16, 128]``) (sizes rounded up)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
        _, (_, _, feat8, feat16, feat32) = ResNet(18, None, return_features=True, name="resnet")(x, train)
        avg = ConvBNReLU(128, 1, name="conv_avg")(jnp.mean(feat32, (1, 2), keepdims=True), train)
        feat32_sum = AttentionRefinementModule(128, name="arm32")(feat32, train) + avg
        feat32_up = ConvBNReLU(128, name="conv_head32")(resize_nearest(feat32_sum, feat16.shape[1:3]), train)
        feat16_sum = AttentionRefinementModule(128, name="arm16")(feat16, train) + feat32_up
        feat16_up = ConvBNReLU(128, name="conv_head16")(resize_nearest(feat16_sum, feat8.shape[1:3]), train)
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    """Concatenation -> 1x1 ConvBNReLU ``convblk``, plus itself times a squeeze-excitation attention (``conv1`` to
    ``features // 4``, ReLU, ``conv2``, sigmoid): ``-> [B, H, W, features]``."""

    features: int

    @nn.compact
    def __call__(self, spatial: jax.Array, context: jax.Array, train: bool) -> jax.Array:
        feat = ConvBNReLU(self.features, 1, name="convblk")(jnp.concatenate([spatial, context], axis=-1), train)
        atten = nn.Conv(self.features // 4, (1, 1), use_bias=False, name="conv1")(jnp.mean(feat, (1, 2), keepdims=True))
        atten = nn.sigmoid(nn.Conv(self.features, (1, 1), use_bias=False, name="conv2")(nn.relu(atten)))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    """A segmentation head: 3x3 ConvBNReLU to ``mid`` channels, 1x1 ``conv_out`` (no bias) to ``classes``."""

    mid: int
    classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = ConvBNReLU(self.mid, name="conv")(x, train)
        return nn.Conv(self.classes, (1, 1), use_bias=False, name="conv_out")(x)


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's ``BiSeNet(n_classes=19)``: face images -> per-pixel logits over :data:`CLASSES`.

    ``__call__(images [B, H, W, 3], train=False)``: RGB in [0, 1] (normalised inside with ImageNet's mean and
    std, as that repository's ``to_tensor``), faces resized to :data:`IMAGE_SIZE` as it was trained. Returns
    logits ``[B, H, W, n_classes]`` at the input resolution; with ``return_aux`` the tuple of the main and
    the two auxiliary heads' logits (``conv_out16``, ``conv_out32``; the training losses' extra terms).
    ``train=True`` uses batch statistics (pass ``mutable=["batch_stats"]``).
    """

    n_classes: int = len(CLASSES)
    return_aux: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array | tuple[jax.Array, jax.Array, jax.Array]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"BiSeNet takes RGB images [B, H, W, 3] in [0, 1], got shape {images.shape}")
        size = images.shape[1:3]
        feat8, context8, context16 = ContextPath(name="cp")(imagenet_normalize(images), train)
        fused = FeatureFusionModule(256, name="ffm")(feat8, context8, train)
        heads = (
            BiSeNetOutput(256, self.n_classes, name="conv_out")(fused, train),
            BiSeNetOutput(64, self.n_classes, name="conv_out16")(context8, train),
            BiSeNetOutput(64, self.n_classes, name="conv_out32")(context16, train),
        )
        logits = tuple(resize_bilinear_align_corners(h, size) for h in heads)
        return logits if self.return_aux else logits[0]


def face_mask(logits: jax.Array, classes: Sequence[str] = FACE_CLASSES) -> jax.Array:
    """Where the most likely class is one of ``classes``: logits ``[B, H, W, 19]`` -> float32 mask ``[B, H, W, 1]``.

    The thesis' face mask ``M_f`` (sec. 5.3.2, eq. 5.1) from :class:`BiSeNet`'s logits; ``classes`` are names
    of :data:`CLASSES` (default :data:`FACE_CLASSES`).
    """
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise ValueError(f"face_mask: unknown classes {unknown}; choose from {list(CLASSES)}")
    if logits.shape[-1] != len(CLASSES):
        raise ValueError(f"face_mask needs logits over the {len(CLASSES)} CLASSES in the last axis, got {logits.shape}")
    labels = jnp.argmax(logits, axis=-1)
    chosen = jnp.asarray([CLASSES.index(c) for c in classes], labels.dtype)
    return jnp.any(labels[..., None] == chosen, axis=-1, keepdims=True).astype(jnp.float32)
