"""Atomic, keep-N orbax checkpoints of the train state with the config saved beside them.

Orbax writes each step into a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact and the next run resumes from it.
"""

import json
import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from faceflax.train.state import TrainState


def write_json_atomically(path: Path, payload: dict) -> None:
    """Writes ``payload`` as JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


class Checkpointer:
    """Saves and restores :class:`TrainState` under ``workdir/checkpoints``."""

    def __init__(self, workdir: str | os.PathLike, config: ConfigDict, keep: int):
        self._config = config.to_dict()
        self._manager = ocp.CheckpointManager(
            Path(workdir).absolute() / "checkpoints",
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_step()

    def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState:
        """Restores ``step`` (default: latest) onto the shapes and shardings of ``abstract_state``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no checkpoint in {self._manager.directory}; train first")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        return self._manager.restore(step, args=args).state

    def save(self, state: TrainState) -> None:
        """Saves ``state`` at its step unless already saved (asynchronously; :meth:`close` waits)."""
        step = int(jax.device_get(state.step))
        if step == self.latest_step():
            return
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self._config))
        self._manager.save(step, args=args)

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
