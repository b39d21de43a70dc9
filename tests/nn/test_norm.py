import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.nn.norm import ConditionalInstanceNorm, instance_norm


@pytest.fixture
def data():
    keys = jax.random.split(jax.random.key(0), 2)
    x = 3.0 * jax.random.normal(keys[0], (3, 6, 5, 4)) + 2.0
    c = jax.random.normal(keys[1], (3, 7))
    return x, c


def _randomised(params, seed=1):
    """The layer's parameters with every zero-initialised leaf replaced by a random one."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)])


def test_starts_as_plain_instance_norm(data):
    x, c = data
    layer = ConditionalInstanceNorm()
    variables = layer.init(jax.random.key(0), x, c)
    assert jax.tree.all(jax.tree.map(lambda p: bool(jnp.all(p == 0)), variables["params"]))
    np.testing.assert_array_equal(layer.apply(variables, x, c), instance_norm(x))
    std = x.std(axis=(1, 2))  # biased, as torch
    np.testing.assert_allclose(instance_norm(x).std(axis=(1, 2)), std / np.sqrt(std**2 + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(instance_norm(x).mean(axis=(1, 2)), np.zeros((3, 4)), atol=1e-5)


def test_per_channel_statistics_are_beta_and_gamma(data):
    x, c = data
    layer = ConditionalInstanceNorm()
    params = _randomised(layer.init(jax.random.key(0), x, c)["params"])
    out = layer.apply({"params": params}, x, c)
    gamma = 1 + c @ params["gamma"]["kernel"] + params["gamma"]["bias"]  # [B, C]
    beta = c @ params["beta"]["kernel"] + params["beta"]["bias"]
    assert float(jnp.min(jnp.abs(gamma - 1))) > 0.05  # the condition really moves gamma
    np.testing.assert_allclose(out.mean(axis=(1, 2)), beta, atol=1e-5)
    # x's variance is ~9, so sqrt(var / (var + 1e-5)) = 1 - 6e-7: std(x_hat) = 1 to float32 precision.
    np.testing.assert_allclose(out.std(axis=(1, 2)), jnp.abs(gamma), rtol=1e-5)


def test_different_conditions_give_different_outputs(data):
    x, c = data
    layer = ConditionalInstanceNorm()
    params = _randomised(layer.init(jax.random.key(0), x, c)["params"])
    same_x = jnp.broadcast_to(x[:1], x.shape)
    out = layer.apply({"params": params}, same_x, c)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert float(jnp.max(jnp.abs(out[i] - out[j]))) > 0.1
    np.testing.assert_allclose(layer.apply({"params": params}, same_x, c[:1].repeat(3, 0))[2], out[0], atol=1e-6)


def test_matches_torch_reimplementation(data):
    torch = pytest.importorskip("torch")
    x, c = data
    layer = ConditionalInstanceNorm()
    params = _randomised(layer.init(jax.random.key(0), x, c)["params"])
    out = layer.apply({"params": params}, x, c)

    def linear(name):
        p = jax.tree.map(lambda a: torch.tensor(np.asarray(a)), params[name])
        return torch.nn.functional.linear(torch.tensor(np.asarray(c)), p["kernel"].T, p["bias"])

    x_nchw = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2))
    normalised = torch.nn.InstanceNorm2d(4)(x_nchw)  # eps 1e-5, no affine
    expected = (1 + linear("gamma"))[:, :, None, None] * normalised + linear("beta")[:, :, None, None]
    np.testing.assert_allclose(out, expected.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "x_shape, c_shape, match",
    [((3, 6, 5, 4), (7,), r"\[B, D\] with B = 3"), ((3, 6, 5, 4), (2, 7), "B = 3"), ((3, 30, 4), (3, 7), "NHWC")],
)
def test_bad_shapes_raise(x_shape, c_shape, match):
    with pytest.raises(ValueError, match=match):
        ConditionalInstanceNorm().init(jax.random.key(0), jnp.zeros(x_shape), jnp.zeros(c_shape))
