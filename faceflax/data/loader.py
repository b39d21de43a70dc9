"""Deterministic, per-host global batches on a device mesh (the training loop prefetches them in a thread).

Batch ``t`` of the stream holds the examples at stream positions ``t*B .. (t+1)*B - 1``; position
``k`` maps to ``permutation(seed, epoch=k // N)[k % N]``. A batch is therefore a pure function of
the step, so the train state's step is the whole loader position: a resumed run sees exactly the
batches the uninterrupted run would have seen. Each host loads only the rows its own devices hold
(:func:`host_rows` of ``jax.process_index()``'s devices), once per step whatever the number of fields.

Examples are arrays (images) or dicts of arrays (e.g. :class:`faceflax.data.synthetic.SyntheticFaces`);
a batch is then a global array or a dict of them, each ``[batches_per_step, B, ...]``. uint8 fields become
float32 in [0, 1]. A source with a ``batch(indices)`` method is asked for all its rows at once.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding


def host_rows(sharding: NamedSharding, shape: tuple[int, ...], devices) -> np.ndarray:
    """Sorted flat indices into the leading ``[batches_per_step, B]`` of the rows ``devices`` hold."""
    rows = set()
    for device, index in sharding.devices_indices_map(shape).items():
        if device in devices:
            grid = np.arange(shape[0] * shape[1]).reshape(shape[:2])[index[:2]]
            rows.update(grid.ravel().tolist())
    return np.array(sorted(rows), np.int64)


class GlobalBatches:
    """``loader(step)`` -> the ``[batches_per_step, B, ...]`` global array (or dict of them) of ``step``."""

    def __init__(
        self,
        source: Sequence,
        batch_size: int,
        batches_per_step: int,
        seed: int,
        sharding: NamedSharding,
    ):
        if len(source) == 0:
            raise ValueError("the dataset is empty")
        self._source = source
        self._batch_size = batch_size
        self._batches_per_step = batches_per_step
        self._seed = seed
        self.sharding = sharding
        first = self._fetch(np.zeros(1, np.int64))
        self.example_shape = jax.tree.map(lambda x: x.shape[1:], first)
        self._local = host_rows(sharding, (batches_per_step, batch_size, 1), set(sharding.addressable_devices))

    def indices(self, step: int) -> np.ndarray:
        """``[batches_per_step, B]`` int64 dataset indices of ``step``'s batches."""
        count = self._batches_per_step * self._batch_size
        positions = np.arange(step * count, (step + 1) * count)
        epochs, offsets = np.divmod(positions, len(self._source))
        flat = np.empty_like(positions)
        for epoch in np.unique(epochs):
            permutation = np.random.default_rng([self._seed, int(epoch)]).permutation(len(self._source))
            flat[epochs == epoch] = permutation[offsets[epochs == epoch]]
        return flat.reshape(self._batches_per_step, self._batch_size)

    def _fetch(self, indices: np.ndarray):
        """Examples ``indices [n]`` stacked (array or dict), uint8 as float32 in [0, 1]."""
        if hasattr(self._source, "batch"):
            stacked = self._source.batch(indices)
        else:
            stacked = jax.tree.map(lambda *xs: np.stack(xs), *[self._source[int(i)] for i in indices])

        def convert(x):
            x = np.asarray(x)
            return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x

        return jax.tree.map(convert, stacked)

    def load_host(self, step: int):
        """This host's rows of ``step`` as ``[batches_per_step, B, ...]`` numpy (other hosts' rows zero)."""
        flat = self.indices(step).ravel()
        rows = self._fetch(flat[self._local])
        leading = (self._batches_per_step, self._batch_size)

        def place(x):
            full = np.zeros((leading[0] * leading[1], *x.shape[1:]), x.dtype)
            full[self._local] = x
            return full.reshape(*leading, *x.shape[1:])

        return jax.tree.map(place, rows)

    def assemble(self, host):
        """Global arrays from :meth:`load_host`'s rows (each device takes its shard)."""
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(x.shape, self.sharding, lambda index: x[index]), host
        )

    def __call__(self, step: int):
        return self.assemble(self.load_host(step))
