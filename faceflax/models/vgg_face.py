"""VGG-Face (Parkhi et al. 2015): VGG-16 trained on 2,622 identities, the perceptual network of thesis eq. 3.5.

The layout is Albanie's PyTorch conversion of the MatConvNet release (``vgg_face_dag.py`` with weights
``vgg_face_dag.pth``, the checkpoint perceptual-loss code usually loads; :mod:`faceflax.weights.vgg_face`):
13 3x3 convs ``conv1_1 ... conv5_3`` (padding 1, bias, ReLU after each) in five blocks of 64, 128, 256, 512, 512
channels, a 2x2 stride-2 max pool after each block, then ``fc6`` (512*7*7 -> 4096), ``fc7`` (4096 -> 4096) and
``fc8`` (4096 -> 2622) with ReLU between (the dropout there is inactive at inference and omitted).
145,002,878 parameters.

Layer indices are torchvision's ``vgg16().features`` indices, which ``Vgg_face_dag``'s module order matches:
0 conv1_1, 1 relu1_1, 2 conv1_2, 3 relu1_2, 4 pool1, ..., 29 relu5_3, 30 pool5 (:data:`LAYER_NAMES`). Thesis
eq. 3.5 compares the activations at :data:`PERCEPTUAL_LAYERS` = 3, 8, 15, 22, 29 (relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3: "the last convolutional layer of each feature map scale").

Preprocessing, as the checkpoint's ``meta``: RGB in [0, 255] minus the per-channel mean :data:`MEAN`, std 1,
224x224 faces. :class:`VGGFace` takes images in [0, 1] and applies it itself (:func:`preprocess`).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

#: (channels, convs) per block of VGG-16.
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
#: Names of the 31 layers of ``features``, by torchvision index.
LAYER_NAMES = tuple(
    name
    for block, (_, convs) in enumerate(BLOCKS, 1)
    for name in (*(f"{kind}{block}_{i}" for i in range(1, convs + 1) for kind in ("conv", "relu")), f"pool{block}")
)
#: The layers of thesis eq. 3.5: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
PERCEPTUAL_LAYERS = (3, 8, 15, 22, 29)
#: RGB mean in [0, 255] that ``vgg_face_dag.pth`` expects subtracted (its ``meta["mean"]``; std is 1).
MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)
#: The input size the classifier (``fc6``) needs; the convolutional features take any size.
IMAGE_SIZE = 224


def preprocess(images: jax.Array) -> jax.Array:
    """RGB ``[..., 3]`` in [0, 1] -> the checkpoint's input: ``255 * images - MEAN``."""
    return images * 255.0 - jnp.asarray(MEAN, images.dtype)


class VGGFace(nn.Module):
    """VGG-Face with ``Vgg_face_dag``'s names (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``fc8``).

    ``features`` gives the activations of thesis eq. 3.5; ``__call__`` the identity logits. ``fc_features``
    (4096 in the published model) is the width of ``fc6``/``fc7``.
    """

    num_classes: int = 2622
    fc_features: int = 4096

    def setup(self):
        for block, (channels, convs) in enumerate(BLOCKS, 1):
            for i in range(1, convs + 1):
                setattr(self, f"conv{block}_{i}", nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1))))
        self.fc6 = nn.Dense(self.fc_features)
        self.fc7 = nn.Dense(self.fc_features)
        self.fc8 = nn.Dense(self.num_classes)

    def features(self, images: jax.Array, layers: Sequence[int] = PERCEPTUAL_LAYERS) -> dict[int, jax.Array]:
        """images ``[B, H, W, 3]`` RGB in [0, 1] -> ``{index: [B, H / 2^k, W / 2^k, C]}`` at each of ``layers``.

        ``layers``: indices into :data:`LAYER_NAMES` (static); the network runs only up to the deepest. H and W
        need not be 224 (each pool floors odd sizes, as torch's ``MaxPool2d``).
        """
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"VGG-Face takes RGB images [B, H, W, 3] in [0, 1]; got shape {images.shape}")
        wanted = set(layers)
        if not wanted or not wanted <= set(range(len(LAYER_NAMES))):
            raise ValueError(
                f"VGG-Face layer indices run 0..{len(LAYER_NAMES) - 1} (see LAYER_NAMES; the thesis uses "
                f"{PERCEPTUAL_LAYERS}); got {tuple(layers)}"
            )
        x, out = preprocess(images), {}
        for index, name in enumerate(LAYER_NAMES[: max(wanted) + 1]):
            if name.startswith("conv"):
                x = getattr(self, name)(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            else:
                x = nn.max_pool(x, (2, 2), (2, 2))
            if index in wanted:
                out[index] = x
        return out

    def __call__(self, images: jax.Array) -> jax.Array:
        """images ``[B, 224, 224, 3]`` RGB in [0, 1] -> ``[B, num_classes]`` identity logits (``fc8``)."""
        if images.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"VGG-Face's classifier needs {IMAGE_SIZE}x{IMAGE_SIZE} faces, got {images.shape[1:3]}: resize them "
                "(jax.image.resize), or use VGGFace.features, which takes any size"
            )
        x = self.features(images, (len(LAYER_NAMES) - 1,))[len(LAYER_NAMES) - 1]
        x = nn.relu(self.fc6(x.reshape(x.shape[0], -1)))
        return self.fc8(nn.relu(self.fc7(x)))
