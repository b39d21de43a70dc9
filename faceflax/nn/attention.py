"""Self-attention layer of SAGAN (thesis sec. 2.2.4, eq. 2.62-2.64)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from faceflax.nn.conv import conv


class SelfAttention(nn.Module):
    """``o = gamma * h(x) beta + x`` with ``gamma`` initialised to 0 (eq. 2.64).

    ``f``, ``g`` are 1x1 convs to ``C // key_reduction`` channels (SAGAN uses 8) and ``h`` keeps the
    ``C`` channels (eq. 2.63). ``beta[j, i]`` is a softmax over source locations ``i`` of
    ``s_ij = f(x_i)^T g(x_j)`` (eq. 2.62).
    """

    key_reduction: int = 8
    spectral_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = True) -> jax.Array:
        """x: ``[B, H, W, C]`` float32 -> same shape."""
        b, hgt, wid, c = x.shape
        keys = max(c // self.key_reduction, 1)
        opts = dict(spectral_norm=self.spectral_norm, update_stats=update_stats)
        f = conv(keys, 1, name="f", **opts)(x).reshape(b, hgt * wid, keys)
        g = conv(keys, 1, name="g", **opts)(x).reshape(b, hgt * wid, keys)
        h = conv(c, 1, name="h", **opts)(x).reshape(b, hgt * wid, c)
        s = jnp.einsum("bik,bjk->bij", f, g)  # eq. 2.62: s_ij = f(x_i)^T g(x_j)
        beta = jax.nn.softmax(s, axis=1)  # normalised over source locations i
        attended = jnp.einsum("bij,bic->bjc", beta, h).reshape(x.shape)
        gamma = self.param("gamma", nn.initializers.zeros, ())
        return gamma * attended + x  # eq. 2.64
