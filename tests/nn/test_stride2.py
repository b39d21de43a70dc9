import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from faceflax.nn.stride2 import conv_stride2, conv_transpose_stride2, depth_to_space, space_to_depth

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture
def arrays():
    keys = jax.random.split(jax.random.key(0), 3)
    return (
        jax.random.normal(keys[0], (2, 6, 8, 3)),
        jax.random.normal(keys[1], (4, 4, 3, 5)),
        jax.random.normal(keys[2], (2, 3, 4, 5)),
    )


def test_space_depth_round_trip(arrays):
    x, _, _ = arrays
    assert space_to_depth(x).shape == (2, 3, 4, 12)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x)), x)


def test_conv_stride2_equals_strided_conv(arrays):
    x, kernel, _ = arrays
    expected = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=DIMS)
    np.testing.assert_allclose(conv_stride2(x, kernel), expected, rtol=1e-5, atol=1e-5)


def test_conv_transpose_stride2_equals_lax_conv_transpose(arrays):
    x, kernel, _ = arrays
    expected = jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=DIMS)
    np.testing.assert_allclose(conv_transpose_stride2(x, kernel), expected, rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences(arrays):
    x, kernel, y = arrays
    with jax.enable_x64():
        x, kernel, y = (jnp.asarray(a, jnp.float64) for a in (x, kernel, y))
        check_grads(conv_stride2, (x[:1, :4, :4], kernel), order=2, modes=("rev",))
        check_grads(conv_transpose_stride2, (y[:1, :2, :2, :3], kernel), order=2, modes=("rev",))


def test_odd_sizes_and_other_kernels_are_rejected(arrays):
    x, kernel, _ = arrays
    with pytest.raises(ValueError, match="even height and width"):
        conv_stride2(x[:, :5], kernel)
    with pytest.raises(ValueError, match="4x4 kernel"):
        conv_transpose_stride2(x, kernel[:3, :3])
