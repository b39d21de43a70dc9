"""Deterministic, per-host global batches on a device mesh.

Batch ``t`` of the stream holds the examples at stream positions ``t*B .. (t+1)*B - 1``; position
``k`` maps to ``permutation(seed, epoch=k // N)[k % N]``. A batch is therefore a pure function of
the step, so the train state's step is the whole loader position: a resumed run sees exactly the
batches the uninterrupted run would have seen. Each host loads only the rows its own devices hold
(``jax.make_array_from_callback`` asks per addressable device, i.e. per ``jax.process_index()``).
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding


class GlobalBatches:
    """``loader(step) -> [batches_per_step, B, H, W, C]`` float32 global array in [0, 1]."""

    def __init__(
        self,
        source: Sequence[np.ndarray],
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
        self.example_shape = tuple(np.shape(source[0]))

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

    def _load(self, indices: np.ndarray) -> np.ndarray:
        images = np.stack([np.asarray(self._source[int(i)]) for i in indices.ravel()])
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        return images.astype(np.float32).reshape(indices.shape + self.example_shape)

    def __call__(self, step: int) -> jax.Array:
        indices = self.indices(step)
        shape = indices.shape + self.example_shape
        return jax.make_array_from_callback(
            shape, self.sharding, lambda index: self._load(indices[index[:2]])[(...,) + index[2:]]
        )
