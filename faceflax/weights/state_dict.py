"""Reading a PyTorch state dict from a user-given path and consuming it key by key.

A converter asks :class:`StateDict` for every tensor it maps (``take``); ``finish`` then refuses the
checkpoint if any key the architecture needs is missing or any key of the file was never used, with one
message listing both, so a checkpoint of another architecture or size never converts silently.
"""

import argparse
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import flax.traverse_util as traverse
import numpy as np

TORCH_LEAVES = {
    "kernel": "weight",
    "scale": "weight",
    "negative_slope": "weight",  # PReLU
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}
"""Flax leaf name -> torch parameter / buffer name."""


def load_state_dict(path: str | os.PathLike, prefix: str = "") -> dict[str, np.ndarray]:
    """Tensors of a checkpoint as float32/int numpy arrays, by state-dict name.

    ``.npz``: numpy's archive of name -> array. Anything else is read with ``torch.load(map_location="cpu",
    weights_only=True)`` (no code runs; argparse options stored beside the weights are allowed); a dict holding the tensors under ``state_dict``, ``model``, ``g_ema`` or
    ``params`` is unwrapped when ``prefix`` names that entry (e.g. ``prefix="g_ema"`` for a StyleGAN2
    checkpoint of rosinality's training script). A ``module.`` prefix (DataParallel) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at '{path}'" if not path.exists() else f"'{path}' is not a file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            tensors: Mapping = {k: archive[k] for k in archive.files}
    else:
        try:
            import torch
        except ImportError:
            raise ValueError(f"reading '{path}' needs PyTorch: pip install torch (or convert it to .npz)") from None
        try:
            # Training checkpoints (rosinality's StyleGAN2, pSp/ReStyle) also pickle their argparse options.
            with torch.serialization.safe_globals([argparse.Namespace]):
                tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 -- torch raises many types for a corrupt or foreign file
            raise ValueError(f"'{path}' is not a PyTorch checkpoint: {error}") from None
    if prefix:
        if not isinstance(tensors, Mapping) or prefix not in tensors:
            keys = list(tensors)[:8] if isinstance(tensors, Mapping) else type(tensors).__name__
            raise ValueError(f"'{path}' has no entry {prefix!r} (top-level keys: {keys})")
        tensors = tensors[prefix]
    if not isinstance(tensors, Mapping):
        raise ValueError(f"'{path}' holds a {type(tensors).__name__}, not a state dict of tensors")  # noqa: TRY004
    out = {}
    for name, value in tensors.items():
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        out[name.removeprefix("module.")] = array
    return out


class StateDict:
    """A state dict consumed by a converter: ``take`` each tensor once, then ``finish``."""

    def __init__(self, tensors: Mapping[str, np.ndarray], what: str = "checkpoint"):
        self.tensors = dict(tensors)
        self.what = what
        self.used: set[str] = set()
        self.missing: list[str] = []

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The tensor ``name`` (float32 when floating); records it as missing if absent (zeros returned).

        ``shape``: the shape the architecture expects; a mismatch is an error naming both.
        """
        if name not in self.tensors:
            self.missing.append(name)
            return np.zeros(shape or (), np.float32)
        self.used.add(name)
        value = np.asarray(self.tensors[name])
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{self.what}: {name} has shape {tuple(value.shape)}, the architecture needs {tuple(shape)}"
            )
        return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value

    def skip(self, *names: str) -> None:
        """Marks keys the conversion deliberately ignores (e.g. BatchNorm's ``num_batches_tracked``)."""
        self.used.update(n for n in names if n in self.tensors)

    def finish(self) -> None:
        """Raise ``ValueError`` listing missing and unexpected keys, if any."""
        unexpected = sorted(set(self.tensors) - self.used)
        if self.missing or unexpected:

            def listing(keys):
                return ", ".join(keys[:12]) + (f" ... ({len(keys)} in all)" if len(keys) > 12 else "")

            parts = [f"missing keys: {listing(self.missing)}"] if self.missing else []
            parts += [f"unexpected keys: {listing(unexpected)}"] if unexpected else []
            raise ValueError(f"{self.what} does not match the architecture; " + "; ".join(parts))


def indexed(module: str) -> str:
    """Flax module name -> torch's, reading a trailing ``_<n>`` as ``.<n>`` (``layer1_0`` -> ``layer1.0``):
    how Flax names the children of torch's ``nn.Sequential`` / ``nn.ModuleList``."""
    return re.sub(r"_(\d+)$", r".\1", module)


def torch_variables(
    state: StateDict, template: Mapping, prefix: str = "", module_name: Callable[[str], str] = str
) -> dict:
    """Takes every leaf of a Flax variables ``template`` from ``state`` by its torch state-dict name.

    ``template``: ``{collection: tree}`` of arrays or ``ShapeDtypeStruct`` (``jax.eval_shape(model.init, ...)``).
    A leaf's torch name is ``prefix`` + its module path, each name through ``module_name`` (as is, or
    :func:`indexed`), joined by ``.``, + :data:`TORCH_LEAVES` of the leaf. Conv weights ``[O, I, kh, kw]`` become
    ``[kh, kw, I, O]`` kernels and linear weights ``[out, in]`` ``[in, out]`` kernels (rows in torch's order: see
    :func:`nchw_rows_to_nhwc`). Each BatchNorm's ``num_batches_tracked`` is skipped. Returns float32 numpy
    trees; does not call ``state.finish()``, so a converter can take more tensors from the same state.
    """
    variables = {}
    for collection, tree in template.items():
        flat = {}
        for path, leaf in traverse.flatten_dict(tree).items():
            module = prefix + ".".join(module_name(m) for m in path[:-1])
            name, shape = f"{module}.{TORCH_LEAVES[path[-1]]}", tuple(leaf.shape)
            if len(shape) == 4:
                flat[path] = state.take(name, (shape[3], shape[2], *shape[:2])).transpose(2, 3, 1, 0)
            elif len(shape) == 2:
                flat[path] = state.take(name, shape[::-1]).T
            else:
                flat[path] = state.take(name, shape)
            if path[-1] == "mean":
                state.skip(f"{module}.num_batches_tracked")
        variables[collection] = traverse.unflatten_dict(flat)
    return variables


def nchw_rows_to_nhwc(kernel: np.ndarray, height: int, width: int) -> np.ndarray:
    """A dense kernel ``[C*H*W, out]`` after a torch flatten of ``[C, H, W]`` -> rows in NHWC flatten order."""
    channels = kernel.shape[0] // (height * width)
    return np.ascontiguousarray(kernel.reshape(channels, height, width, -1).transpose(1, 2, 0, 3).reshape(kernel.shape))
