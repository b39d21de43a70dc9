"""Spherical-harmonics illumination with 9 coefficients (bands 0-2) on Lambertian albedo.

Deep3DFaceRecon ``models/bfm.py`` (``SH``, ``compute_color``; after Ramamoorthi & Hanrahan
2001): irradiance ``E(n) = sum_k gamma_k Y_k(n)`` and colour ``albedo * E(n)`` per channel,
each basis term scaled by ``a_l c_l``. ``c_l`` is the real-SH normalisation; ``a_l`` are
Deep3DFaceRecon's band factors ``(pi, 2 pi / sqrt 3, 2 pi / sqrt 8)`` -- not the Lambertian
``(pi, 2 pi / 3, pi / 4)`` of Ramamoorthi & Hanrahan, but copied as is so that coefficients
carry over. Deep3DFaceRecon regresses 27 coefficients (9 per RGB channel, channel-major); the
thesis (ch. 5, ``c in R^239``) regresses *nine*, i.e. monochrome (white) light shared by the
three channels. :func:`shade` takes either; both add ``init_lit`` (0.8) to the DC coefficient
so that zero coefficients give a lit face.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

# Deep3DFaceRecon ``SH``: band factors a_l and real-SH normalisations c_l, l = 0, 1, 2.
SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (
    1 / math.sqrt(4 * math.pi),
    math.sqrt(3.0) / math.sqrt(4 * math.pi),
    3 * math.sqrt(5.0) / math.sqrt(12 * math.pi),
)
INIT_LIT = 0.8

_HIGHEST = jax.lax.Precision.HIGHEST


@jax.jit
def sh_basis(normals: ArrayLike) -> jax.Array:
    """The 9 scaled SH basis terms, in Deep3DFaceRecon ``compute_color``'s order and signs.

    With ``(x, y, z)`` the unit normal and ``k_l = a_l c_l``:
    ``[k0, -k1 y, k1 z, -k1 x, k2 x y, -k2 y z, k2 (3 z^2 - 1) / (2 sqrt 3), -k2 x z,
    k2 (x^2 - y^2) / 2]``. The ``m = +-1`` terms (``y``, ``x``, ``y z``, ``x z``) carry a minus
    sign (the Condon-Shortley phase); copied exactly so Deep3DFaceRecon coefficients carry over.

    Args:
      normals: ``[..., 3]`` float32 unit normals.

    Returns:
      ``[..., 9]`` float32.
    """
    normals = jnp.asarray(normals)
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    k0, k1, k2 = (a * c for a, c in zip(SH_A, SH_C, strict=True))
    terms = (
        jnp.full_like(x, k0),
        -k1 * y,
        k1 * z,
        -k1 * x,
        k2 * x * y,
        -k2 * y * z,
        0.5 * k2 / math.sqrt(3.0) * (3 * z * z - 1),
        -k2 * x * z,
        0.5 * k2 * (x * x - y * y),
    )
    return jnp.stack(terms, axis=-1)


@functools.partial(jax.jit, static_argnames=("per_channel",))
def shade(
    albedo: ArrayLike,
    normals: ArrayLike,
    gamma: ArrayLike,
    *,
    init_lit: ArrayLike = INIT_LIT,
    per_channel: bool | None = None,
) -> jax.Array:
    """Lambertian SH shading ``albedo * (Y(n) @ (gamma + init_lit e_0))`` (``compute_color``).

    Args:
      albedo: ``[..., V, 3]`` float32 RGB reflectance.
      normals: ``[..., V, 3]`` float32 unit normals, in the frame the light is expressed in.
      gamma: per-channel ``[..., 27]`` (Deep3DFaceRecon's layout: 9 for R, then G, then B) or
        ``[..., 3, 9]``; or monochrome ``[..., 9]`` (the thesis' 9 coefficients) used for all
        three channels. Batch dims broadcast against ``albedo``'s and ``normals``'.
      init_lit: ambient offset added to the DC coefficient of every channel.
      per_channel: the layout of ``gamma``; ``None`` infers it from the trailing shape:
        ``27`` or ``(3, 9)`` is per-channel, any other ``9`` monochrome. Pass ``False`` for a
        batch of exactly three monochrome vectors ``[3, 9]``.

    Returns:
      ``[..., V, 3]`` float32 shaded colour.
    """
    gamma = jnp.asarray(gamma)
    if per_channel is None:
        per_channel = gamma.shape[-1] == 27 or gamma.shape[-2:] == (3, 9)
    if per_channel and gamma.shape[-1] == 27:
        gamma = gamma.reshape(*gamma.shape[:-1], 3, 9)
    elif per_channel and gamma.shape[-2:] != (3, 9):
        raise ValueError(f"per-channel SH coefficients must be [..., 27] or [..., 3, 9], got {gamma.shape}")
    elif not per_channel:
        if gamma.shape[-1] != 9:
            raise ValueError(
                f"monochrome SH coefficients must be [..., 9], got {gamma.shape}; "
                "pass 27 or [..., 3, 9] values for per-channel light"
            )
        gamma = gamma[..., None, :]
    gamma = gamma.at[..., 0].add(init_lit)  # [..., C, 9], C = 3 or 1
    irradiance = jnp.matmul(sh_basis(normals), jnp.swapaxes(gamma, -1, -2), precision=_HIGHEST)
    return jnp.asarray(albedo) * irradiance
