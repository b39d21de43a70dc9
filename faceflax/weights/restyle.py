"""ReStyle pSp checkpoints (``restyle_psp_ffhq_encode.pt``, ...) -> :class:`BackboneEncoder` variables and ``w_0``.

ReStyle's training script saves ``{"state_dict": net.state_dict(), "opts": ..., "latent_avg": [n_styles, 512]}``;
the state dict holds the encoder under ``encoder.`` (``encoder.input_layer.0.weight``, ``encoder.body.3.res_layer.
5.fc1.weight``, ``encoder.styles.17.linear.bias``, ...) beside the StyleGAN2 generator under ``decoder.``, which
this converter skips (rosinality's layout; its own converter reads it with prefix ``decoder.``). ``latent_avg``
is MvInvert's mean latent ``w_0`` (eq. 2). Also read: an ``.npz`` holding the same names flat (``encoder.*``,
optional ``decoder.*``, ``latent_avg``). Names follow :func:`faceflax.weights.state_dict.indexed`; EqualLinear
kernels are stored unscaled as rosinality's. Usage::

    variables, w0 = convert_restyle_encoder("restyle_psp_ffhq_encode.pt")
    encode = lambda x, y: BackboneEncoder().apply(variables, x, y)
    latents, images = refine_latents(encode, lambda w: (generator(w) + 1) / 2, targets_256, w0, iterations=5)
"""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.models.restyle import MAX_INPUT_SIZE, BackboneEncoder
from faceflax.weights.state_dict import StateDict, indexed, load_state_dict, torch_variables


def restyle_encoder_variables(state: StateDict, n_styles: int = 18, prefix: str = "encoder.") -> dict:
    """Takes ReStyle's ``BackboneEncoder(50, "ir_se", n_styles)`` tensors named ``prefix + ...`` from ``state``.

    Returns ``{"params", "batch_stats"}`` of float32 numpy arrays for ``BackboneEncoder(n_styles)``; does not
    call ``state.finish()``.
    """
    images = jnp.zeros((1, MAX_INPUT_SIZE, MAX_INPUT_SIZE, 3))
    template = jax.eval_shape(BackboneEncoder(n_styles).init, jax.random.key(0), images, images)
    return torch_variables(state, template, prefix, indexed)


def _read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ReStyle checkpoint's ``state_dict`` tensors plus its top-level ``latent_avg`` (if present), flat; refuses
    one whose ``opts.encoder_type`` is not ``BackboneEncoder``."""
    if Path(path).suffix == ".npz":
        return load_state_dict(path)
    tensors = load_state_dict(path, prefix="state_dict")
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # maps, does not read, the rest
    encoder_type = (checkpoint.get("opts") or {}).get("encoder_type", "BackboneEncoder")
    if encoder_type != "BackboneEncoder":  # e4e's ProgressiveBackboneEncoder has the same names, another forward
        raise ValueError(
            f"'{path}' holds a ReStyle {encoder_type}; only pSp's BackboneEncoder converts (restyle_psp_*_encode.pt)"
        )
    if "latent_avg" in checkpoint:
        tensors["latent_avg"] = checkpoint["latent_avg"].detach().numpy()
    return tensors


def convert_restyle_encoder(path: str | os.PathLike, n_styles: int = 18) -> tuple[dict, np.ndarray]:
    """A ReStyle pSp checkpoint -> (``BackboneEncoder(n_styles)`` variables, ``latent_avg [n_styles, 512]``).

    ``n_styles``: the generator's ``n_latent`` (18 for ReStyle's 1024-px FFHQ encoder). Raises ``ValueError``
    listing missing and unexpected keys (e.g. the wrong ``n_styles`` or a ResNet-34 encoder) or naming a
    misshapen tensor.
    """
    state = StateDict(_read(path), f"ReStyle checkpoint '{path}'")
    variables = restyle_encoder_variables(state, n_styles)
    latent_avg = state.take("latent_avg")
    state.skip(*(name for name in state.tensors if name.startswith("decoder.")))
    state.finish()  # before the shape check, so a wrong n_styles is reported by the keys it adds or lacks
    if latent_avg.shape != (n_styles, 512):
        raise ValueError(f"{state.what}: latent_avg has shape {latent_avg.shape}, the encoder needs ({n_styles}, 512)")
    return variables, latent_avg
