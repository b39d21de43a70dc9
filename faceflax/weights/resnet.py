"""torchvision ResNet checkpoints (``resnet18-f37072fd.pth``, ...) -> :class:`faceflax.nn.resnet.ResNet` variables.

The thesis initialises its ResNet-18 (N_S encoder, sec. 5.3.2) and ResNet-50 (N_R, sec. 5.3.3) backbones
from such checkpoints. Names map one to one: the Flax module path with ``_`` read as ``.`` is the torch
module (``layer1_0/downsample_0`` is ``layer1.0.downsample.0``); conv ``weight [O, I, kh, kw]`` becomes
``kernel [kh, kw, I, O]``, fc ``weight [out, in]`` becomes ``kernel [in, out]``, BatchNorm ``weight``/``bias``
become ``scale``/``bias`` and ``running_mean``/``running_var`` the ``batch_stats`` ``mean``/``var``;
``num_batches_tracked`` is skipped. Usage::

    variables = load_resnet("resnet50-0676ba61.pth", 50)
    logits = ResNet(50).apply(variables, imagenet_normalize(images))
    unet_variables = graft(unet_variables, "encoder", load_resnet("resnet18-f37072fd.pth", 18, num_classes=None))
"""

import os
import re
from collections.abc import Iterable, Mapping

import flax.traverse_util as traverse
import jax
import jax.numpy as jnp

from faceflax.nn.resnet import STAGES, ResNet
from faceflax.weights.state_dict import StateDict, indexed, load_state_dict, torch_variables


def checkpoint_depth(names: Iterable[str], prefix: str = "") -> int | None:
    """The torchvision depth whose block layout ``names`` (``prefix + "layer1.0.conv1.weight"``, ...) have, if any."""
    blocks, bottleneck = {}, False
    for name in names:
        match = re.fullmatch(re.escape(prefix) + r"layer(\d+)\.(\d+)\.(conv\d)\.weight", name)
        if match:
            stage, index = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
            bottleneck |= match[3] == "conv3"
    layout = ("bottleneck" if bottleneck else "basic", tuple(blocks[stage] for stage in sorted(blocks)))
    return next((depth for depth, stages in STAGES.items() if stages == layout), None)


def resnet_variables(state: StateDict, depth: int, num_classes: int | None = 1000, prefix: str = "") -> dict:
    """Takes a torchvision ResNet-``depth``'s tensors (named ``prefix + "conv1.weight"``, ...) from ``state``.

    Refuses a checkpoint whose blocks are another depth's (:func:`checkpoint_depth`), naming the depth to pass.
    Returns ``{"params", "batch_stats"}`` of float32 numpy arrays for ``ResNet(depth, num_classes)``.
    ``num_classes=None`` drops the checkpoint's ``fc`` (a backbone for a U-Net or a new head). Does not call
    ``state.finish()``, so a converter of a larger network can take its other tensors from the same state.
    """
    found = checkpoint_depth(state.tensors, prefix)
    if found is not None and found != depth:
        raise ValueError(f"{state.what} holds a ResNet-{found}: pass depth={found}, not {depth}")
    template = jax.eval_shape(ResNet(depth, num_classes).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    variables = torch_variables(state, {c: template[c] for c in ("params", "batch_stats")}, prefix, indexed)
    if num_classes is None:
        state.skip(f"{prefix}fc.weight", f"{prefix}fc.bias")
    return variables


def load_resnet(path: str | os.PathLike, depth: int, num_classes: int | None = 1000) -> dict:
    """A torchvision ResNet checkpoint (``.pth`` state dict, or ``.npz`` of it) -> ``ResNet(depth, num_classes)`` variables.

    Raises ``ValueError`` naming the depth to pass when the checkpoint's blocks are another torchvision depth's,
    listing missing and unexpected keys, or naming a tensor whose shape differs (e.g. the wrong ``num_classes``;
    ``None`` drops the classifier).
    """
    state = StateDict(load_state_dict(path), f"checkpoint '{path}'")
    variables = resnet_variables(state, depth, num_classes)
    state.finish()
    return variables


def graft(variables: Mapping, name: str, part: Mapping) -> dict:
    """``variables`` with submodule ``name``'s collections replaced by ``part``'s (same structure and shapes).

    E.g. ImageNet weights into :class:`faceflax.nn.unet.UNet`'s ``encoder``. Collections of ``variables``
    that ``part`` lacks are kept; a structure or shape mismatch raises ``ValueError`` naming the paths.
    """
    out = {collection: dict(tree) for collection, tree in variables.items()}
    for collection, tree in part.items():
        target = out.get(collection, {}).get(name)
        if target is None:
            raise ValueError(
                f"variables have no '{collection}/{name}'; graft into the module that has submodule {name!r}"
            )
        have, want = traverse.flatten_dict(tree), traverse.flatten_dict(target)
        wrong = sorted(set(have) ^ set(want))
        wrong += sorted(p for p in set(have) & set(want) if have[p].shape != want[p].shape)
        if wrong:
            listing = ", ".join("/".join(p) for p in wrong[:8]) + (
                f" ... ({len(wrong)} in all)" if len(wrong) > 8 else ""
            )
            raise ValueError(
                f"'{collection}/{name}' does not fit the part grafted into it (check its architecture): {listing}"
            )
        out[collection][name] = tree
    return out
