"""Mesh-axis conventions shared by methods and the trainer."""

import jax
from jax.sharding import PartitionSpec

BATCH_AXES = ("data", "fsdp")  # mesh axes a global batch is split over


def constrain_batch(x: jax.Array) -> jax.Array:
    """Splits the leading (batch) axis of ``x`` over the active mesh's batch axes.

    Arrays a step creates itself (noise, labels) are otherwise replicated, which would make every
    device run the whole generator batch. Without an active mesh (``jax.set_mesh``) it is a no-op.
    """
    mesh = jax.sharding.get_abstract_mesh()
    axes = () if mesh.empty else tuple(a for a in mesh.axis_names if a in BATCH_AXES)
    return jax.lax.with_sharding_constraint(x, PartitionSpec(axes)) if axes else x
