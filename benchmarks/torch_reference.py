"""PyTorch baseline for ``benchmarks/train_step.py``: the gan_zoo nets and steps, written plainly.

A straightforward, mainstream PyTorch implementation (NCHW ``nn.Conv2d`` / ``nn.ConvTranspose2d``
/ ``nn.BatchNorm2d``, ``torch.nn.utils.spectral_norm``, ``torch.optim.Adam``, hinge or WGAN-GP
losses with an ``autograd.grad`` penalty) of the same layer list as
``faceflax/models/gan_zoo_nets.py`` and ``faceflax/nn/resblocks.py``. Every size and
hyper-parameter is read from the same experiment config the JAX side trains, so the two cannot
drift apart silently. PyTorch is only a benchmark dependency; it is not in ``pyproject.toml``.
"""

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.spectral_norm(layer) if enabled else layer


def _octaves(image_size: int, base: int = 4) -> int:
    return int(math.log2(image_size / base))


class CnnGenerator(nn.Module):
    """z -> linear 4x4xC0 -> BN-ReLU -> [4x4 s2 deconv -> BN-ReLU]* -> 3x3 conv -> tanh.

    As in the JAX net, the layers feeding batch norm have no bias.
    """

    def __init__(self, latent_dim: int, channels, spectral_norm: bool = False):
        super().__init__()
        self.c0 = channels[0]
        self.fc = _sn(nn.Linear(latent_dim, 4 * 4 * channels[0], bias=False), spectral_norm)
        layers = [nn.BatchNorm2d(channels[0]), nn.ReLU()]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [
                _sn(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), spectral_norm),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        layers += [_sn(nn.Conv2d(channels[-1], 3, 3, 1, 1), spectral_norm), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(self.fc(z).view(-1, self.c0, 4, 4))


class CnnDiscriminator(nn.Module):
    """[3x3 conv -> LReLU(0.1) -> 4x4 s2 conv -> LReLU(0.1)]* -> 3x3 conv -> LReLU -> linear."""

    def __init__(self, channels, image_size: int, spectral_norm: bool = True):
        super().__init__()
        layers, cin = [], 3
        for ch in channels[:-1]:
            layers += [
                _sn(nn.Conv2d(cin, ch, 3, 1, 1), spectral_norm),
                nn.LeakyReLU(0.1),
                _sn(nn.Conv2d(ch, ch, 4, 2, 1), spectral_norm),
                nn.LeakyReLU(0.1),
            ]
            cin = ch
        layers += [_sn(nn.Conv2d(cin, channels[-1], 3, 1, 1), spectral_norm), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        side = image_size // 2 ** (len(channels) - 1)
        self.fc = _sn(nn.Linear(side * side * channels[-1], 1), spectral_norm)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1)).view(-1)


class GeneratorResBlock(nn.Module):
    """BN-ReLU-up-conv3-BN-ReLU-conv3 with an up-conv1 shortcut (no conv biases, as in JAX)."""

    def __init__(self, cin: int, cout: int, spectral_norm: bool = False):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), spectral_norm)
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), spectral_norm)
        self.shortcut = _sn(nn.Conv2d(cin, cout, 1, bias=False), spectral_norm)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DiscriminatorResBlock(nn.Module):
    """ReLU-conv3-ReLU-conv3(-avgpool); ``first`` is SN-GAN's optimised block on raw pixels."""

    def __init__(self, cin: int, cout: int, downsample: bool, first: bool, spectral_norm: bool):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1), spectral_norm)
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1), spectral_norm)
        self.shortcut = None
        if first or downsample or cin != cout:
            self.shortcut = _sn(nn.Conv2d(cin, cout, 1), spectral_norm)

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        if self.shortcut is not None:
            x = self.shortcut(x)
            if self.downsample:
                x = F.avg_pool2d(x, 2)
        return h + x


class ResnetGenerator(nn.Module):
    """z -> linear 4x4xC -> up-sampling residual blocks -> BN-ReLU -> 3x3 conv -> tanh."""

    def __init__(self, latent_dim: int, image_size: int, features: int, spectral_norm: bool = False):
        super().__init__()
        self.features = features
        self.fc = _sn(nn.Linear(latent_dim, 4 * 4 * features, bias=False), spectral_norm)
        self.blocks = nn.Sequential(
            *[GeneratorResBlock(features, features, spectral_norm) for _ in range(_octaves(image_size))]
        )
        self.bn = nn.BatchNorm2d(features)
        self.out = _sn(nn.Conv2d(features, 3, 3, 1, 1), spectral_norm)

    def forward(self, z):
        x = self.blocks(self.fc(z).view(-1, self.features, 4, 4))
        return torch.tanh(self.out(F.relu(self.bn(x))))


