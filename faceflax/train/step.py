"""The generic GAN training step: a method's phases applied in order, each ``repeats`` times."""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from faceflax.methods.base import Method, Nets, Phase
from faceflax.train.state import Pytree, TrainState


def _phase_update(method: Method, optimizers: Mapping[str, optax.GradientTransformation], phase: Phase) -> Callable:
    """One update of ``phase.updates``: ``(carry, batch, key) -> (carry, metrics)``."""

    def update(carry, batch, key):
        params, net_state, opt_state = carry

        def loss(trainable):
            nets = Nets(method.networks, {**params, **trainable}, net_state, True, phase.updates)
            value, metrics = phase.loss_fn(nets, batch, key)
            return value, (metrics, nets.state)

        trainable = {name: params[name] for name in phase.updates}
        (value, (metrics, net_state)), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        params, opt_state = dict(params), dict(opt_state)
        for name in phase.updates:
            updates, opt_state[name] = optimizers[name].update(grads[name], opt_state[name], params[name])
            params[name] = optax.apply_updates(params[name], updates)
            if phase.clip_value is not None:  # WGAN weight clipping, thesis Algorithm 3
                params[name] = jax.tree.map(lambda p: jnp.clip(p, -phase.clip_value, phase.clip_value), params[name])
        return (params, net_state, opt_state), {"loss": value, **metrics}

    return update


def make_train_step(
    method: Method,
    optimizers: Mapping[str, optax.GradientTransformation],
    ema_decay: float,
    seed_key: jax.Array,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds ``step(state, batches) -> (state, metrics)`` (pure; jit it with shardings).

    ``batches`` is ``[method.data_batches_per_step, B, H, W, C]``: data-using phases take their
    ``repeats`` batches in order. The step's key is ``fold_in(seed_key, step)`` and each phase
    folds in its index, so no key is ever stored. Metrics are averaged over a phase's repeats and
    prefixed with its name.
    """

    def step(state: TrainState, batches: jax.Array):
        key = jax.random.fold_in(seed_key, state.step)
        carry = (dict(state.params), dict(state.state), dict(state.opt_state))
        metrics, offset = {}, 0
        for index, phase in enumerate(method.phases):
            keys = jax.random.split(jax.random.fold_in(key, index), phase.repeats)
            update = _phase_update(method, optimizers, phase)
            # A Python loop, not lax.scan: XLA:CPU runs loop bodies several times slower than
            # straight-line code (measured 6x on one SN-GAN step), for a little more compile time.
            repeat_metrics = []
            for repeat in range(phase.repeats):
                batch = batches[offset + repeat] if phase.uses_data else None
                carry, step_metrics = update(carry, batch, keys[repeat])
                repeat_metrics.append(step_metrics)
            offset += phase.repeats if phase.uses_data else 0
            averaged = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *repeat_metrics)
            metrics.update({f"{phase.name}_{name}": value for name, value in averaged.items()})
        params, net_state, opt_state = carry
        ema = {name: _ema(ema_params, params[name], ema_decay) for name, ema_params in state.ema_params.items()}
        new_state = state.replace(
            step=state.step + 1, params=params, state=net_state, opt_state=opt_state, ema_params=ema
        )
        return new_state, metrics

    return step


def _ema(average: Pytree, params: Pytree, decay: float) -> Pytree:
    return jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, average, params)
