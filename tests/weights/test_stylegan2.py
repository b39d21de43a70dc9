"""rosinality StyleGAN2 checkpoints -> faceflax: images of G (MvInvert eq. 3) and discriminator logits of the
converted networks equal the PyTorch reference's on random weights; mismatched checkpoints are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.stylegan2 import Discriminator, Generator
from faceflax.weights.stylegan2 import convert_generator, load_discriminator, load_generator

torch = pytest.importorskip("torch")
from tests.models import torch_stylegan2 as ref

SIZE, STYLE_DIM, N_MLP = 32, 64, 2
CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16}  # rosinality's table has 512 up to 32 px: too slow for a unit test
WIDTHS = tuple(CHANNELS.values())


def _relative_error(ours, theirs) -> float:
    return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())


def _nchw_to_nhwc(x: "torch.Tensor") -> jax.Array:
    return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """rosinality-layout checkpoint ``{"g_ema", "d"}`` of random networks, and the torch modules."""
    torch.manual_seed(0)
    generator = ref.Generator(SIZE, STYLE_DIM, N_MLP, channel_multiplier=1, channels=CHANNELS).eval()
    discriminator = ref.Discriminator(SIZE, channels=CHANNELS).eval()
    with torch.no_grad():  # biases and noise strengths start at 0 or 1: make every parameter count
        for name, p in [*generator.named_parameters(), *discriminator.named_parameters()]:
            if name.endswith(("bias", "noise.weight")):
                p.add_(0.2 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("stylegan2") / "ffhq-tiny.pt"
    torch.save({"g_ema": generator.state_dict(), "d": discriminator.state_dict()}, path)
    return path, generator, discriminator


@pytest.fixture(scope="module")
def converted(checkpoint):
    path, torch_generator, _ = checkpoint
    generator = Generator(SIZE, STYLE_DIM, N_MLP, channel_multiplier=1, channels=WIDTHS)
    return generator, load_generator(path, generator), torch_generator


def test_generator_from_z_with_explicit_noise(converted):
    generator, variables, torch_generator = converted
    torch.manual_seed(1)
    z = torch.randn(3, STYLE_DIM)
    noise = [torch.randn(3, 1, s[1], s[2]) for s in generator.noise_shapes()]
    with torch.no_grad():
        theirs, latent = torch_generator([z], noise=noise)
    run = jax.jit(lambda v, z, noise: generator.apply(v, z, noise=noise, return_latents=True))
    ours, our_latent = run(variables, jnp.asarray(z.numpy()), [_nchw_to_nhwc(n) for n in noise])
    assert _relative_error(ours, theirs.numpy().transpose(0, 2, 3, 1)) < 1e-4
    assert _relative_error(our_latent, latent.numpy()) < 1e-5


def test_generator_from_truncated_w_plus_and_mixed_styles_with_stored_noise(converted):
    generator, variables, torch_generator = converted
    torch.manual_seed(2)
    with torch.no_grad():
        w_avg = torch_generator.style(torch.randn(256, STYLE_DIM)).mean(0, keepdim=True)
        w_plus = torch_generator.style(torch.randn(2 * generator.n_latent, STYLE_DIM)).view(2, generator.n_latent, -1)
        z1, z2 = torch.randn(2, STYLE_DIM), torch.randn(2, STYLE_DIM)
        truncated, _ = torch_generator(
            [w_plus], input_is_latent=True, truncation=0.7, truncation_latent=w_avg, randomize_noise=False
        )
        mixed, _ = torch_generator([z1, z2], inject_index=3, randomize_noise=False)
    run = jax.jit(
        lambda v, w, w_avg, z1, z2: (
            generator.apply(v, w, input_is_latent=True, truncation=0.7, truncation_latent=w_avg),
            generator.apply(v, [z1, z2], inject_index=3),
        )
    )
    ours_truncated, ours_mixed = run(variables, *(jnp.asarray(t.numpy()) for t in (w_plus, w_avg, z1, z2)))
    assert _relative_error(ours_truncated, truncated.numpy().transpose(0, 2, 3, 1)) < 1e-4
    assert _relative_error(ours_mixed, mixed.numpy().transpose(0, 2, 3, 1)) < 1e-4


def test_discriminator_logits(checkpoint):
    path, _, torch_discriminator = checkpoint
    discriminator = Discriminator(SIZE, channels=WIDTHS)
    variables = load_discriminator(path, discriminator)
    torch.manual_seed(3)
    images = torch.randn(8, 3, SIZE, SIZE)  # two minibatch-stddev groups of 4: checks the grouping order
    with torch.no_grad():
        theirs = torch_discriminator(images).numpy()
    ours = jax.jit(discriminator.apply)(variables, _nchw_to_nhwc(images))
    assert ours.shape == (8, 1)
    assert _relative_error(ours, theirs) < 1e-4


def test_mismatched_checkpoints_are_refused(checkpoint, tmp_path):
    torch_generator = checkpoint[1]
    generator = Generator(SIZE, STYLE_DIM, N_MLP, channel_multiplier=1, channels=WIDTHS)
    state = torch_generator.state_dict()
    state["convs.9.noise.weight"] = state.pop("convs.1.noise.weight")
    torch.save({"g_ema": state}, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"missing keys: convs\.1\.noise\.weight; unexpected keys: convs\.9\.noise"):
        load_generator(tmp_path / "renamed.pt", generator)
    tensors = {k: v.numpy() for k, v in torch_generator.state_dict().items()}
    with pytest.raises(ValueError, match="missing keys: style.3.weight"):  # a deeper mapping network expected
        convert_generator(tensors, Generator(SIZE, STYLE_DIM, 3, channel_multiplier=1, channels=WIDTHS))
    with pytest.raises(ValueError, match=r"input.input has shape \(1, 32, 4, 4\)"):  # other widths
        convert_generator(tensors, Generator(SIZE, STYLE_DIM, N_MLP, channels=(64, 32, 16, 16)))
    with pytest.raises(
        ValueError, match=r"unexpected keys: convs\.4\.activate\.bias, .* \(18 in all\)"
    ):  # a 32-px checkpoint for a 16-px model
        convert_generator(tensors, Generator(16, STYLE_DIM, N_MLP, channels=WIDTHS[:3]))
    tensors["convs.0.conv.blur.kernel"] = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"convs.0.conv.blur.kernel is not the \[1, 3, 3, 1\] blur kernel"):
        convert_generator(tensors, generator)
    with pytest.raises(ValueError, match="no entry 'd'"):
        load_discriminator(tmp_path / "renamed.pt", Discriminator(SIZE, channels=WIDTHS))
