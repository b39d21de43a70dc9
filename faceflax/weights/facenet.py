"""facenet-pytorch checkpoints -> :class:`faceflax.models.facenet.InceptionResnetV1` variables.

Supported layout: the plain state dict that ``InceptionResnetV1(pretrained=...)`` loads, i.e. timesler's
``20180402-114759-vggface2.pt`` (``logits`` 8631 x 512) and ``20180408-102900-casia-webface.pt`` (10575 x 512),
or an ``.npz`` of the same names. The Flax module path joined by ``.`` is the torch module
(``repeat_2/3/branch1/2/bn`` is ``repeat_2.3.branch1.2.bn``); conv ``weight [O, I, kh, kw]`` becomes
``kernel [kh, kw, I, O]``, linear ``weight [out, in]`` becomes ``kernel [in, out]``, BatchNorm
``weight``/``bias`` become ``scale``/``bias`` and ``running_mean``/``running_var`` the ``batch_stats``
``mean``/``var``; ``num_batches_tracked`` is skipped. Usage::

    variables = convert_facenet("20180408-102900-casia-webface.pt")  # embeddings; the classifier is dropped
    embeddings, features = InceptionResnetV1(return_features=True).apply(variables, faces_160)
"""

import os
from collections.abc import Mapping

import flax.traverse_util as traverse
import jax
import jax.numpy as jnp

from faceflax.models.facenet import IMAGE_SIZE, InceptionResnetV1
from faceflax.weights.state_dict import StateDict, load_state_dict

_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torch_named_variables(state: StateDict, template: Mapping, prefix: str = "") -> dict:
    """Takes every leaf of a Flax variables ``template`` from ``state`` by its torch state-dict name.

    ``template``: ``{collection: tree}`` of arrays or ``ShapeDtypeStruct`` (``jax.eval_shape(model.init, ...)``)
    whose module paths, joined by ``.`` after ``prefix``, are the torch module names. Returns the same tree of
    float32 numpy arrays; conv kernels and linear kernels are transposed from torch's layout. Each BatchNorm's
    ``num_batches_tracked`` is skipped. Does not call ``state.finish()``.
    """
    variables = {}
    for collection, tree in template.items():
        flat = {}
        for path, leaf in traverse.flatten_dict(tree).items():
            name, shape = prefix + ".".join([*path[:-1], _TORCH_LEAF[path[-1]]]), tuple(leaf.shape)
            if len(shape) == 4:
                flat[path] = state.take(name, (shape[3], shape[2], *shape[:2])).transpose(2, 3, 1, 0)
            elif len(shape) == 2:
                flat[path] = state.take(name, shape[::-1]).T
            else:
                flat[path] = state.take(name, shape)
            if path[-1] == "mean":
                state.skip(prefix + ".".join([*path[:-1], "num_batches_tracked"]))
        variables[collection] = traverse.unflatten_dict(flat)
    return variables


def convert_facenet(path: str | os.PathLike, num_classes: int | None = None) -> dict:
    """A facenet-pytorch checkpoint -> ``{"params", "batch_stats"}`` for ``InceptionResnetV1(num_classes)``.

    ``num_classes=None`` (embeddings, thesis eq. 4.10 / MvInvert eq. 8) skips the checkpoint's ``logits``;
    8631 (VGGFace2) or 10575 (CASIA-WebFace) keeps the classifier. Raises ``ValueError`` listing missing and
    unexpected keys (a checkpoint of another network) or naming a tensor of the wrong shape (e.g. the wrong
    ``num_classes``).
    """
    state = StateDict(load_state_dict(path), f"FaceNet (InceptionResnetV1) checkpoint '{path}'")
    images = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3))
    template = jax.eval_shape(InceptionResnetV1(num_classes).init, jax.random.key(0), images)
    variables = torch_named_variables(state, template)
    if num_classes is None:
        state.skip("logits.weight", "logits.bias")
    state.finish()
    return variables
