"""ReStyle's encoder: checkpoints convert to Flax and give the torch encoder's W+ residuals; the iterative
refinement of MvInvert eq. 2 with a stand-in generator."""

import flax.traverse_util as traverse
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.restyle import BackboneEncoder, refine_latents
from faceflax.weights.restyle import convert_restyle_encoder
from faceflax.weights.state_dict import TORCH_LEAVES, indexed

torch = pytest.importorskip("torch")  # the reference below needs it
from tests.models import torch_identity_nets as reference
from tests.models.torch_random import randomize

N_STYLES = 3  # the 18 of ReStyle's FFHQ encoder are the same block repeated; their names are checked below


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def checkpoint(encoder, latent_avg) -> dict:
    """ReStyle's training-script layout: encoder and decoder under ``state_dict``, ``latent_avg`` beside it."""
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["decoder.style.1.weight"] = torch.zeros(512, 512)  # a generator tensor, which the converter skips
    return {
        "state_dict": state,
        "opts": {"encoder_type": "BackboneEncoder", "input_nc": 6, "n_iters_per_batch": 5},
        "latent_avg": latent_avg,
    }


@pytest.fixture(scope="module")
def restyle(tmp_path_factory):
    """ReStyle's ``BackboneEncoder`` (IR-SE-50, 6 input channels) with random weights and its checkpoint."""
    encoder = randomize(reference.BackboneEncoder(n_styles=N_STYLES))
    latent_avg = torch.randn(N_STYLES, 512)
    path = tmp_path_factory.mktemp("restyle") / "restyle_psp.pt"
    torch.save(checkpoint(encoder, latent_avg), path)
    return encoder, latent_avg.numpy(), path


