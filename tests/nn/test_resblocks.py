import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.nn.resblocks import ResidualBlock
from faceflax.nn.spectral_norm import SPECTRAL_STATS, as_matrix, spectral_normalize


@pytest.fixture
def x():
    return jax.random.normal(jax.random.key(0), (2, 9, 8, 6))


@pytest.mark.parametrize(
    "strides, features, norm, projected",
    [(1, 6, "batch", False), (2, 6, "batch", True), (1, 12, None, True), (2, 12, "instance", True)],
)
def test_shapes_downsampling_and_collections(x, strides, features, norm, projected):
    block = ResidualBlock(features, strides, norm)
    variables = block.init(jax.random.key(1), x, train=False)
    expected = {"params", SPECTRAL_STATS} | ({"batch_stats"} if norm == "batch" else set())
    assert set(variables) == expected
    assert ("shortcut" in variables["params"]) == projected
    out = block.apply(variables, x, train=False)
    assert out.shape == (2, math.ceil(9 / strides), math.ceil(8 / strides), features)
    assert float(out.min()) >= 0  # the final ReLU


def _torch_block(torch, params, x, strides, norm):
    """torchvision's BasicBlock (He et al.) written out with the flax weights, in training mode."""
    F = torch.nn.functional
    t = lambda a: torch.tensor(np.asarray(a))

    def conv(p, h, stride, padding):
        bias = t(p["bias"]) if "bias" in p else None
        return F.conv2d(h, t(p["kernel"]).permute(3, 2, 0, 1), bias, stride=stride, padding=padding)

    def normalise(p, h):
        if norm == "batch":
            return F.batch_norm(h, None, None, t(p["scale"]), t(p["bias"]), training=True, eps=1e-5)
        if norm == "instance":
            return F.instance_norm(h, weight=t(p["scale"]), bias=t(p["bias"]), eps=1e-5)
        return h

    tx = t(x).permute(0, 3, 1, 2)
    h = F.relu(normalise(params.get("norm1"), conv(params["conv1"], tx, strides, 1)))
    h = normalise(params.get("norm2"), conv(params["conv2"], h, 1, 1))
    shortcut = normalise(params.get("shortcut_norm"), conv(params["shortcut"], tx, strides, 0))
    return F.relu(h + shortcut).numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("norm", ["batch", "instance", None])
def test_matches_torch_basic_block(x, norm):
    torch = pytest.importorskip("torch")
    block = ResidualBlock(10, strides=2, norm=norm, spectral_norm=False)
    variables = block.init(jax.random.key(1), x, train=True)
    keys = iter(jax.random.split(jax.random.key(2), 20))
    params = jax.tree.map(lambda a: a + 0.2 * jax.random.normal(next(keys), a.shape), variables["params"])
    out, _ = block.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out, _torch_block(torch, params, x, 2, norm), rtol=1e-5, atol=1e-5)


def _top_singular_values(params, stats):
    """Top singular value of every spectrally normalised kernel, as the layer uses it (``W / u^T W v``)."""
    tops = {}
    for path, u in jax.tree_util.tree_leaves_with_path(stats):
        node = params
        for key in path[:-1]:
            node = node[key.key]
        normalized = spectral_normalize(node["kernel"], u)[0]
        tops["/".join(k.key for k in path[:-2])] = float(np.linalg.svd(as_matrix(normalized), compute_uv=False)[0])
    return tops


def test_spectral_norm_brings_every_kernel_to_unit_norm_while_training(x):
    block = ResidualBlock(16, strides=2)
    variables = block.init(jax.random.key(1), x, train=True)
    target = jax.random.normal(jax.random.key(3), (2, 5, 4, 16))

    @jax.jit
    def step(variables):
        def loss(params):
            out, state = block.apply(
                {**variables, "params": params}, x, train=True, mutable=[SPECTRAL_STATS, "batch_stats"]
            )
            return jnp.mean((out - target) ** 2), state

        grads, state = jax.grad(loss, has_aux=True)(variables["params"])
        params = jax.tree.map(lambda p, g: p - 0.05 * g, variables["params"], grads)
        return {**variables, **state, "params": params}

    before = _top_singular_values(variables["params"], variables[SPECTRAL_STATS])
    assert set(before) == {"conv1", "conv2", "shortcut"}
    assert max(abs(s - 1) for s in before.values()) > 0.05  # one power iteration is not enough
    for _ in range(25):
        variables = step(variables)
    after = _top_singular_values(variables["params"], variables[SPECTRAL_STATS])
    np.testing.assert_allclose(list(after.values()), 1.0, rtol=1e-2)


def test_unknown_norm_raises(x):
    with pytest.raises(ValueError, match="use one of"):
        ResidualBlock(6, norm="layer").init(jax.random.key(0), x, train=False)