class ResnetDiscriminator(nn.Module):
    """Down-sampling residual blocks to 8x8, two more blocks, ReLU, global sum pool, linear."""

    def __init__(self, image_size: int, features: int, spectral_norm: bool = True):
        super().__init__()
        downsamples = _octaves(image_size, base=8)
        blocks = []
        for i in range(downsamples + 2):
            cin = 3 if i == 0 else features
            blocks.append(DiscriminatorResBlock(cin, features, i < downsamples, i == 0, spectral_norm))
        self.blocks = nn.Sequential(*blocks)
        self.fc = _sn(nn.Linear(features, 1), spectral_norm)

    def forward(self, x):
        return self.fc(torch.sum(F.relu(self.blocks(x)), dim=(2, 3))).view(-1)


def build_nets(config):
    """``(generator, discriminator)`` for a gan_zoo config (``config.method.kind == "gan"``)."""
    m, size = config.method, config.data.image_size
    if m.attention_resolution:
        raise NotImplementedError("the PyTorch baseline has no SAGAN attention layer")
    if m.arch == "cnn":
        return (
            CnnGenerator(m.latent_dim, tuple(m.g_channels), m.spectral_norm_g),
            CnnDiscriminator(tuple(m.d_channels), size, m.spectral_norm_d),
        )
    return (
        ResnetGenerator(m.latent_dim, size, m.g_features, m.spectral_norm_g),
        ResnetDiscriminator(size, m.d_features, m.spectral_norm_d),
    )


def _adam(params, cfg):
    if cfg.name != "adam":
        raise NotImplementedError(f"the PyTorch baseline only builds Adam, not {cfg.name!r}")
    return torch.optim.Adam(params, lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2))


def make_iteration(config, seed: int = 0):
    """A closure running one generator iteration: ``n_critic`` D updates, then one G update."""
    torch.manual_seed(seed)
    m, batch = config.method, config.batch_size
    if m.loss not in ("hinge", "wasserstein") or m.clip_value:
        raise NotImplementedError(f"the PyTorch baseline covers hinge and WGAN-GP, not {m.loss!r}")
    generator, discriminator = build_nets(config)
    generator.train()
    discriminator.train()
    opt_g = _adam(generator.parameters(), config.optimizers.generator)
    opt_d = _adam(discriminator.parameters(), config.optimizers.discriminator)
    size = config.data.image_size
    # Synthetic "real" images in [-1, 1]; a fixed pool so data loading is not timed.
    reals = [torch.rand(batch, 3, size, size) * 2 - 1 for _ in range(m.n_critic)]

    def d_step(real):
        with torch.no_grad():
            fake = generator(torch.randn(batch, m.latent_dim))
        logits = discriminator(torch.cat([real, fake]))
        real_logits, fake_logits = logits[:batch], logits[batch:]
        if m.loss == "hinge":
            loss = F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        else:
            loss = fake_logits.mean() - real_logits.mean()
        if m.gp_weight:
            alpha = torch.rand(batch, 1, 1, 1)
            x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
            penalty = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            loss = loss + m.gp_weight * penalty
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return loss

    def g_step():
        fake = generator(torch.randn(batch, m.latent_dim))
        loss = -discriminator(fake).mean()  # hinge and Wasserstein G losses coincide
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        return loss

    def iteration():
        for real in reals:
            d_step(real)
        return float(g_step().detach())  # forces the whole iteration to finish

    return iteration


def measure(config, warmup: int, timed_iters: Callable[[float], int], threads: int = 2) -> dict:
    """Steady-state seconds per iteration on ``threads`` threads.

    Runs ``warmup`` (>= 1) untimed iterations, then ``timed_iters(last warm-up seconds)``
    iterations timed together.
    """
    torch.set_num_threads(threads)
    setup_start = time.perf_counter()
    iteration = make_iteration(config)
    setup_s = time.perf_counter() - setup_start
    last = 0.0
    for _ in range(warmup):
        start = time.perf_counter()
        iteration()
        last = time.perf_counter() - start
    iters = timed_iters(last)
    start = time.perf_counter()
    for _ in range(iters):
        iteration()
    total = time.perf_counter() - start
    return {
        "setup_s": setup_s,
        "s_per_iter": total / iters,
        "last_warmup_s": last,
        "iters": iters,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }
