import jax
import numpy as np
import pytest

from faceflax.data.loader import GlobalBatches, host_rows
from faceflax.data.sources import lfw_faces
from faceflax.train.sharding import batch_sharding, make_mesh


@pytest.fixture(scope="module")
def source():
    return (np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((10, 2, 2, 3), np.uint8)) * 20


def _loader(source, seed=0, batch_size=8, per_step=2):
    return GlobalBatches(source, batch_size, per_step, seed, batch_sharding(make_mesh((("data", -1),)), 1))


def test_batches_are_a_pure_function_of_step_and_cover_each_epoch(source):
    loader = _loader(source)
    np.testing.assert_array_equal(loader.indices(3), _loader(source).indices(3))
    stream = np.concatenate([loader.indices(s).ravel() for s in range(5)])  # 80 positions, 8 epochs
    for epoch in range(8):
        assert sorted(stream[epoch * 10 : (epoch + 1) * 10]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])  # reshuffled every epoch
    assert not np.array_equal(loader.indices(0), _loader(source, seed=1).indices(0))


def test_global_array_holds_the_indexed_images_sharded_over_devices(source):
    loader = _loader(source)
    batch = loader(2)
    assert batch.shape == (2, 8, 2, 2, 3) and batch.dtype == np.float32
    expected = source[loader.indices(2)].astype(np.float32) / 255.0
    np.testing.assert_allclose(np.asarray(batch), expected)
    assert len(batch.addressable_shards) == jax.device_count()
    for shard in batch.addressable_shards:
        np.testing.assert_allclose(shard.data, expected[shard.index])


def test_embedded_lfw_faces():
    faces = lfw_faces(32)
    assert faces.shape == (100, 32, 32, 3) and faces.dtype == np.float32
    assert 0.0 <= faces.min() and faces.max() <= 1.0 and faces.std() > 0.1
    np.testing.assert_array_equal(faces[..., 0], faces[..., 2])


def test_two_hosts_load_disjoint_rows_that_cover_the_batch():
    """With the 8 devices split into two simulated processes (4 each), each host's rows are its devices'
    shards: disjoint, together the whole batch, and a host never loads the other's rows."""
    sharding = batch_sharding(make_mesh((("data", -1),)), 1)
    devices = jax.devices()
    first, second = (host_rows(sharding, (2, 8, 1), set(d)) for d in (devices[:4], devices[4:]))
    assert len(first) == len(second) == 8 and not set(first) & set(second)
    assert sorted([*first, *second]) == list(range(16))
    per_device = sharding.devices_indices_map((2, 8, 1))
    for device in devices[:4]:
        rows = np.arange(16).reshape(2, 8)[per_device[device][:2]].ravel()
        assert set(rows) <= set(first)


class DictSource:
    """Examples as dicts, fetched a batch at a time (as SyntheticFaces)."""

    def __len__(self):
        return 12

    def batch(self, indices):
        indices = np.asarray(indices)
        return {"image": np.full((len(indices), 2, 2, 3), indices[:, None, None, None], np.uint8), "id": indices}


def test_dict_examples_become_dicts_of_global_arrays():
    loader = GlobalBatches(DictSource(), 8, 2, 0, batch_sharding(make_mesh((("data", -1),)), 1))
    batch = loader(3)
    indices = loader.indices(3)
    assert set(batch) == {"image", "id"} and loader.example_shape == {"image": (2, 2, 3), "id": ()}
    np.testing.assert_array_equal(np.asarray(batch["id"]), indices)
    np.testing.assert_allclose(np.asarray(batch["image"])[..., 0, 0, 0], indices / 255.0)
    assert batch["image"].dtype == np.float32 and len(batch["id"].addressable_shards) == jax.device_count()
