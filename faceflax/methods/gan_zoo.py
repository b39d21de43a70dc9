"""Thesis chapter 2 as one method: VAE, GAN, WGAN, WGAN-GP, SN-GAN and SAGAN.

``config.method`` picks the networks and the objective:
  * ``kind``: ``"vae"`` (encoder/decoder, eq. 2.17-2.19) or ``"gan"`` (generator/discriminator);
  * ``arch``: ``"cnn"`` or ``"resnet"`` (the SN-GAN paper's 32x32 reference architectures);
  * ``loss``: ``"minimax"`` (eq. 2.21-2.22), ``"nonsaturating"`` (eq. 2.21 + 2.24),
    ``"wasserstein"`` (eq. 2.44-2.45) or ``"hinge"`` (SN-GAN, SAGAN);
  * ``n_critic`` discriminator updates per generator update (Algorithms 2-4);
  * ``gp_weight`` (lambda of eq. 2.47; 0 = off), ``clip_value`` (c of Algorithm 3; 0 = off);
  * ``spectral_norm_d`` / ``spectral_norm_g`` (eq. 2.59-2.61), ``attention_resolution``
    (SAGAN layer, eq. 2.62-2.64, at that feature-map size; 0 = off).
"""

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from faceflax.losses import adversarial
from faceflax.losses.vae import reparameterize, vae_loss
from faceflax.methods.base import Method, Nets, Phase
from faceflax.models import gan_zoo_nets as nets_lib
from faceflax.parallel import constrain_batch

D_LOSSES = {
    "minimax": adversarial.minimax_d_loss,
    "nonsaturating": adversarial.minimax_d_loss,
    "wasserstein": adversarial.wasserstein_d_loss,
    "hinge": adversarial.hinge_d_loss,
}
G_LOSSES = {
    "minimax": adversarial.minimax_g_loss,
    "nonsaturating": adversarial.nonsaturating_g_loss,
    "wasserstein": adversarial.wasserstein_g_loss,
    "hinge": adversarial.hinge_g_loss,
}


def _noise(key: jax.Array, count: int, latent_dim: int) -> jax.Array:
    return constrain_batch(jax.random.normal(key, (count, latent_dim)))


def _check_depth(config: ConfigDict, name: str) -> tuple[int, ...]:
    """``config.method.<name>``: one width per 2x stage from 4x4 to the image size, plus one."""
    channels, size = tuple(config.method[name]), config.data.image_size
    if len(channels) != nets_lib.num_octaves(size) + 1:
        raise ValueError(
            f"config.method.{name} needs {nets_lib.num_octaves(size) + 1} entries for "
            f"{size}x{size} images, got {channels}"
        )
    return channels


def _gan_networks(config: ConfigDict) -> dict:
    m, size = config.method, config.data.image_size
    attention = m.attention_resolution
    if m.arch == "cnn":
        _check_depth(config, "g_channels")
        _check_depth(config, "d_channels")
        return {
            "generator": nets_lib.CnnGenerator(m.g_channels, 3, m.spectral_norm_g, attention),
            "discriminator": nets_lib.CnnDiscriminator(m.d_channels, m.spectral_norm_d, attention),
        }
    if m.arch == "resnet":
        return {
            "generator": nets_lib.ResnetGenerator(size, m.g_features, 3, m.spectral_norm_g, attention),
            "discriminator": nets_lib.ResnetDiscriminator(m.d_features, m.spectral_norm_d, attention),
        }
    raise ValueError(f"unknown config.method.arch {m.arch!r}; use 'cnn' or 'resnet'")


def _gan(config: ConfigDict) -> Method:
    m, batch_size = config.method, config.batch_size
    if m.loss not in D_LOSSES:
        raise ValueError(f"unknown config.method.loss {m.loss!r}; use one of {sorted(D_LOSSES)}")
    d_loss, g_loss = D_LOSSES[m.loss], G_LOSSES[m.loss]

    def discriminator_loss(nets: Nets, real: jax.Array, key: jax.Array):
        noise_key, penalty_key = jax.random.split(key)
        fake = jax.lax.stop_gradient(nets("generator", _noise(noise_key, batch_size, m.latent_dim)))
        # One discriminator pass over real and fake: one power iteration per update (eq. 2.59).
        logits = nets("discriminator", jnp.concatenate([real, fake]))
        real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
        loss = d_loss(real_logits, fake_logits)
        metrics = {"real": jnp.mean(real_logits), "fake": jnp.mean(fake_logits)}
        if m.gp_weight:
            critic = lambda x: nets("discriminator", x, keep_state=False)
            penalty, norms = adversarial.gradient_penalty(critic, real, fake, penalty_key)
            loss = loss + m.gp_weight * penalty
            metrics |= {"gp": penalty, "grad_norm": jnp.mean(norms)}
        return loss, metrics

    def generator_loss(nets: Nets, _, key: jax.Array):
        fake_logits = nets("discriminator", nets("generator", _noise(key, batch_size, m.latent_dim)))
        return g_loss(fake_logits), {}

    networks = _gan_networks(config)
    size = config.data.image_size
    return Method(
        networks=networks,
        init_args={
            "generator": (jnp.zeros((1, m.latent_dim)),),
            "discriminator": (jnp.zeros((1, size, size, 3)),),
        },
        phases=(
            Phase(
                "d",
                ("discriminator",),
                discriminator_loss,
                repeats=m.n_critic,
                clip_value=m.clip_value or None,
            ),
            Phase("g", ("generator",), generator_loss, uses_data=False),
        ),
        sample=lambda nets, key, n: nets("generator", _noise(key, n, m.latent_dim)),
    )


def _vae(config: ConfigDict) -> Method:
    m, size = config.method, config.data.image_size
    channels = _check_depth(config, "g_channels")

    def loss(nets: Nets, images: jax.Array, key: jax.Array):
        mean, log_var = nets("encoder", images)
        reconstruction = nets("decoder", reparameterize(key, mean, log_var))  # eq. 2.19
        return vae_loss(images, reconstruction, mean, log_var, m.kl_weight)  # eq. 2.18

    return Method(
        networks={
            "encoder": nets_lib.VaeEncoder(m.latent_dim, channels[::-1][:-1]),
            "decoder": nets_lib.VaeDecoder(channels),
        },
        init_args={
            "encoder": (jnp.zeros((1, size, size, 3)),),
            "decoder": (jnp.zeros((1, m.latent_dim)),),
        },
        phases=(Phase("vae", ("encoder", "decoder"), loss),),
        sample=lambda nets, key, n: nets("decoder", _noise(key, n, m.latent_dim)),
    )


def make_method(config: ConfigDict) -> Method:
    """The chapter-2 method described by ``config.method`` (see the module docstring)."""
    if config.method.kind == "vae":
        return _vae(config)
    if config.method.kind == "gan":
        return _gan(config)
    raise ValueError(f"unknown config.method.kind {config.method.kind!r}; use 'vae' or 'gan'")
