"""FaceNet (Schroff et al. 2015) as facenet-pytorch's ``InceptionResnetV1`` (Inception-ResNet-v1, Szegedy et al. 2017).

The identity network of thesis eq. 4.10 (``L_id = ||F(I_1^R) - F(I^m)||_1`` on the 512-d embedding) and the
feature network of MvInvert's perceptual loss (seed 004, eq. 8: distances of intermediate activations
``F_j``, FaceNet pretrained on CASIA-WebFace; pass :attr:`InceptionResnetV1.return_features` outputs to
:func:`faceflax.losses.features.perceptual_loss` with ``distance="l2"``).

The layout is timesler/facenet-pytorch's ``models/inception_resnet_v1.py``, whose public checkpoints are
``20180402-114759-vggface2.pt`` (8,631-way ``logits``) and ``20180408-102900-casia-webface.pt`` (10,575-way),
converted by :mod:`faceflax.weights.facenet`. Submodules carry the state-dict names, an ``nn.Sequential``'s
children named ``0``, ``1``, ... (``repeat_1/0/branch1/1/conv`` is ``repeat_1.0.branch1.1.conv``):

- ``BasicConv2d``: conv without bias, BatchNorm (eps 0.001, TensorFlow's), ReLU (``.conv``, ``.bn``);
- stem ``conv2d_1a`` (3x3/2, 32), ``conv2d_2a`` (3x3, 32), ``conv2d_2b`` (3x3 pad 1, 64), ``maxpool_3a`` (3x3/2),
  ``conv2d_3b`` (1x1, 80), ``conv2d_4a`` (3x3, 192), ``conv2d_4b`` (3x3/2, 256);
- ``repeat_1``: 5 ``Block35`` (scale 0.17), ``mixed_6a`` (-> 896), ``repeat_2``: 10 ``Block17`` (0.10),
  ``mixed_7a`` (-> 1792), ``repeat_3``: 5 ``Block8`` (0.20), ``block8`` (scale 1, no ReLU);
- global average pool ``avgpool_1a``, dropout (0.6, training only), ``last_linear`` 1792 -> 512 without bias,
  ``last_bn`` (BatchNorm1d, eps 0.001), then the L2-normalised embedding or, with ``num_classes``, the
  ``logits`` linear layer (facenet-pytorch's ``classify=True``).

Unpadded convs and pools as in the original: a 160x160 face gives 17x17x256 after the stem, 8x8x896 after
``mixed_6a`` and 3x3x1792 after ``mixed_7a``. BatchNorm momentum is torch's 0.1 (flax ``momentum=0.9``); the
running statistics live in ``batch_stats``. Initialisers are flax's: weights are meant to come from a checkpoint.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

#: The face crop size facenet-pytorch's checkpoints were trained on (MTCNN's ``image_size=160``).
IMAGE_SIZE = 160
#: The smallest input for which ``mixed_7a`` still has a pixel.
MIN_SIZE = 75
#: Names of the feature maps :class:`InceptionResnetV1` returns with ``return_features``, in network order.
FEATURE_NAMES = (
    "conv2d_1a",
    "conv2d_2a",
    "conv2d_2b",
    "maxpool_3a",
    "conv2d_3b",
    "conv2d_4a",
    "conv2d_4b",
    "repeat_1",
    "mixed_6a",
    "repeat_2",
    "mixed_7a",
    "repeat_3",
    "block8",
)

# BasicConv2d specs (features, kernel, stride, padding) of Block35 / Block17 / Block8: branch0 is a single
# BasicConv2d, the other branches are nn.Sequential; the 1x1 ``conv2d`` maps their concatenation back.
_RESIDUAL_BRANCHES = {
    "block35": ((32, 1), ((32, 1), (32, 3, 1, 1)), ((32, 1), (32, 3, 1, 1), (32, 3, 1, 1))),
    "block17": ((128, 1), ((128, 1), (128, (1, 7), 1, (0, 3)), (128, (7, 1), 1, (3, 0)))),
    "block8": ((192, 1), ((192, 1), (192, (1, 3), 1, (0, 1)), (192, (3, 1), 1, (1, 0)))),
}


def fixed_image_standardization(images: jax.Array) -> jax.Array:
    """facenet-pytorch's ``fixed_image_standardization`` of images in [0, 1]: ``(255 x - 127.5) / 128``."""
    return (images * 255.0 - 127.5) / 128.0


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _max_pool(x: jax.Array) -> jax.Array:
    """``torch.nn.MaxPool2d(3, stride=2)``: no padding, floor mode."""
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 0.001) + ReLU: ``[B, H, W, C] -> [B, H', W', features]``."""

    features: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        pad = [(p, p) for p in _pair(self.padding)]
        x = nn.Conv(self.features, _pair(self.kernel), self.strides, pad, use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(not train, momentum=0.9, epsilon=1e-3, name="bn")(x))


class ConvSequence(nn.Module):
    """``BasicConv2d`` layers (``layers``: their field tuples) named ``0``, ``1``, ...: a torch ``nn.Sequential``."""

    layers: tuple[tuple, ...]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for index, spec in enumerate(self.layers):
            x = BasicConv2d(*spec, name=str(index))(x, train)
        return x


class InceptionResidual(nn.Module):
    """``Block35`` (256 channels), ``Block17`` (896) or ``Block8`` (1792): ``kind`` is ``"block35"`` etc.

    The branches, concatenated, go through the 1x1 ``conv2d`` (with bias) back to ``C``; the block returns
    ``relu(x + scale * conv2d(...))`` (no ReLU when ``relu=False``, the final ``block8``). ``[B, H, W, C]`` in and out.
    """

    kind: str
    scale: float = 1.0
    relu: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        first, *rest = _RESIDUAL_BRANCHES[self.kind]
        branches = [BasicConv2d(*first, name="branch0")(x, train)]
        branches += [ConvSequence(specs, name=f"branch{i}")(x, train) for i, specs in enumerate(rest, 1)]
        out = x + nn.Conv(x.shape[-1], (1, 1), name="conv2d")(jnp.concatenate(branches, axis=-1)) * self.scale
        return nn.relu(out) if self.relu else out


class Repeat(nn.Module):
    """``count`` :class:`InceptionResidual` blocks named ``0``, ``1``, ...: ``repeat_1`` / ``repeat_2`` / ``repeat_3``."""

    kind: str
    count: int
    scale: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for index in range(self.count):
            x = InceptionResidual(self.kind, self.scale, name=str(index))(x, train)
        return x


class Mixed6a(nn.Module):
    """``Mixed_6a``: 3x3/2 conv (384) | 1x1-3x3-3x3/2 convs (256) | 3x3/2 max pool: ``[B, H, W, 256] -> [B, H', W', 896]``."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        branch0 = BasicConv2d(384, 3, 2, name="branch0")(x, train)
        branch1 = ConvSequence(((192, 1), (192, 3, 1, 1), (256, 3, 2)), name="branch1")(x, train)
        return jnp.concatenate([branch0, branch1, _max_pool(x)], axis=-1)


