import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from faceflax.nn.stride2 import conv_transpose_stride2

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture
def arrays():
    keys = jax.random.split(jax.random.key(0), 2)
    return jax.random.normal(keys[0], (2, 3, 5, 3)), jax.random.normal(keys[1], (4, 4, 3, 5))


def test_equals_lax_conv_transpose(arrays):
    x, kernel = arrays
    expected = jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=DIMS)
    np.testing.assert_allclose(conv_transpose_stride2(x, kernel), expected, rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences(arrays):
    x, kernel = arrays
    with jax.enable_x64():
        x, kernel = jnp.asarray(x[:1, :2, :2], jnp.float64), jnp.asarray(kernel, jnp.float64)
        check_grads(conv_transpose_stride2, (x, kernel), order=2, modes=("rev",))


def test_other_kernel_sizes_are_rejected(arrays):
    x, kernel = arrays
    with pytest.raises(ValueError, match="4x4 kernel"):
        conv_transpose_stride2(x, kernel[:3, :3])
