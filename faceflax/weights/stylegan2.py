"""rosinality stylegan2-pytorch checkpoints -> :mod:`faceflax.models.stylegan2` variables.

The generator G of MvInvert eq. 3 (and ReStyle's decoder) is the ``g_ema`` entry of such a checkpoint, the
discriminator the ``d`` entry. Names map one to one; only layouts change (OIHW -> HWIO kernels, ``[out, in]`` ->
``[in, out]`` dense kernels, NCHW -> NHWC constant input and noise, and the discriminator's first linear layer
reordered from torch's ``(C, H, W)`` flattening to NHWC's ``(H, W, C)``). Equalized-learning-rate weights stay
unscaled, as stored. The blur-kernel buffers are checked to be the ``[1, 3, 3, 1]`` filter the model uses.
A checkpoint of another size, width or depth is refused with its missing and unexpected keys.
"""

import itertools
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.models.stylegan2 import Discriminator, Generator, channel_table
from faceflax.nn.upfirdn import make_kernel
from faceflax.weights.state_dict import StateDict, load_state_dict


def _fir(sd: StateDict, name: str, gain: float) -> None:
    value = sd.take(name, (4, 4))
    if name in sd.used and not np.allclose(value, make_kernel() * gain, atol=1e-6):
        raise ValueError(f"{sd.what}: {name} is not the [1, 3, 3, 1] blur kernel the model implements")


def _linear(sd: StateDict, name: str, in_dim: int, out_dim: int) -> dict:
    return {"kernel": sd.take(f"{name}.weight", (out_dim, in_dim)).T, "bias": sd.take(f"{name}.bias", (out_dim,))}


def _conv(sd: StateDict, name: str, in_ch: int, out_ch: int, k: int) -> np.ndarray:
    return sd.take(name, (out_ch, in_ch, k, k)).transpose(2, 3, 1, 0)


def _modulated(sd: StateDict, name: str, in_ch: int, out_ch: int, k: int, style_dim: int) -> dict:
    weight = sd.take(f"{name}.weight", (1, out_ch, in_ch, k, k))[0].transpose(2, 3, 1, 0)
    return {"weight": weight, "modulation": _linear(sd, f"{name}.modulation", style_dim, in_ch)}


def _styled(sd: StateDict, name: str, in_ch: int, out_ch: int, style_dim: int, upsample: bool) -> dict:
    if upsample:
        _fir(sd, f"{name}.conv.blur.kernel", 4.0)
    return {
        "conv": _modulated(sd, f"{name}.conv", in_ch, out_ch, 3, style_dim),
        "noise": {"weight": sd.take(f"{name}.noise.weight", (1,))},
        "activate": {"bias": sd.take(f"{name}.activate.bias", (out_ch,))},
    }


def _to_rgb(sd: StateDict, name: str, in_ch: int, style_dim: int, upsample: bool) -> dict:
    if upsample:
        _fir(sd, f"{name}.upsample.kernel", 4.0)
    return {
        "conv": _modulated(sd, f"{name}.conv", in_ch, 3, 1, style_dim),
        "bias": sd.take(f"{name}.bias", (1, 3, 1, 1)).reshape(3),
    }


