"""Everything a run derives from its config before touching data: mesh, method, state layout."""

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from faceflax.methods.base import Method, Nets
from faceflax.train.sharding import check_batch_size, make_mesh, tree_shardings
from faceflax.train.state import TrainState, init_state, make_optimizer
from faceflax.train.step import make_train_step

# Independent streams folded out of the config's seed.
INIT_STREAM, STEP_STREAM, SAMPLE_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A config resolved into the objects training and evaluation share."""

    config: ConfigDict
    mesh: Mesh
    method: Method
    optimizers: Mapping[str, optax.GradientTransformation]
    abstract_state: TrainState
    state_shardings: Any

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def key(self, stream: int) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.config.seed), stream)

    def init(self) -> TrainState:
        """A fresh state, created directly in its shardings."""
        init = functools.partial(init_state, self.method, self.optimizers, tuple(self.config.ema.networks))
        with jax.threefry_partitionable(self.config.partitionable_rng):
            return jax.jit(init, out_shardings=self.state_shardings)(self.key(INIT_STREAM))

    def restore_target(self) -> TrainState:
        """``ShapeDtypeStruct``s with shardings, the target a checkpoint restores onto."""
        return jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            self.abstract_state,
            self.state_shardings,
        )

    def jit_train_step(self, batch_sharding: NamedSharding) -> Callable:
        """The jitted ``step(state, batches) -> (state, metrics)``, state donated and sharded."""
        step = make_train_step(self.method, self.optimizers, self.config.ema.decay, self.key(STEP_STREAM))
        return jax.jit(
            step,
            in_shardings=(self.state_shardings, batch_sharding),
            out_shardings=(self.state_shardings, self.replicated),
            donate_argnums=0,
        )

    def sampler(self, count: int) -> Callable[[TrainState, jax.Array], jax.Array]:
        """Jitted ``(state, key) -> [count, H, W, C]`` samples, from EMA weights where kept."""

        def sample(state: TrainState, key: jax.Array) -> jax.Array:
            params = {**state.params, **state.ema_params}
            nets = Nets(self.method.networks, params, state.state, train=False)
            return self.method.sample(nets, key, count)

        return jax.jit(sample, out_shardings=self.replicated)


def setup(config: ConfigDict, devices=None) -> Experiment:
    """Builds the mesh, imports ``config.model`` and lays out the train state (no arrays yet)."""
    mesh = make_mesh(config.mesh, devices)
    check_batch_size(config.batch_size, mesh)
    method = importlib.import_module(config.model).make_method(config)
    optimizers = {name: make_optimizer(cfg) for name, cfg in config.optimizers.items()}
    updated = {name for phase in method.phases for name in phase.updates}
    unknown = (set(optimizers) | set(config.ema.networks)) - set(method.networks)
    if unknown:
        raise ValueError(f"config names networks {sorted(unknown)}; {config.model} has {sorted(method.networks)}")
    if updated - set(optimizers):
        raise ValueError(f"config.optimizers lacks an entry for {sorted(updated - set(optimizers))}")
    init = functools.partial(init_state, method, optimizers, tuple(config.ema.networks))
    abstract = jax.eval_shape(init, jax.random.key(0))
    shardings = tree_shardings(abstract, mesh, [tuple(rule) for rule in config.sharding_rules])
    return Experiment(config, mesh, method, optimizers, abstract, shardings)
