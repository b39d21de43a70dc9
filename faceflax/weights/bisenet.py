"""face-parsing.PyTorch's ``79999_iter.pth`` -> :class:`faceflax.models.bisenet.BiSeNet` variables.

Supported layout: the plain state dict of zllrunning/face-parsing.PyTorch's ``BiSeNet(n_classes=19)`` (what its
``test.py`` passes to ``load_state_dict``; a ``module.`` prefix from DataParallel is dropped), or an ``.npz`` of
the same names: ``cp.resnet.conv1.weight``, ``cp.resnet.layer1.0.bn1.running_mean``, ...,
``cp.arm16.conv.conv.weight``, ``ffm.convblk.bn.weight``, ``conv_out.conv_out.weight`` [19, 256, 1, 1], ...
The ResNet-18 trunk converts as :func:`faceflax.weights.resnet.resnet_variables` (torch's ``layer1.0`` is
flax's ``layer1_0``; no ``fc``), the rest by module path joined with ``.``
(:func:`faceflax.weights.state_dict.torch_variables`); ``num_batches_tracked`` is skipped. Usage::

    variables = convert_bisenet("79999_iter.pth")
    mask = face_mask(BiSeNet().apply(variables, faces_512))
"""

import os

import jax
import jax.numpy as jnp

from faceflax.models.bisenet import BiSeNet
from faceflax.weights.resnet import resnet_variables
from faceflax.weights.state_dict import StateDict, load_state_dict, torch_variables


def convert_bisenet(path: str | os.PathLike, n_classes: int = 19) -> dict:
    """A face-parsing.PyTorch checkpoint -> ``{"params", "batch_stats"}`` for ``BiSeNet(n_classes)``.

    Raises ``ValueError`` listing missing and unexpected keys (a checkpoint of another network) or naming a
    tensor of the wrong shape (e.g. the wrong ``n_classes``).
    """
    state = StateDict(load_state_dict(path), f"BiSeNet face-parsing checkpoint '{path}'")
    template = jax.eval_shape(BiSeNet(n_classes).init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    template = {
        collection: dict(tree, cp={k: v for k, v in tree["cp"].items() if k != "resnet"})
        for collection, tree in template.items()
    }
    variables = torch_variables(state, template)
    trunk = resnet_variables(state, 18, num_classes=None, prefix="cp.resnet.")
    for collection, tree in trunk.items():
        variables[collection]["cp"]["resnet"] = tree
    state.finish()
    return variables