def convert_generator(tensors: Mapping[str, np.ndarray], generator: Generator) -> dict:
    """Variables ``{"params", "noise"}`` of ``generator`` from rosinality ``Generator`` state-dict tensors.

    ``tensors``: name -> array, e.g. ``load_state_dict(path, prefix="g_ema")``. Raises ``ValueError`` naming
    missing/unexpected keys when the checkpoint is not of ``generator``'s size, widths, style_dim or n_mlp.
    """
    sd = StateDict(tensors, f"StyleGAN2 generator checkpoint (expected {generator.size} px, widths {generator.widths})")
    d, widths = generator.style_dim, generator.widths
    params = {f"style_{i}": _linear(sd, f"style.{i + 1}", d, d) for i in range(generator.n_mlp)}
    params["input"] = sd.take("input.input", (1, widths[0], 4, 4)).transpose(0, 2, 3, 1)
    params["conv1"] = _styled(sd, "conv1", widths[0], widths[0], d, upsample=False)
    params["to_rgb1"] = _to_rgb(sd, "to_rgb1", widths[0], d, upsample=False)
    for level, (in_ch, out_ch) in enumerate(itertools.pairwise(widths)):
        params[f"convs_{2 * level}"] = _styled(sd, f"convs.{2 * level}", in_ch, out_ch, d, upsample=True)
        params[f"convs_{2 * level + 1}"] = _styled(sd, f"convs.{2 * level + 1}", out_ch, out_ch, d, upsample=False)
        params[f"to_rgbs_{level}"] = _to_rgb(sd, f"to_rgbs.{level}", out_ch, d, upsample=True)
    noise = {
        f"noise_{i}": sd.take(f"noises.noise_{i}", (1, 1, s[1], s[2])).transpose(0, 2, 3, 1)
        for i, s in enumerate(generator.noise_shapes())
    }
    sd.finish()
    return jax.tree.map(jnp.asarray, {"params": params, "noise": noise})


def _conv_layer(sd: StateDict, name: str, in_ch: int, out_ch: int, k: int, downsample: bool, activate: bool) -> dict:
    first = 1 if downsample else 0
    if downsample:
        _fir(sd, f"{name}.0.kernel", 1.0)
    layer = {"conv": {"kernel": _conv(sd, f"{name}.{first}.weight", in_ch, out_ch, k)}}
    if activate:
        layer["activate"] = {"bias": sd.take(f"{name}.{first + 1}.bias", (out_ch,))}
    return layer


def convert_discriminator(tensors: Mapping[str, np.ndarray], discriminator: Discriminator) -> dict:
    """Variables ``{"params"}`` of ``discriminator`` from rosinality ``Discriminator`` state-dict tensors
    (``load_state_dict(path, prefix="d")``); refuses mismatched checkpoints as :func:`convert_generator`."""
    widths = channel_table(discriminator.size, discriminator.channel_multiplier, discriminator.channels)
    sd = StateDict(tensors, f"StyleGAN2 discriminator checkpoint (expected {discriminator.size} px, widths {widths})")
    params = {"convs_0": _conv_layer(sd, "convs.0", 3, widths[-1], 1, downsample=False, activate=True)}
    for i, (in_ch, out_ch) in enumerate(itertools.pairwise(widths[::-1])):
        name = f"convs.{i + 1}"
        params[f"convs_{i + 1}"] = {
            "conv1": _conv_layer(sd, f"{name}.conv1", in_ch, in_ch, 3, downsample=False, activate=True),
            "conv2": _conv_layer(sd, f"{name}.conv2", in_ch, out_ch, 3, downsample=True, activate=True),
            "skip": _conv_layer(sd, f"{name}.skip", in_ch, out_ch, 1, downsample=True, activate=False),
        }
    c = widths[0]
    params["final_conv"] = _conv_layer(sd, "final_conv", c + 1, c, 3, downsample=False, activate=True)
    first = _linear(sd, "final_linear.0", c * 16, c)
    # torch flattens [B, C, 4, 4] as (c, h, w); the NHWC model flattens (h, w, c).
    first["kernel"] = first["kernel"].reshape(c, 4, 4, c).transpose(1, 2, 0, 3).reshape(16 * c, c)
    params["final_linear_0"] = first
    params["final_linear_1"] = _linear(sd, "final_linear.1", c, 1)
    sd.finish()
    return jax.tree.map(jnp.asarray, {"params": params})


def load_generator(path: str | os.PathLike, generator: Generator, prefix: str = "g_ema") -> dict:
    """``convert_generator`` of the ``prefix`` entry of the checkpoint at ``path`` (``.pt``/``.pth`` or ``.npz``)."""
    return convert_generator(load_state_dict(path, prefix=prefix), generator)


def load_discriminator(path: str | os.PathLike, discriminator: Discriminator, prefix: str = "d") -> dict:
    """``convert_discriminator`` of the ``prefix`` entry of the checkpoint at ``path``."""
    return convert_discriminator(load_state_dict(path, prefix=prefix), discriminator)
