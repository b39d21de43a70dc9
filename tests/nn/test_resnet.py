"""torchvision-exact ResNets: parameter counts, shapes, BatchNorm train/eval semantics."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.nn.resnet import ResNet, imagenet_normalize

# sum(p.numel() for p in torchvision.models.resnetN().parameters()), and without the 1000-class fc.
TORCHVISION_PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
WITHOUT_FC = {18: 11_689_512 - 513_000, 50: 25_557_032 - 2_049_000}


def shapes(model, size=224, batch=1):
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((batch, size, size, 3)))


def count(tree):
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMETERS))
def test_parameter_counts_equal_torchvision(depth):
    assert count(shapes(ResNet(depth))["params"]) == TORCHVISION_PARAMETERS[depth]
    if depth in WITHOUT_FC:
        assert count(shapes(ResNet(depth, num_classes=None))["params"]) == WITHOUT_FC[depth]


@pytest.mark.parametrize(("depth", "widths"), [(18, (64, 64, 128, 256, 512)), (50, (64, 256, 512, 1024, 2048))])
def test_outputs_and_stage_features_at_224(depth, widths):
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    variables = shapes(ResNet(depth))
    assert jax.eval_shape(ResNet(depth, num_classes=239).apply, shapes(ResNet(depth, 239)), x).shape == (2, 239)
    pooled, features = jax.eval_shape(ResNet(depth, None, return_features=True).apply, variables, x)
    assert pooled.shape == (2, widths[-1])
    assert [f.shape for f in features] == [(2, 224 // s, 224 // s, w) for s, w in zip((2, 4, 8, 16, 32), widths)]


def test_torchvision_init_and_batch_norm_momentum_and_modes():
    model = ResNet(18, num_classes=10)
    x = imagenet_normalize(np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype(np.float32))
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)  # threefry: seconds of compiling on CPU
    params = variables["params"]
    np.testing.assert_allclose(np.std(params["conv1"]["kernel"]), (2 / (64 * 7 * 7)) ** 0.5, rtol=0.05)  # fan_out
    assert max(np.abs(params["fc"]["kernel"]).max(), np.abs(params["fc"]["bias"]).max()) <= 512**-0.5
    logits, updates = jax.jit(partial(model.apply, train=True, mutable=["batch_stats"]))(variables, x)
    stem = jax.lax.conv_general_dilated(
        x, params["conv1"]["kernel"], (2, 2), [(3, 3)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    stats = updates["batch_stats"]["bn1"]
    np.testing.assert_allclose(stats["mean"], 0.1 * stem.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * stem.var((0, 1, 2)), rtol=1e-4)
    eval_logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == eval_logits.shape == (2, 10)
    assert not np.allclose(logits, eval_logits)
    assert np.isfinite(logits).all() and np.isfinite(eval_logits).all()


def test_unknown_depth_is_refused():
    with pytest.raises(ValueError, match=r"use one of \[18, 34, 50, 101, 152\]"):
        shapes(ResNet(26), size=32)
