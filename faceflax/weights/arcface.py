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

import jax
import jax.numpy as jnp

from faceflax.models.arcface import INPUT_SIZE, IResNet
from faceflax.weights.state_dict import StateDict, indexed, load_state_dict, nchw_rows_to_nhwc, torch_variables


def iresnet_variables(state: StateDict, depth: int = 50, num_features: int = 512, prefix: str = "") -> dict:
    """Takes arcface_torch's ``iresnet{depth}`` tensors (named ``prefix + "conv1.weight"``, ...) from ``state``.

    Returns ``{"params", "batch_stats"}`` of float32 numpy arrays for ``IResNet(depth, num_features)``;
    does not call ``state.finish()``.
    """
    model = IResNet(depth, num_features)
    template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
    variables = torch_variables(state, template, prefix, indexed)
    fc = variables["params"]["fc"]
    fc["kernel"] = nchw_rows_to_nhwc(fc["kernel"], INPUT_SIZE // 16, INPUT_SIZE // 16)
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
