import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from faceflax.nn.stride2 import NHWC_DIMS, conv_transpose_stride2, conv_transpose_stride2_full

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


@pytest.mark.parametrize("size", [3, 4, 1])
def test_full_stride2_transposed_conv_equals_the_input_dilated_form_and_its_gradients(size):

    rng = np.random.default_rng(size)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(size, size, 3, 4)), jnp.float32)

    def dilated(x, kernel):  # torch's conv_transpose2d(stride=2, padding=0), as lax spells it
        pad = [(size - 1, size - 1)] * 2
        return jax.lax.conv_general_dilated(
            x, kernel[::-1, ::-1], (1, 1), pad, lhs_dilation=(2, 2), dimension_numbers=NHWC_DIMS
        )

    expected = dilated(x, kernel)
    actual = conv_transpose_stride2_full(x, kernel)
    assert actual.shape == expected.shape == (2, 2 * 5 + size - 2, 2 * 6 + size - 2, 4)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    cotangent = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    for argnum in (0, 1):
        grad_fast = jax.grad(lambda *a: jnp.sum(conv_transpose_stride2_full(*a) * cotangent), argnum)(x, kernel)
        grad_ref = jax.grad(lambda *a: jnp.sum(dilated(*a) * cotangent), argnum)(x, kernel)
        np.testing.assert_allclose(grad_fast, grad_ref, rtol=1e-4, atol=1e-4)
