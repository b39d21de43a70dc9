"""What a method hands the generic trainer: its networks and the phases of one training step.

A method module (named by ``config.model``) exposes ``make_method(config) -> Method``. The trainer
owns parameters, state and optimisers; a phase's loss sees the networks through :class:`Nets`,
which applies them purely and threads their non-parameter state.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

Pytree = Any
LossFn = Callable[["Nets", jax.Array | None, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One optimisation phase of a step, e.g. the discriminator's ``n_critic`` updates.

    Attributes:
      name: prefix of the phase's metrics, e.g. ``"d"``.
      updates: names of the networks whose parameters (and state) this phase updates.
      loss_fn: ``(nets, batch, key) -> (loss, metrics)``; ``batch`` is ``[B, H, W, C]`` real images
        in [0, 1], or ``None`` when ``uses_data`` is false.
      repeats: updates per step (``n_critic`` of thesis Algorithms 3-4), each on its own batch.
      uses_data: whether the phase consumes real images.
      clip_value: clamp the updated parameters to ``[-c, c]`` after each update (WGAN, Algorithm 3).
    """

    name: str
    updates: tuple[str, ...]
    loss_fn: LossFn
    repeats: int = 1
    uses_data: bool = True
    clip_value: float | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A trainable method.

    Attributes:
      networks: name -> Flax module; each ``__call__`` takes ``train: bool`` as keyword.
      init_args: name -> example positional arguments used to initialise that network.
      phases: run in order once per training step.
      sample: ``(nets, key, n) -> [n, H, W, C]`` images in [0, 1] for sample grids and evaluation.
    """

    networks: Mapping[str, nn.Module]
    init_args: Mapping[str, tuple]
    phases: tuple[Phase, ...]
    sample: Callable[["Nets", jax.Array, int], jax.Array]

    @property
    def data_batches_per_step(self) -> int:
        """Real batches one step consumes: one per repeat of each data-using phase."""
        return sum(p.repeats for p in self.phases if p.uses_data)


class Nets:
    """Applies a method's networks to explicit parameters and state, inside a trace.

    Calling ``nets(name, *args)`` runs network ``name`` in training or inference mode. In training
    mode the network's state collections (batch statistics, spectral-norm ``u``) are computed and
    kept only for networks in ``updates``: a phase never advances the state of a network it does
    not train (so spectral norm runs one power iteration per update of its own network, eq.
    2.59-2.61). ``keep_state=False`` discards the state of a single call, e.g. the WGAN-GP
    penalty's forward pass on interpolates.
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        params: Mapping[str, Pytree],
        state: Mapping[str, Pytree],
        train: bool,
        updates: tuple[str, ...] = (),
    ):
        self._modules = modules
        self._params = params
        self.state = dict(state)
        self._train = train
        self._updates = updates

    def __call__(self, name: str, *args, keep_state: bool = True, **kwargs):
        variables = {"params": self._params[name], **self.state[name]}
        mutable = list(self.state[name]) if self._train else False
        out = self._modules[name].apply(variables, *args, train=self._train, mutable=mutable, **kwargs)
        if mutable is False:
            return out
        out, new_state = out
        if keep_state and name in self._updates:
            self.state[name] = {**self.state[name], **new_state}
        return out
