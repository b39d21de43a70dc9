"""StyleGAN2 layers and networks (MvInvert eq. 3's G): upfirdn2d against rosinality's native op, parameter
counts of the FFHQ-256 config-f networks, and the generator's latent / noise / truncation API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.stylegan2 import Discriminator, Generator
from faceflax.nn.upfirdn import blur, downsample, make_kernel, upfirdn2d, upsample

# FFHQ config-f at 256 px as ReStyle / MvInvert load it: Generator(256, 512, 8, channel_multiplier=2).
FFHQ256_GENERATOR_PARAMS = 30_034_338
FFHQ256_DISCRIMINATOR_PARAMS = 28_864_129


def _count(module, *inputs) -> int:
    shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"]
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def _ffhq256_counts() -> tuple[int, int]:
    return (
        _count(Generator(256), jnp.zeros((1, 512))),
        _count(Discriminator(256), jnp.zeros((1, 256, 256, 3))),
    )


@pytest.mark.parametrize(
    ("up", "down", "pad", "k"),
    [
        (1, 1, (1, 2), 4),
        (2, 1, (2, 1), 4),
        (1, 2, (1, 1), 4),
        (2, 2, (1, 2), 3),
        (1, 1, (-1, 2), 3),
        (3, 2, (0, -2), 5),
    ],
)
def test_upfirdn2d_matches_rosinality_native(up, down, pad, k):
    torch = pytest.importorskip("torch")
    from tests.models.torch_stylegan2 import upfirdn2d as torch_upfirdn2d

    rng = np.random.default_rng(up * 10 + down + k)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    kernel = rng.normal(size=(k, k)).astype(np.float32)  # asymmetric: catches a missing flip
    ours = np.asarray(upfirdn2d(jnp.asarray(x), kernel, up=up, down=down, pad=pad))
    theirs = torch_upfirdn2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel), up, down, pad)
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_resampling_wrappers_match_rosinality_and_keep_constants():
    torch = pytest.importorskip("torch")
    from tests.models import torch_stylegan2 as ref

    x = np.random.default_rng(0).normal(size=(1, 8, 8, 2)).astype(np.float32)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2))
    kernel = make_kernel()
    expected = {
        "upsample": ref.Upsample([1, 3, 3, 1])(x_torch),
        "downsample": ref.upfirdn2d(x_torch, torch.from_numpy(kernel), down=2, pad=(1, 1)),
        "blur": ref.Blur([1, 3, 3, 1], pad=(2, 1))(x_torch),
    }
    ours = {"upsample": upsample(x), "downsample": downsample(x), "blur": blur(x, (2, 1))}
    for name, value in ours.items():
        np.testing.assert_allclose(np.asarray(value), expected[name].numpy().transpose(0, 2, 3, 1), atol=1e-5)
    ones = jnp.ones((1, 8, 8, 1))
    np.testing.assert_allclose(upsample(ones)[0, 2:-2, 2:-2], 1.0, atol=1e-6)  # gain factor**2 restores energy
    np.testing.assert_allclose(downsample(ones)[0, 1:-1, 1:-1], 1.0, atol=1e-6)
    assert upsample(ones).shape == (1, 16, 16, 1) and downsample(ones).shape == (1, 4, 4, 1)


def test_ffhq256_parameter_counts():
    assert _ffhq256_counts() == (FFHQ256_GENERATOR_PARAMS, FFHQ256_DISCRIMINATOR_PARAMS)


def test_ffhq256_parameter_counts_match_the_torch_reference():
    torch = pytest.importorskip("torch")
    from tests.models import torch_stylegan2 as ref

    with torch.device("meta"):  # shapes only, no 30M-parameter allocation
        generator, discriminator = ref.Generator(256, 512, 8, channel_multiplier=2), ref.Discriminator(256)
    counts = tuple(sum(p.numel() for p in net.parameters()) for net in (generator, discriminator))
    assert counts == _ffhq256_counts()


def _random_variables(module, *inputs, seed: int = 0):
    """Variables of ``module`` with N(0, 0.5) entries: the structure of ``init`` (traced by ``eval_shape``)
    without compiling an RNG kernel per parameter (seconds each on a loaded CPU)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(scale=0.5, size=s.shape), s.dtype), shapes)


