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

import jax
import jax.numpy as jnp

from faceflax.models.facenet import IMAGE_SIZE, InceptionResnetV1
from faceflax.weights.state_dict import StateDict, load_state_dict, torch_variables


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
    variables = torch_variables(state, template)
    if num_classes is None:
        state.skip("logits.weight", "logits.bias")
    state.finish()
    return variables