def test_encoder_residuals_match_torch(restyle):
    encoder, latent_avg, path = restyle
    rng = np.random.default_rng(0)
    images, reconstructions = rng.uniform(size=(2, 2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        x = torch.from_numpy(np.concatenate([images, reconstructions], -1).transpose(0, 3, 1, 2) * 2 - 1)
        theirs = encoder(x).numpy()
    variables, w0 = convert_restyle_encoder(path, n_styles=N_STYLES)
    np.testing.assert_array_equal(w0, latent_avg)
    assert count(variables["params"]) == sum(p.numel() for p in encoder.parameters())
    ours = np.asarray(jax.jit(BackboneEncoder(N_STYLES).apply)(variables, images, reconstructions))
    assert ours.shape == theirs.shape == (2, N_STYLES, 512)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_18_style_parameter_count_and_names():
    with torch.device("meta"):
        encoder = reference.BackboneEncoder(n_styles=18)
    images = jnp.zeros((1, 256, 256, 3))
    template = jax.eval_shape(BackboneEncoder().init, jax.random.key(0), images, images)
    assert count(template["params"]) == sum(p.numel() for p in encoder.parameters()) == 205_585_792
    ours = {
        "encoder." + ".".join([*map(indexed, path[:-1]), TORCH_LEAVES[path[-1]]])
        for tree in template.values()
        for path in traverse.flatten_dict(tree)
    }
    theirs = {f"encoder.{k}" for k in encoder.state_dict() if not k.endswith("num_batches_tracked")}
    assert ours == theirs  # shapes: the 3-style conversion above takes every tensor with its shape checked


def test_mismatched_checkpoints_are_refused(restyle, tmp_path):
    encoder, latent_avg, path = restyle
    with pytest.raises(ValueError, match=r"missing keys: encoder\.styles\.3\.convs\.0\.bias, "):
        convert_restyle_encoder(path, n_styles=4)
    bad = checkpoint(encoder, torch.from_numpy(latent_avg))
    del bad["state_dict"]["encoder.body.7.res_layer.5.fc1.weight"]
    bad["state_dict"]["encoder.output_pool.weight"] = torch.zeros(1)
    del bad["latent_avg"]
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError,
        match="missing keys: encoder.body.7.res_layer.5.fc1.weight, latent_avg; unexpected keys: encoder.output_pool",
    ):
        convert_restyle_encoder(tmp_path / "bad.pt", n_styles=N_STYLES)
    e4e = {"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 6, 3, 3)}, "latent_avg": torch.zeros(18, 512)}
    torch.save({**e4e, "opts": {"encoder_type": "ProgressiveBackboneEncoder"}}, tmp_path / "e4e.pt")
    with pytest.raises(ValueError, match="holds a ReStyle ProgressiveBackboneEncoder; only pSp's BackboneEncoder"):
        convert_restyle_encoder(tmp_path / "e4e.pt", n_styles=N_STYLES)
    with pytest.raises(ValueError, match="resize them to 256x256"):
        too_big = jnp.zeros((1, 272, 272, 3))
        jax.eval_shape(BackboneEncoder(N_STYLES).init, jax.random.key(0), too_big, too_big)


def stand_in_generator(n_styles: int = 2, dim: int = 8, size: int = 16):
    """A fixed random map ``G(w [B, n, D]) -> [B, size, size, 3]`` in ``(0, 1)``."""
    basis = jax.random.normal(jax.random.key(1), (n_styles * dim, size * size * 3)) / np.sqrt(n_styles * dim)
    return lambda w: jax.nn.sigmoid(w.reshape(w.shape[0], -1) @ basis).reshape(w.shape[0], size, size, 3)


def pool(images, factor: int = 2):
    b, h, w, c = images.shape
    return images.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def test_refinement_with_a_zero_residual_stays_at_the_mean_latent():
    generate = stand_in_generator()
    rng = np.random.default_rng(2)
    images, w0 = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)

    @jax.jit
    def run(images, w0):
        refined = refine_latents(lambda x, y: jnp.zeros((3, 2, 8)), generate, images, w0, 4)
        return refined, pool(generate(jnp.broadcast_to(w0, (3, 2, 8))))  # 16 px generated, averaged to 8 px

    (latents, reconstructions), first = run(images, w0)
    assert latents.shape == (4, 3, 2, 8) and reconstructions.shape == (4, 3, 8, 8, 3)
    np.testing.assert_array_equal(latents, np.broadcast_to(w0, latents.shape))
    np.testing.assert_allclose(reconstructions, np.broadcast_to(first, reconstructions.shape), rtol=1e-6)


def test_each_iteration_adds_the_residual_of_the_current_reconstruction():
    generate = stand_in_generator()
    mixing = jax.random.normal(jax.random.key(4), (3, 2, 8))

    def encode(x, y):  # depends on both inputs, so a wrong feedback or order changes the result
        return jnp.tanh(jnp.einsum("bc,cnd->bnd", jnp.mean(x - 2 * y, axis=(1, 2)), mixing))

    @jax.jit
    def by_hand(images, w0):
        w, steps = jnp.broadcast_to(w0, (3, 2, 8)), []
        for _ in range(3):
            residual = encode(images, pool(generate(w)))
            w = w + residual
            steps.append((w, pool(generate(w)), residual))
        return [jnp.stack(s) for s in zip(*steps, strict=True)]

    rng = np.random.default_rng(5)
    images, w0 = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)
    latents, reconstructions = jax.jit(refine_latents, static_argnums=(0, 1, 4))(encode, generate, images, w0, 3)
    expected_latents, expected_reconstructions, residuals = by_hand(images, w0)
    np.testing.assert_allclose(latents, expected_latents, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reconstructions, expected_reconstructions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(latents[-1] - w0, residuals.sum(0), rtol=1e-5, atol=1e-5)  # w_3 = w_0 + 3 residuals
    assert np.abs(residuals).min() > 0
    with pytest.raises(ValueError, match="integer multiple"):
        jax.eval_shape(lambda x: refine_latents(encode, generate, x, w0, 1), jnp.zeros((3, 12, 12, 3)))
    with pytest.raises(ValueError, match="iterations must be at least 1"):
        refine_latents(encode, generate, images, w0, 0)
