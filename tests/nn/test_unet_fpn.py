"""N_S's ResNet-18 U-Net (thesis sec. 5.3.2) and the UV sampler's FPN segmentation head (sec. 4.3.1)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.nn.fpn import FPNHead
from faceflax.nn.resnet import ResNet
from faceflax.nn.unet import UNet


def shape_tree(tree):
    return jax.tree.map(lambda leaf: leaf.shape, tree)


def random_variables(module, *inputs, seed=0):
    """Variables of ``module`` drawn with numpy (``init`` compiles its random draws for seconds on CPU).

    Kernels ~ N(0, 1 / fan_in); norm scales 1, biases 0; running means 0, variances 1.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return jnp.asarray(rng.normal(size=leaf.shape) / np.prod(leaf.shape[:-1]) ** 0.5, jnp.float32)
        return jnp.ones(leaf.shape) if name in ("scale", "var") else jnp.zeros(leaf.shape)

    return jax.tree.map_with_path(draw, jax.eval_shape(module.init, jax.random.key(0), *inputs))


@pytest.mark.parametrize("num_classes", [1, 3])
def test_unet_logits_at_input_resolution_256(num_classes):
    x = jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32)
    model = UNet(num_classes)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 256, 256, num_classes)


def test_unet_encoder_is_resnet18_without_fc():
    x = jnp.zeros((1, 64, 64, 3))
    unet = jax.eval_shape(UNet().init, jax.random.key(0), x)
    resnet = jax.eval_shape(ResNet(18, num_classes=None).init, jax.random.key(0), x)
    for collection in ("params", "batch_stats"):
        assert shape_tree(unet[collection]["encoder"]) == shape_tree(resnet[collection])
    assert sum(leaf.size for leaf in jax.tree.leaves(unet["params"]["encoder"])) == 11_176_512


def test_unet_train_step_updates_every_batch_norm():
    model = UNet()
    x = np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    variables = random_variables(model, x)
    logits, updates = jax.jit(partial(model.apply, train=True, mutable=["batch_stats"]))(variables, x)
    assert logits.shape == (2, 64, 64, 1) and np.isfinite(logits).all()
    means = [stats["mean"] for stats in jax.tree.leaves(updates, is_leaf=lambda t: isinstance(t, dict) and "mean" in t)]
    assert len(means) == 20 + 10 and all(np.abs(mean).max() > 0 for mean in means)
    with pytest.raises(ValueError, match="not a multiple of 32: pad or resize"):
        model.apply(variables, x[:, :48])


def pyramid(sizes, channels=(16, 32, 64, 128), batch=2):
    rng = np.random.default_rng(2)
    return [jnp.asarray(rng.normal(size=(batch, s, s, c)), jnp.float32) for s, c in zip(sizes, channels)]


@pytest.mark.parametrize(("sizes", "out"), [((64, 32, 16, 8), (256, 256)), ((25, 13, 7), (50, 60))])
def test_fpn_logits_at_requested_size(sizes, out):
    features = [jax.ShapeDtypeStruct(f.shape, f.dtype) for f in pyramid(sizes)]
    head = FPNHead(num_classes=2, size=out)
    variables = jax.eval_shape(head.init, jax.random.key(0), features)
    assert jax.eval_shape(head.apply, variables, features).shape == (2, *out, 2)
    assert set(variables) == {"params"}
    default = FPNHead()
    logits = jax.eval_shape(default.apply, jax.eval_shape(default.init, jax.random.key(0), features), features)
    assert logits.shape == (2, sizes[0], sizes[0], 1)


def test_fpn_gradients_reach_every_level():
    features = pyramid((32, 16, 8, 4))
    head = FPNHead(size=(64, 64), pyramid_features=32, segmentation_features=32, groups=8)
    variables = random_variables(head, features)
    weights = np.random.default_rng(3).normal(size=(2, 64, 64, 1)).astype(np.float32)
    grads = jax.jit(jax.grad(lambda f: jnp.sum(head.apply(variables, f) * weights)))(features)
    for level, grad in zip(features, grads):
        assert grad.shape == level.shape and np.isfinite(grad).all()
        assert np.mean(np.abs(grad) > 0) > 0.5
