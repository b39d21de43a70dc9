import jax
import jax.numpy as jnp
import numpy as np

from faceflax.nn.attention import SelfAttention


def test_gamma_starts_at_zero_so_layer_is_identity():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
    layer = SelfAttention(spectral_norm=False)
    variables = layer.init(jax.random.key(1), x)
    assert float(variables["params"]["gamma"]) == 0.0
    np.testing.assert_array_equal(layer.apply(variables, x), x)


def test_matches_equations_2_62_to_2_64():
    x = jax.random.normal(jax.random.key(0), (1, 3, 5, 16))
    layer = SelfAttention(spectral_norm=False)
    params = layer.init(jax.random.key(1), x)["params"]
    params = {**params, "gamma": jnp.asarray(0.7)}
    out = np.asarray(layer.apply({"params": params}, x))

    def conv1x1(name, features):
        return features @ np.asarray(params[name]["kernel"])[0, 0] + np.asarray(params[name]["bias"])

    features = np.asarray(x)[0].reshape(15, 16)  # N x C
    f, g, h = conv1x1("f", features), conv1x1("g", features), conv1x1("h", features)
    s = f @ g.T  # s_ij = f(x_i)^T g(x_j)
    beta = np.exp(s - s.max(0)) / np.exp(s - s.max(0)).sum(0)  # softmax over i, eq. 2.62
    o = 0.7 * (beta.T @ h) + features  # o_j = gamma sum_i beta_ji h(x_i) + x_j, eq. 2.64
    np.testing.assert_allclose(out[0].reshape(15, 16), o, rtol=1e-4, atol=1e-5)
