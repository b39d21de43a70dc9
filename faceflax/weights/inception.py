"""pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision ``Inception3`` names) -> Flax variables
of :class:`faceflax.models.inception.FIDInceptionV3`."""

import os

import jax
import numpy as np

from faceflax.models.inception import FIDInceptionV3
from faceflax.weights.state_dict import StateDict, load_state_dict


def _template() -> dict:
    shapes = jax.eval_shape(lambda: FIDInceptionV3(resize=False).init(jax.random.key(0), np.zeros((1, 75, 75, 3))))
    return jax.tree.map(lambda s: s.shape, shapes)


def convert_fid_inception(path: str | os.PathLike) -> dict:
    """The converted ``{"params", "batch_stats"}``; refuses a checkpoint of another layout (keys listed).

    Conv ``OIHW`` -> ``HWIO``; ``fc.weight [1008, 2048]`` transposed; ``num_batches_tracked`` ignored.
    """
    state = StateDict(load_state_dict(path), f"FID Inception checkpoint '{path}'")
    template = _template()

    def convert(tree, prefix):
        out = {}
        for name, value in tree.items():
            key = f"{prefix}{name}"
            if isinstance(value, dict):
                out[name] = convert(value, f"{key}.")
            elif name == "kernel" and len(value) == 4:
                h, w, i, o = value
                out[name] = state.take(f"{prefix}weight", (o, i, h, w)).transpose(2, 3, 1, 0)
            elif name == "kernel":
                i, o = value
                out[name] = state.take(f"{prefix}weight", (o, i)).T
            else:
                torch_name = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[name]
                out[name] = state.take(f"{prefix}{torch_name}", value)
        return out

    variables = {c: convert(template[c], "") for c in ("params", "batch_stats")}
    state.skip(*(k for k in state.tensors if k.endswith("num_batches_tracked")))
    state.finish()
    return variables
