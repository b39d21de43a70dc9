"""Discriminators: the PatchGAN and VGG-shaped ones equal their PyTorch originals (pix2pix's NLayerDiscriminator,
ESRGAN's VGG128) with copied weights; the projection discriminator is linear in its condition; UV crops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models import discriminators as d


def count(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def torch_reference(kind: str):
    """pix2pix's ``NLayerDiscriminator(3, 64, 3)`` or ESRGAN's ``VGGStyleDiscriminator128`` in PyTorch."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    if kind == "patch":
        layers = [nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = [64, 128, 256, 512]
        for i in range(1, 4):
            layers += [nn.Conv2d(channels[i - 1], channels[i], 4, 2 if i < 3 else 1, 1, bias=False)]
            layers += [nn.BatchNorm2d(channels[i]), nn.LeakyReLU(0.2)]
        return nn.Sequential(*layers, nn.Conv2d(512, 1, 4, 1, 1))
    layers, previous = [], 3
    for i, features in enumerate((64, 128, 256, 512, 512)):
        layers += [nn.Conv2d(previous, features, 3, 1, 1, bias=i == 0)]
        layers += ([] if i == 0 else [nn.BatchNorm2d(features)]) + [nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(features, features, 4, 2, 1, bias=False), nn.BatchNorm2d(features), nn.LeakyReLU(0.2)]
        previous = features
    head = [nn.Flatten(), nn.Linear(512 * 4 * 4, 100), nn.LeakyReLU(0.2), nn.Linear(100, 1)]
    return nn.Sequential(*layers, *head)


def copy_weights(module, variables):
    """Random torch weights and BN statistics, copied into the Flax variables (same layer order)."""
    import torch

    params = jax.tree.map(np.asarray, variables["params"])
    stats = jax.tree.map(np.asarray, variables.get("batch_stats", {}))
    convs = [m for m in module if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in module if isinstance(m, torch.nn.BatchNorm2d)]
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, m in enumerate(convs):
            m.weight.normal_(0, 0.05)
            params[f"Conv_{i}"]["kernel"] = m.weight.numpy().transpose(2, 3, 1, 0)
            if m.bias is not None:
                m.bias.normal_(0, 0.1)
                params[f"Conv_{i}"]["bias"] = m.bias.numpy()
        for i, m in enumerate(norms):
            m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
            params[f"BatchNorm_{i}"] = {"scale": m.weight.numpy(), "bias": m.bias.numpy()}
            stats[f"BatchNorm_{i}"] = {"mean": m.running_mean.numpy(), "var": m.running_var.numpy()}
        for i, m in enumerate(linears):
            m.weight.normal_(0, 0.02), m.bias.normal_(0, 0.1)
            kernel = m.weight.numpy().T
            if i == 0:  # torch flattens NCHW, Flax NHWC
                kernel = kernel.reshape(512, 4, 4, -1).transpose(1, 2, 0, 3).reshape(512 * 16, -1)
            params[f"Dense_{i}"] = {"kernel": kernel, "bias": m.bias.numpy()}
    return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize(("kind", "size"), [("patch", 256), ("vgg", 128)])
def test_matches_the_pytorch_original(kind, size):
    import torch

    rng = np.random.default_rng(0)
    module = torch_reference(kind).eval()
    model = d.PatchDiscriminator() if kind == "patch" else d.VGGDiscriminator()
    images = rng.uniform(size=(2, size, size, 3)).astype(np.float32)
    variables = model.init(jax.random.key(0), images, False)
    assert count(variables["params"]) == sum(p.numel() for p in module.parameters())
    variables = copy_weights(module, variables)
    ours = np.asarray(model.apply(variables, images, False))
    with torch.no_grad():
        theirs = module(torch.from_numpy(images.transpose(0, 3, 1, 2) * 2 - 1)).numpy()
    theirs = theirs[:, 0]  # the channel of the patch map, or the logit column
    assert ours.shape == theirs.shape == ((2, 30, 30) if kind == "patch" else (2,))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_patch_logits_see_70_pixel_patches():
    model = d.PatchDiscriminator()
    images = jnp.zeros((1, 256, 256, 3))
    variables = model.init(jax.random.key(1), images, False)

    def logit(x):
        return model.apply(variables, x, False)[0, 0, 0]

    grad = np.abs(np.asarray(jax.grad(logit)(images)))[0].sum(-1)
    rows, cols = np.nonzero(grad)
    assert rows.max() + 1 <= 70 and cols.max() + 1 <= 70 and grad[:70, :70].any()


def test_projection_discriminator_is_linear_in_its_condition_and_keeps_sn_state():
    model = d.ProjectionDiscriminator(channels=(16, 32, 32))
    rng = np.random.default_rng(2)
    images = jnp.asarray(rng.uniform(size=(3, 32, 32, 3)), jnp.float32)
    y1, y2 = (jnp.asarray(rng.normal(size=(3, 10)), jnp.float32) for _ in range(2))
    variables = model.init(jax.random.key(2), images, y1, False)
    assert set(variables) == {"params", "spectral_stats"}

    def score(y):
        return np.asarray(model.apply(variables, images, y, False))

    np.testing.assert_allclose(score(0.3 * y1 + 0.7 * y2), 0.3 * score(y1) + 0.7 * score(y2), rtol=1e-4, atol=1e-5)
    assert np.abs(score(y1) - score(y2)).min() > 0  # the condition matters for every image


def test_partial_uv_crops_and_discriminators():
    uv = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1)
    np.testing.assert_array_equal(d.uv_center(uv, 0.5), uv[:, 2:6, 2:6])
    sides = d.uv_sides(uv)
    assert sides.shape == (4, 8, 4, 1)
    np.testing.assert_array_equal(sides[2:], uv[:, :, ::-1][:, :, :4])
    model = d.PartialUVDiscriminators()
    variables = model.init(jax.random.key(3), jnp.zeros((2, 128, 128, 3)), False)
    center, side = model.apply(variables, jnp.zeros((2, 128, 128, 3)), False, mutable=["spectral_stats"])[0]
    assert center.shape[0] == 2 and side.shape[0] == 4
