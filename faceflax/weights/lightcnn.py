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
import re

import flax.traverse_util as traverse
import jax
import jax.numpy as jnp

from faceflax.models.lightcnn import IMAGE_SIZE, NUM_CLASSES, LightCNN29v2
from faceflax.weights.state_dict import StateDict, load_state_dict

_FLAT = (IMAGE_SIZE // 16, IMAGE_SIZE // 16, 128)


def _torch_name(path: tuple[str, ...]) -> str:
    modules = [re.sub(r"^(block\d)_(\d+)$", r"\1.\2", m) for m in path[:-1]]
    return ".".join([*modules, "bias" if path[-1] == "bias" else "weight"])


def lightcnn_variables(state: StateDict, num_classes: int | None = NUM_CLASSES) -> dict:
    """LightCNN-29 v2's tensors taken from ``state`` -> ``{"params"}`` (float32 numpy) of ``LightCNN29v2(num_classes)``.

    ``num_classes=None`` skips the classifier ``fc2`` (the feature of thesis eq. 3.11 does not use it).
    Does not call ``state.finish()``.
    """
    model = LightCNN29v2(num_classes)
    images = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1))
    method = "logits" if num_classes is not None else None
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images, method=method))
    flat = {}
    for path, value in traverse.flatten_dict(template["params"]).items():
        name, shape = _torch_name(path), value.shape
        if len(shape) == 4:
            flat[path] = state.take(name, (shape[3], shape[2], *shape[:2])).transpose(2, 3, 1, 0)
        elif path == ("fc", "kernel"):
            weight = state.take(name, shape[::-1]).reshape(shape[1], _FLAT[2], *_FLAT[:2])
            flat[path] = weight.transpose(2, 3, 1, 0).reshape(shape)
        else:
            flat[path] = state.take(name, shape[::-1]).T if len(shape) == 2 else state.take(name, shape)
    if num_classes is None:
        state.skip("fc2.weight")
    return {"params": traverse.unflatten_dict(flat)}


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
