"""Instance normalisation and conditional instance normalisation (CIN, Dumoulin et al. 2017).

Thesis sec. 3.2.2 introduces CIN [87] as "predicting the affine parameters of the normalized feature map
... from the input label"; sec. 3.3.2 conditions the PAS embedder on the target pose's 3D landmarks and
sec. 3.3.3 the inpainting auto-encoder on the 3D landmarks and the LightCNN identity feature with it.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

EPSILON = 1e-5  # torch.nn.InstanceNorm2d's default


def instance_norm(x: jax.Array, epsilon: float = EPSILON) -> jax.Array:
    """``(x - mean) / sqrt(var + epsilon)`` over H, W per sample and channel (biased variance, as torch).

    x: ``[B, H, W, C]`` float -> same shape and dtype.
    """
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + epsilon)


class ConditionalInstanceNorm(nn.Module):
    """``gamma(c) * instance_norm(x) + beta(c)`` with ``gamma``, ``beta`` dense projections of ``c`` (sec. 3.2.2).

    ``gamma(c) = 1 + Dense_gamma(c)`` and ``beta(c) = Dense_beta(c)`` with zero-initialised kernels and
    biases, so the layer starts as plain instance normalisation (``gamma = 1``, ``beta = 0`` for every
    ``c``) and learns the conditioning; the kernels still get gradients (``x_hat * c``) from the first step.
    """

    epsilon: float = EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """x: ``[B, H, W, C]`` float32 features, c: ``[B, D]`` float32 condition -> ``[B, H, W, C]``."""
        if x.ndim != 4:
            raise ValueError(f"features must be NHWC [B, H, W, C], got shape {x.shape}; add the missing axes")
        if c.ndim != 2 or c.shape[0] != x.shape[0]:
            raise ValueError(f"condition must be [B, D] with B = {x.shape[0]}, got {c.shape}; flatten it per sample")
        channels = x.shape[-1]
        zeros = nn.initializers.zeros
        gamma = 1 + nn.Dense(channels, kernel_init=zeros, bias_init=zeros, name="gamma")(c)
        beta = nn.Dense(channels, kernel_init=zeros, bias_init=zeros, name="beta")(c)
        return gamma[:, None, None, :] * instance_norm(x, self.epsilon) + beta[:, None, None, :]
