"""Device mesh, batch sharding and regex parameter-sharding rules (``jit`` + ``NamedSharding``).

The mesh comes from the config as ``((axis_name, size), ...)`` with at most one ``-1`` size that
takes the remaining devices; the default ``(("data", -1),)`` is pure data parallelism. Batches are
split over the ``data`` and ``fsdp`` axes. State leaves are replicated unless a rule
``(regex, spec)`` ``re.search``-es their ``/``-joined path, such as
``params/discriminator/Conv_1/sn/kernel`` or ``opt_state/discriminator/0/mu/Conv_1/sn/kernel``:
write rules against the parameter's own suffix (``r"Conv_\\d+/sn/kernel$"`` with spec
``(None, None, None, "fsdp")``) so optimiser moments and EMA weights follow their parameter.
"""

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from faceflax.parallel import BATCH_AXES


def make_mesh(axes: Sequence[tuple[str, int]], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over ``devices`` (default: all) shaped by ``axes``; raises if the sizes don't fit."""
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(name for name, _ in axes)
    sizes = [size for _, size in axes]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh {tuple(axes)}: at most one axis may have size -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {tuple(axes)} does not divide {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {tuple(axes)} needs {math.prod(sizes)} devices, have {len(devices)}")
    return Mesh(np.asarray(devices).reshape(sizes), names)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a global batch is split over."""
    return tuple(a for a in mesh.axis_names if a in BATCH_AXES)


def batch_sharding(mesh: Mesh, leading_dims: int = 1) -> NamedSharding:
    """Sharding of ``[*leading, B, ...]`` arrays: ``B`` split over the batch axes."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_dims), batch_axes(mesh)))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises unless the global batch splits evenly over the batch axes."""
    shards = math.prod(mesh.shape[a] for a in batch_axes(mesh))
    if batch_size % shards:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {shards} data shards of the mesh "
            f"{dict(mesh.shape)}; pick a multiple of {shards}"
        )


def _path_string(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, Sequence]]) -> Any:
    """``NamedSharding`` per leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s) from regex rules.

    The first rule whose regex ``re.search``-es the leaf path wins; unmatched leaves replicate.
    Raises ``ValueError`` when a matched dimension does not divide by its mesh axis size.
    """
    compiled = [(re.compile(pattern), PartitionSpec(*spec)) for pattern, spec in rules]

    def sharding(path, leaf):
        name = _path_string(path)
        spec = next((s for regex, s in compiled if regex.search(name)), PartitionSpec())
        if len(spec) > len(leaf.shape):
            raise ValueError(f"sharding rule {spec} has more axes than {name} {leaf.shape}")
        for dim, axis in zip(leaf.shape, spec):
            size = math.prod(mesh.shape[a] for a in ((axis,) if isinstance(axis, str) else axis or ()))
            if dim % size:
                raise ValueError(f"{name} {leaf.shape}: dimension {dim} not divisible by {axis}={size}")
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(sharding, tree)
