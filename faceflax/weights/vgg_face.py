"""Albanie's VGG-Face checkpoint (``vgg_face_dag.pth``) -> :class:`faceflax.models.vgg_face.VGGFace` variables.

The supported layout is the plain state dict that ``vgg_face_dag.py`` (Albanie's MatConvNet -> PyTorch
conversion of Parkhi et al.'s VGG-Face, `robots.ox.ac.uk/~albanie/pytorch-models.html`) loads:
``conv1_1.weight [64, 3, 3, 3]``, ``conv1_1.bias``, ..., ``conv5_3.*``, ``fc6.weight [4096, 25088]``,
``fc6.bias``, ``fc7.*``, ``fc8.weight [2622, 4096]``, ``fc8.bias`` (32 tensors), or an ``.npz`` of the same
names. Conv ``weight [O, I, kh, kw]`` becomes ``kernel [kh, kw, I, O]``; linear ``weight [out, in]`` becomes
``kernel [in, out]``, with ``fc6``'s input rows reordered from torch's flattening of ``pool5 [512, 7, 7]``
(channel-major) to NHWC's ``[7, 7, 512]``. Usage::

    variables = convert_vgg_face("vgg_face_dag.pth", include_top=False)
    activations = VGGFace().apply(variables, images, method="features")  # {3: relu1_2, ..., 29: relu5_3}
"""

import os

import jax
import jax.numpy as jnp

from faceflax.models.vgg_face import IMAGE_SIZE, VGGFace
from faceflax.weights.state_dict import StateDict, load_state_dict, nchw_rows_to_nhwc, torch_variables

_POOL5 = (IMAGE_SIZE // 32, IMAGE_SIZE // 32, 512)


def vgg_face_variables(
    state: StateDict, num_classes: int = 2622, fc_features: int = 4096, include_top: bool = True
) -> dict:
    """VGG-Face's tensors from ``state`` -> ``{"params"}`` (float32 numpy) of ``VGGFace(num_classes, fc_features)``.

    ``include_top=False`` converts the convolutions only (what ``VGGFace.features`` needs; 14.7 M of the
    145 M parameters) and skips ``fc6``-``fc8``. Does not call ``state.finish()``.
    """
    model = VGGFace(num_classes, fc_features)
    images = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3))
    method = None if include_top else "features"
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images, method=method))
    variables = torch_variables(state, {"params": template["params"]})
    if include_top:
        fc6 = variables["params"]["fc6"]
        fc6["kernel"] = nchw_rows_to_nhwc(fc6["kernel"], *_POOL5[:2])
    if not include_top:
        state.skip(*(f"fc{i}.{leaf}" for i in (6, 7, 8) for leaf in ("weight", "bias")))
    return variables


def convert_vgg_face(
    path: str | os.PathLike, num_classes: int = 2622, fc_features: int = 4096, include_top: bool = True
) -> dict:
    """``vgg_face_dag.pth`` (or an ``.npz`` of its state dict) -> ``VGGFace(num_classes, fc_features)`` variables.

    Raises ``ValueError`` listing missing and unexpected keys (a checkpoint of another layout, e.g. a
    torchvision-style ``features.0.weight`` one) or naming a tensor of the wrong shape.
    """
    state = StateDict(load_state_dict(path), f"VGG-Face checkpoint '{path}' (vgg_face_dag.pth layout)")
    variables = vgg_face_variables(state, num_classes, fc_features, include_top)
    state.finish()
    return variables