class Mixed7a(nn.Module):
    """``Mixed_7a``: three conv branches (384, 256, 256 channels, stride 2) and a 3x3/2 max pool: ``896 -> 1792``."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        branch0 = ConvSequence(((256, 1), (384, 3, 2)), name="branch0")(x, train)
        branch1 = ConvSequence(((256, 1), (256, 3, 2)), name="branch1")(x, train)
        branch2 = ConvSequence(((256, 1), (256, 3, 1, 1), (256, 3, 2)), name="branch2")(x, train)
        return jnp.concatenate([branch0, branch1, branch2, _max_pool(x)], axis=-1)


class InceptionResnetV1(nn.Module):
    """facenet-pytorch's ``InceptionResnetV1``: faces -> 512-d unit embeddings (thesis eq. 4.10, MvInvert eq. 8).

    ``__call__(images [B, H, W, 3], train=False)``: RGB faces in [0, 1], aligned and cropped as MTCNN does for
    facenet-pytorch (:data:`IMAGE_SIZE` = 160; any size >= :data:`MIN_SIZE` runs); standardised inside
    (:func:`fixed_image_standardization`). Returns the embeddings ``[B, 512]`` (L2-normalised, torch's
    ``F.normalize``), or ``[B, num_classes]`` logits when ``num_classes`` is set. With ``return_features`` it
    returns ``(out, features)``: ``{name: [B, H_j, W_j, C_j]}`` for the blocks of :data:`FEATURE_NAMES` (outputs
    after their ReLU), MvInvert eq. 8's ``F_j``. ``train=True`` uses batch statistics (pass
    ``mutable=["batch_stats"]``) and dropout (pass ``rngs={"dropout": key}``).
    """

    num_classes: int | None = None
    dropout_rate: float = 0.6
    return_features: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False):
        if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[1:3]) < MIN_SIZE:
            raise ValueError(
                f"InceptionResnetV1 takes RGB faces [B, H, W, 3] of at least {MIN_SIZE} px, got {images.shape}; "
                f"resize the aligned crops to {IMAGE_SIZE}x{IMAGE_SIZE} as facenet-pytorch's weights expect"
            )
        stem = {
            "conv2d_1a": (32, 3, 2),
            "conv2d_2a": (32, 3, 1),
            "conv2d_2b": (64, 3, 1, 1),
            "maxpool_3a": None,
            "conv2d_3b": (80, 1, 1),
            "conv2d_4a": (192, 3, 1),
            "conv2d_4b": (256, 3, 2),
        }
        blocks = {
            "repeat_1": Repeat("block35", 5, 0.17, name="repeat_1"),
            "mixed_6a": Mixed6a(name="mixed_6a"),
            "repeat_2": Repeat("block17", 10, 0.10, name="repeat_2"),
            "mixed_7a": Mixed7a(name="mixed_7a"),
            "repeat_3": Repeat("block8", 5, 0.20, name="repeat_3"),
            "block8": InceptionResidual("block8", relu=False, name="block8"),
        }
        x = fixed_image_standardization(images)
        features = {}
        for name, spec in stem.items():
            x = _max_pool(x) if spec is None else BasicConv2d(*spec, name=name)(x, train)
            features[name] = x
        for name, block in blocks.items():
            x = block(x, train)
            features[name] = x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
        x = nn.Dense(512, use_bias=False, name="last_linear")(x)
        x = nn.BatchNorm(not train, momentum=0.9, epsilon=1e-3, name="last_bn")(x)
        if self.num_classes is None:
            out = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        else:
            out = nn.Dense(self.num_classes, name="logits")(x)
        return (out, features) if self.return_features else out
