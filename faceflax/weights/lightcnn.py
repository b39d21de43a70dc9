"""LightCNN-29 v2 checkpoint -> :class:`faceflax.models.lightcnn.LightCNN29v2` variables.

The supported layout is AlfredXiangWu/LightCNN's released ``LightCNN_29Layers_V2_checkpoint.pth.tar``: a dict
``{"epoch", "arch", "state_dict", ...}`` whose ``state_dict`` was saved from a ``DataParallel`` model, so its
names read ``module.conv1.filter.weight``, ``module.block1.0.conv1.filter.bias``, ...,
``module.group4.conv.filter.weight``, ``module.fc.weight [256, 8192]``, ``module.fc.bias``,
``module.fc2.weight [80013, 256]`` (no bias). ``prefix=""`` reads a bare state dict instead (a ``.pth`` of
``model.state_dict()``, or an ``.npz`` of it); a ``module.`` prefix is dropped either way. Conv ``weight
[O, I, kh, kw]`` becomes ``kernel [kh, kw, I, O]``; linear ``weight [out, in]`` becomes ``kernel [in, out]``,
with ``fc``'s input rows reordered from torch's flattening of ``[128, 8, 8]`` (channel-major) to NHWC's
``[8, 8, 128]``. Flax paths map to torch names by reading ``blockN_i`` as ``blockN.i``. Usage::

    variables = convert_lightcnn("LightCNN_29Layers_V2_checkpoint.pth.tar", num_classes=None)
    features = LightCNN29v2(num_classes=None).apply(variables, faces)  # [B, 256]
"""

import os

import jax
import jax.numpy as jnp

from faceflax.models.lightcnn import IMAGE_SIZE, NUM_CLASSES, LightCNN29v2
from faceflax.weights.state_dict import StateDict, indexed, load_state_dict, nchw_rows_to_nhwc, torch_variables


def lightcnn_variables(state: StateDict, num_classes: int | None = NUM_CLASSES) -> dict:
    """LightCNN-29 v2's tensors taken from ``state`` -> ``{"params"}`` (float32 numpy) of ``LightCNN29v2(num_classes)``.

    ``num_classes=None`` skips the classifier ``fc2`` (the feature of thesis eq. 3.11 does not use it).
    Does not call ``state.finish()``.
    """
    model = LightCNN29v2(num_classes)
    images = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1))
    method = "logits" if num_classes is not None else None
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images, method=method))
    variables = torch_variables(state, {"params": template["params"]}, module_name=indexed)
    fc = variables["params"]["fc"]
    fc["kernel"] = nchw_rows_to_nhwc(fc["kernel"], IMAGE_SIZE // 16, IMAGE_SIZE // 16)
    if num_classes is None:
        state.skip("fc2.weight")
    return variables


def convert_lightcnn(
    path: str | os.PathLike, num_classes: int | None = NUM_CLASSES, prefix: str = "state_dict"
) -> dict:
    """``LightCNN_29Layers_V2_checkpoint.pth.tar`` -> ``LightCNN29v2(num_classes)`` variables.

    ``prefix``: the checkpoint entry holding the state dict (``""`` for a bare state dict or ``.npz``).
    Raises ``ValueError`` listing missing and unexpected keys (e.g. a LightCNN-9 or -29 v1 checkpoint) or
    naming a tensor of the wrong shape (e.g. ``fc2.weight`` of a fine-tuned classifier: pass its
    ``num_classes``, or ``None`` to drop it).
    """
    state = StateDict(load_state_dict(path, prefix), f"LightCNN-29 v2 checkpoint '{path}'")
    variables = lightcnn_variables(state, num_classes)
    state.finish()
    return variables
