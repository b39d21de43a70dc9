"""The generic step's contract: n_critic, which networks update, clipping, EMA, state threading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.config import apply_overrides, load_config
from faceflax.methods.base import Nets
from faceflax.train.checkpoint import Checkpointer
from faceflax.train.experiment import setup


def test_n_critic_discriminator_updates_per_generator_update(trained_runlocal):
    state, _ = trained_runlocal("lfw.py:wgan_gp,runlocal")
    assert int(state.opt_state["discriminator"][0].count) == 2 * 5  # Algorithm 4: n_critic = 5
    assert int(state.opt_state["generator"][0].count) == 2


def test_weight_clipping_bounds_only_the_critic(trained_runlocal):
    state, _ = trained_runlocal("lfw.py:wgan,runlocal")
    critic = jax.tree.leaves(jax.device_get(state.params["discriminator"]))
    assert max(np.abs(p).max() for p in critic) <= 0.01 + 1e-7  # Algorithm 3: c = 0.01
    generator = jax.tree.leaves(jax.device_get(state.params["generator"]))
    assert max(np.abs(p).max() for p in generator) > 0.05


def test_ema_weights_follow_the_update_rule(trained_runlocal):
    spec = "lfw.py:sngan,runlocal"
    state, workdir = trained_runlocal(spec)
    config = load_config(f"experiments/gan_zoo/{spec}")
    apply_overrides(config, ["total_steps=2", "checkpoint_every=1"])
    experiment = setup(config)
    checkpoints = Checkpointer(workdir, config, keep=3)
    after_one = checkpoints.restore(experiment.restore_target(), step=1)
    checkpoints.close()
    initial = experiment.init()
    d = config.ema.decay
    expected = jax.tree.map(
        lambda p0, p1, p2: d * d * p0 + d * (1 - d) * p1 + (1 - d) * p2,
        jax.device_get(initial.params["generator"]),
        jax.device_get(after_one.params["generator"]),
        jax.device_get(state.params["generator"]),
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        jax.device_get(state.ema_params["generator"]),
        expected,
    )
    assert set(state.ema_params) == {"generator"}


@pytest.fixture(scope="module")
def sngan_nets():
    config = load_config("experiments/gan_zoo/lfw.py:sngan,runlocal")
    experiment = setup(config)
    state = experiment.init()
    return experiment.method.networks, state


def _u(state):
    return jax.device_get(state["discriminator"]["spectral_stats"])


def test_a_phase_only_advances_state_of_networks_it_updates(sngan_nets):
    networks, state = sngan_nets
    images = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
    generator_phase = Nets(networks, state.params, state.state, train=True, updates=("generator",))
    generator_phase("discriminator", images)
    jax.tree.map(np.testing.assert_array_equal, _u(generator_phase.state), _u(state.state))

    discriminator_phase = Nets(networks, state.params, state.state, train=True, updates=("discriminator",))
    discriminator_phase("discriminator", images, keep_state=False)
    jax.tree.map(np.testing.assert_array_equal, _u(discriminator_phase.state), _u(state.state))
    discriminator_phase("discriminator", images)
    # Every u moves, except the final dense layer's: with one output unit it is always [+-1].
    changed = jax.tree.map(
        lambda a, b: a.size == 1 or not np.allclose(a, b), _u(discriminator_phase.state), _u(state.state)
    )
    assert all(jax.tree.leaves(changed))


def test_inference_mode_uses_running_statistics_and_mutates_nothing(sngan_nets):
    networks, state = sngan_nets
    nets = Nets(networks, state.params, state.state, train=False)
    z = jnp.ones((2, 128))
    np.testing.assert_array_equal(nets("generator", z), nets("generator", z))
    assert nets.state == dict(state.state)
