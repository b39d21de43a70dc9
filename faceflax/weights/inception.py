"""pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision ``Inception3`` names) -> Flax variables
of :class:`faceflax.models.inception.FIDInceptionV3`."""

import os

import jax
import numpy as np

from faceflax.models.inception import FIDInceptionV3
from faceflax.weights.state_dict import StateDict, load_state_dict, torch_variables


def convert_fid_inception(path: str | os.PathLike) -> dict:
    """The converted ``{"params", "batch_stats"}``; refuses a checkpoint of another layout (keys listed).

    Conv ``OIHW`` -> ``HWIO``; ``fc.weight [1008, 2048]`` transposed; ``num_batches_tracked`` ignored.
    """
    state = StateDict(load_state_dict(path), f"FID Inception checkpoint '{path}'")
    template = jax.eval_shape(lambda: FIDInceptionV3(resize=False).init(jax.random.key(0), np.zeros((1, 75, 75, 3))))
    variables = torch_variables(state, template)
    state.finish()
    return variables
