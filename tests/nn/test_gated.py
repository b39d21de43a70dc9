import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.nn.conv import Conv
from faceflax.nn.gated import GatedConv, GatedResBlock
from faceflax.nn.spectral_norm import SPECTRAL_STATS


@pytest.fixture
def x():
    return jax.random.normal(jax.random.key(0), (2, 9, 10, 3))


def _torch_conv(torch, params, x, stride=1, padding=0, dilation=1):
    """torch's conv2d with a flax HWIO kernel and bias."""
    weight = torch.tensor(np.asarray(params["kernel"]).transpose(3, 2, 0, 1))
    bias = torch.tensor(np.asarray(params["bias"]))
    return torch.nn.functional.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation)


def _torch_gated(torch, params, x, act, **conv_args):
    feature = _torch_conv(torch, params["feature"], x, **conv_args)
    return (act(feature) if act else feature) * torch.sigmoid(_torch_conv(torch, params["gating"], x, **conv_args))


def _nchw(torch, a):
    return torch.tensor(np.asarray(a).transpose(0, 3, 1, 2))


@pytest.mark.parametrize(
    "kernel_size, strides, dilation, elu",
    [(3, 1, 1, True), (3, 2, 2, True), (5, 1, 3, False)],
    ids=["3x3", "3x3-stride2-dilation2", "5x5-dilation3-linear"],
)
def test_gated_conv_matches_torch(x, kernel_size, strides, dilation, elu):
    torch = pytest.importorskip("torch")
    p = dilation * (kernel_size - 1) // 2
    layer = GatedConv(4, kernel_size, strides, dilation, ((p, p), (p, p)), nn.elu if elu else None)
    params = layer.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)  # biases != 0
    out = layer.apply({"params": params}, x)
    act = torch.nn.functional.elu if elu else None
    expected = _torch_gated(torch, params, _nchw(torch, x), act, stride=strides, padding=p, dilation=dilation)
    assert out.shape == (2, math.ceil(9 / strides), math.ceil(10 / strides), 4)
    np.testing.assert_allclose(out, expected.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_gate_is_a_soft_mask_in_unit_interval(x):
    layer = GatedConv(6)
    params = layer.init(jax.random.key(1), x)["params"]
    out, state = layer.apply({"params": params}, x, mutable=["intermediates"])
    (gate,) = state["intermediates"]["gate"]
    assert gate.shape == out.shape == (2, 9, 10, 6)
    assert float(gate.min()) > 0 and float(gate.max()) < 1 and float(gate.std()) > 0.1
    # A gate biased shut suppresses every output (up to sigmoid(-30) ~ 1e-13).
    shut = {**params, "gating": {"kernel": jnp.zeros_like(params["gating"]["kernel"]), "bias": jnp.full((6,), -30.0)}}
    assert float(jnp.abs(layer.apply({"params": shut}, x)).max()) < 1e-10
    assert float(jnp.abs(out).max()) > 0.5


@pytest.mark.parametrize(
    "strides, dilation, features, projected",
    [(1, 1, 3, False), (1, 2, 3, False), (2, 1, 3, True), (1, 1, 8, True), (2, 3, 8, True)],
)
def test_gated_res_block_shapes(x, strides, dilation, features, projected):
    block = GatedResBlock(features, strides, dilation)
    variables = block.init(jax.random.key(1), x)
    out = block.apply(variables, x)
    assert out.shape == (2, math.ceil(9 / strides), math.ceil(10 / strides), features)
    assert ("shortcut" in variables["params"]) == projected


@pytest.mark.parametrize("gated_shortcut", [False, True], ids=["plain-shortcut", "gated-shortcut"])
def test_gated_res_block_matches_torch(x, gated_shortcut):
    torch = pytest.importorskip("torch")
    block = GatedResBlock(5, strides=2, dilation=2, gated_shortcut=gated_shortcut)
    params = block.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
    out = block.apply({"params": params}, x)
    elu, tx = torch.nn.functional.elu, _nchw(torch, x)
    h = _torch_gated(torch, params["gated1"], tx, elu, stride=2, padding=2, dilation=2)
    h = _torch_gated(torch, params["gated2"], h, elu, padding=2, dilation=2)
    if gated_shortcut:
        shortcut = _torch_gated(torch, params["shortcut"], tx, None, stride=2)
    else:
        shortcut = _torch_conv(torch, params["shortcut"], tx, stride=2)
    expected = (h + shortcut).numpy().transpose(0, 2, 3, 1)
    assert out.shape == expected.shape == (2, 5, 5, 5)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_spectral_norm_keeps_u_in_spectral_stats(x):
    block = GatedResBlock(8, strides=2, spectral_norm=True, gated_shortcut=True)
    variables = block.init(jax.random.key(1), x)
    assert set(variables) == {"params", SPECTRAL_STATS}
    u_paths = {
        "/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(variables[SPECTRAL_STATS])
    }
    convs = [f"{g}/{c}" for g in ("gated1", "gated2", "shortcut") for c in ("feature", "gating")]
    assert u_paths == {f"{c}/sn/u" for c in convs}
    param_paths = {
        "/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])
    }
    assert param_paths == {f"{c}/sn/kernel" for c in convs} | {f"{c}/bias" for c in convs}
    _, updated = block.apply(variables, x, mutable=[SPECTRAL_STATS])
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), variables[SPECTRAL_STATS], updated[SPECTRAL_STATS])
    assert all(jax.tree.leaves(changed))
    _, frozen = block.apply(variables, x, update_stats=False, mutable=[SPECTRAL_STATS])
    jax.tree.map(np.testing.assert_array_equal, frozen[SPECTRAL_STATS], variables[SPECTRAL_STATS])


def test_dilated_transposed_conv_is_rejected(x):
    with pytest.raises(ValueError, match="transpose=False"):
        Conv(4, transpose=True, kernel_dilation=(2, 2)).init(jax.random.key(0), x)
