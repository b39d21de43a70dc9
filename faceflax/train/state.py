"""The training state: every array a run owns, as one pytree."""

from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from faceflax.methods.base import Method

Pytree = Any


@flax.struct.dataclass
class TrainState:
    """Step, and per network: parameters, non-parameter state, optimiser state, EMA weights.

    Attributes:
      step: ``[]`` int32 generator iterations done.
      params: network name -> ``params`` collection.
      state: network name -> other collections (``batch_stats``, ``spectral_stats``).
      opt_state: network name -> optax state.
      ema_params: network name -> exponential moving average of its params (EMA networks only).
    """

    step: jax.Array
    params: Mapping[str, Pytree]
    state: Mapping[str, Pytree]
    opt_state: Mapping[str, Pytree]
    ema_params: Mapping[str, Pytree]


def make_optimizer(config: ConfigDict) -> optax.GradientTransformation:
    """An optax optimiser from ``{name: adam|rmsprop|sgd, learning_rate, ...}``."""
    name = config.name
    if name == "adam":
        return optax.adam(config.learning_rate, b1=config.b1, b2=config.b2)
    if name == "rmsprop":  # PyTorch's defaults, as used by WGAN (thesis Algorithm 3)
        return optax.rmsprop(config.learning_rate, decay=0.99, eps=1e-8)
    if name == "sgd":
        return optax.sgd(config.learning_rate)
    raise ValueError(f"unknown optimizer {name!r}; use one of adam, rmsprop, sgd")


def init_state(
    method: Method,
    optimizers: Mapping[str, optax.GradientTransformation],
    ema_networks: tuple[str, ...],
    key: jax.Array,
) -> TrainState:
    """Initialises every network of ``method`` (pure; run under ``jit`` to place it sharded)."""
    params, state = {}, {}
    for index, (name, module) in enumerate(method.networks.items()):
        variables = dict(module.init(jax.random.fold_in(key, index), *method.init_args[name], train=False))
        params[name] = variables.pop("params")
        state[name] = variables
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        state=state,
        opt_state={name: optimizers[name].init(params[name]) for name in optimizers},
        ema_params={name: params[name] for name in ema_networks},
    )