@pytest.fixture(scope="module")
def tiny():
    """A 16-px generator with 8 channels, its variables (``params`` and ``noise``) and two z's."""
    generator = Generator(16, style_dim=16, n_mlp=2, channels=(8, 8, 8))
    z = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16)), jnp.float32)
    return generator, _random_variables(generator, z), z


def test_generator_shapes_noise_sources_and_truncation(tiny):
    generator, variables, z = tiny
    assert generator.n_latent == 6 and generator.num_layers == 5
    assert [variables["noise"][f"noise_{i}"].shape[1] for i in range(5)] == [4, 8, 8, 16, 16]
    stored = generator.apply(variables, z)
    assert stored.shape == (2, 16, 16, 3) and stored.dtype == jnp.float32
    explicit = [variables["noise"][f"noise_{i}"] for i in range(5)]
    np.testing.assert_array_equal(generator.apply(variables, z, noise=explicit), stored)
    variables = {"params": variables["params"]}
    keyed = generator.apply(variables, z, key=jax.random.key(3))
    np.testing.assert_array_equal(keyed, generator.apply(variables, z, key=jax.random.key(3)))
    assert not np.allclose(keyed, generator.apply(variables, z, key=jax.random.key(4)))
    with pytest.raises(ValueError, match="'noise' collection"):
        generator.apply(variables, z)
    w_avg = generator.apply(variables, jax.random.key(5), 256, method=Generator.mean_latent)
    assert w_avg.shape == (1, 16)
    _, latent = generator.apply(
        variables, z, truncation=0.0, truncation_latent=w_avg, key=jax.random.key(3), return_latents=True
    )
    np.testing.assert_allclose(latent, jnp.broadcast_to(w_avg, (2, 6, 16)), atol=1e-6)
    with pytest.raises(ValueError, match="truncation_latent"):
        generator.apply(variables, z, truncation=0.7, key=jax.random.key(3))


def test_generator_latent_inputs_and_style_mixing(tiny):
    generator, variables, z = tiny
    w = generator.apply(variables, z, method=Generator.mapping)
    from_z, w_plus = generator.apply(variables, z, return_latents=True)
    np.testing.assert_allclose(generator.apply(variables, w, input_is_latent=True), from_z, atol=1e-6)
    np.testing.assert_allclose(generator.apply(variables, w_plus, input_is_latent=True), from_z, atol=1e-6)

    mix = jax.jit(lambda v, a, b, i: generator.apply(v, [a, b], inject_index=i, return_latents=True)[1])
    w2 = generator.apply(variables, z[::-1], method=Generator.mapping)
    latent = mix(variables, z, z[::-1], 2)  # a traced crossover
    np.testing.assert_allclose(latent[:, :2], jnp.repeat(w[:, None], 2, 1), atol=1e-6)
    np.testing.assert_allclose(latent[:, 2:], jnp.repeat(w2[:, None], 4, 1), atol=1e-6)
    for kwargs, message in [
        ({"styles": [z, z]}, "inject_index"),
        ({"styles": [z, z], "inject_index": 6}, r"\[1, 5\]"),
        ({"styles": w_plus[:, :4], "input_is_latent": True}, r"\[B, 6, 16\]"),
        ({"styles": w_plus}, "input_is_latent=True"),
        ({"styles": z, "noise": [jnp.zeros((1, 4, 4, 1))]}, "5 arrays"),
    ]:
        with pytest.raises(ValueError, match=message):
            generator.apply(variables, **kwargs)


def test_discriminator_refuses_wrong_inputs():
    discriminator = Discriminator(16, channels=(8, 8, 8))
    variables = _random_variables(discriminator, jnp.zeros((4, 16, 16, 3)))
    apply = jax.jit(discriminator.apply)
    assert apply(variables, jnp.zeros((4, 16, 16, 3))).shape == (4, 1)
    with pytest.raises(ValueError, match="divisible"):
        apply(variables, jnp.zeros((6, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"\[B, 16, 16, 3\]"):
        apply(variables, jnp.zeros((4, 32, 32, 3)))
    with pytest.raises(ValueError, match="one width per resolution"):
        Discriminator(16, channels=(8, 8)).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
