"""arcface_torch checkpoints (insightface's ``backbone.pth`` of ``iresnet50``/``100``) -> :class:`IResNet` variables.

The checkpoint is a plain state dict (``conv1.weight``, ``layer1.0.bn1.running_mean``, ..., ``fc.weight``,
``features.running_var``; a DataParallel ``module.`` prefix is dropped). Names map one to one: the Flax module
path with every trailing ``_<n>`` read as ``.<n>`` is the torch module (``layer1_0/downsample_0`` is
``layer1.0.downsample.0``); conv ``weight [O, I, kh, kw]`` becomes ``kernel [kh, kw, I, O]``, linear ``weight
[out, in]`` becomes ``kernel [in, out]``, BatchNorm ``weight``/``bias`` become ``scale``/``bias`` and
``running_mean``/``running_var`` the ``batch_stats`` ``mean``/``var``, PReLU ``weight`` becomes
``negative_slope``; ``num_batches_tracked`` is skipped. ``fc``'s rows are permuted from torch's NCHW flattening
of the 7x7x512 map to NHWC. Usage::

    variables = convert_iresnet("ms1mv3_arcface_r100_fp16/backbone.pth", depth=100)
    embeddings = IResNet(100).apply(variables, faces_112)  # [B, 112, 112, 3] in [0, 1] -> [B, 512]
"""

import os
import re

import flax.traverse_util as traverse
import jax
import jax.numpy as jnp
import numpy as np

from faceflax.models.arcface import INPUT_SIZE, IResNet
from faceflax.weights.state_dict import StateDict, load_state_dict

_TORCH_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "negative_slope": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def torch_name(prefix: str, path: tuple[str, ...]) -> str:
    """Flax variable path -> ``prefix`` + state-dict name.

    ``("layer1_0", "downsample_1", "scale")`` -> ``layer1.0.downsample.1.weight``: every trailing ``_<n>`` of a
    module name is an index ``.<n>``, the leaf is renamed as torch's.
    """
    modules = [re.sub(r"_(\d+)$", r".\1", m) for m in path[:-1]]
    return prefix + ".".join([*modules, _TORCH_LEAF[path[-1]]])


def torch_variables(state: StateDict, template: dict, prefix: str = "") -> dict:
    """Takes every variable of ``template`` (a ``jax.eval_shape`` of ``init``) from ``state`` by :func:`torch_name`.

    Shared by the converters of networks whose Flax names follow that rule (this module, :mod:`faceflax.weights.
    restyle`). Returns the same collections as float32 numpy arrays; conv kernels come transposed from OIHW to
    HWIO and dense kernels from ``[out, in]`` to ``[in, out]`` (rows in torch's order). Skips each BatchNorm's
    ``num_batches_tracked``; does not call ``state.finish()``.
    """
    variables = {}
    for collection, tree in template.items():
        flat = {}
        for path, leaf in traverse.flatten_dict(tree).items():
            name, shape = torch_name(prefix, path), leaf.shape
            if len(shape) == 4:
                flat[path] = state.take(name, (shape[3], shape[2], shape[0], shape[1])).transpose(2, 3, 1, 0)
            elif len(shape) == 2:
                flat[path] = state.take(name, shape[::-1]).T
            else:
                flat[path] = state.take(name, shape)
        variables[collection] = traverse.unflatten_dict(flat)
    for path in traverse.flatten_dict(template.get("batch_stats", {})):
        state.skip(torch_name(prefix, path).rsplit(".", 1)[0] + ".num_batches_tracked")
    return variables


def iresnet_variables(state: StateDict, depth: int = 50, num_features: int = 512, prefix: str = "") -> dict:
    """Takes arcface_torch's ``iresnet{depth}`` tensors (named ``prefix + "conv1.weight"``, ...) from ``state``.

    Returns ``{"params", "batch_stats"}`` of float32 numpy arrays for ``IResNet(depth, num_features)``;
    does not call ``state.finish()``.
    """
    model = IResNet(depth, num_features)
    template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
    variables = torch_variables(state, template, prefix)
    kernel = variables["params"]["fc"]["kernel"]  # rows in NCHW order (c, h, w)
    side = INPUT_SIZE // 16
    nhwc = kernel.reshape(-1, side, side, num_features).transpose(1, 2, 0, 3).reshape(kernel.shape)
    variables["params"]["fc"]["kernel"] = np.ascontiguousarray(nhwc)
    return variables


def convert_iresnet(path: str | os.PathLike, depth: int = 50, num_features: int = 512) -> dict:
    """An arcface_torch ``backbone.pth`` (state dict, or ``.npz`` of it) -> ``IResNet(depth)`` variables.

    ``depth``: 50 or 100 for the released models (18 and 34 also convert). Raises ``ValueError`` listing
    missing and unexpected keys (e.g. the wrong ``depth``) or naming a tensor whose shape differs.
    """
    state = StateDict(load_state_dict(path), f"iresnet{depth} checkpoint '{path}'")
    variables = iresnet_variables(state, depth, num_features)
    state.finish()
    return variables
