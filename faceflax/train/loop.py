"""The training loop: sharded jitted steps, resume, checkpoints, progress, metrics, sample grids."""

import concurrent.futures
import math
import os
from pathlib import Path

import jax
import numpy as np
from ml_collections import ConfigDict
from tqdm import tqdm

from faceflax.data.loader import GlobalBatches
from faceflax.data.sources import make_source
from faceflax.train.checkpoint import Checkpointer, write_json_atomically
from faceflax.train.experiment import SAMPLE_STREAM, Experiment, setup
from faceflax.train.logging import MetricsLog, image_grid, write_png
from faceflax.train.sharding import batch_sharding
from faceflax.train.state import TrainState


def make_batches(experiment: Experiment) -> GlobalBatches:
    """The run's deterministic global batch stream."""
    config = experiment.config
    source = make_source(config.data)
    batches = GlobalBatches(
        source,
        config.batch_size,
        experiment.method.data_batches_per_step,
        config.seed,
        batch_sharding(experiment.mesh, leading_dims=1),
    )
    size = config.data.image_size
    if batches.example_shape[:2] != (size, size):
        raise ValueError(f"dataset images are {batches.example_shape}, config.data.image_size is {size}")
    return batches


def _save_samples(experiment: Experiment, sampler, state: TrainState, workdir: Path) -> None:
    images = np.asarray(sampler(state, experiment.key(SAMPLE_STREAM)))  # every host computes
    if _is_chief():
        step = int(jax.device_get(state.step))
        write_png(workdir / "samples" / f"step_{step:07d}.png", image_grid(images))


def _is_chief() -> bool:
    """On a multi-host pod every host runs the loop; one writes the shared files."""
    return jax.process_index() == 0


def _check_finite(metrics: dict[str, float], step: int, checkpoints: Checkpointer) -> None:
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise FloatingPointError(
            f"{', '.join(bad)} became non-finite at step {step}; the last good checkpoint is step "
            f"{checkpoints.latest_step()}: lower the learning rate or check the data, then resume"
        )


def train(config: ConfigDict, workdir: str | os.PathLike, devices=None, progress: bool = True):
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Args:
      config: a locked experiment config (see ``experiments/``).
      workdir: output folder: ``checkpoints/``, ``config.json``, ``metrics.jsonl``, ``samples/``.
      devices: devices of the mesh (default: all).
      progress: show a progress bar.

    Returns:
      The final :class:`TrainState`.
    """
    with jax.threefry_partitionable(config.partitionable_rng):
        return _train(config, Path(workdir), devices, progress)


def _train(config: ConfigDict, workdir: Path, devices, progress: bool):
    (workdir / "samples").mkdir(parents=True, exist_ok=True)
    experiment = setup(config, devices)
    batches = make_batches(experiment)
    if _is_chief():
        write_json_atomically(workdir / "config.json", config.to_dict())
    checkpoints = Checkpointer(workdir, config, config.keep_checkpoints)
    if checkpoints.latest_step() is None:
        state = experiment.init()
    else:
        state = checkpoints.restore(experiment.restore_target())
    start = int(jax.device_get(state.step))
    log = MetricsLog(workdir, start) if _is_chief() else None
    step_fn = experiment.jit_train_step(batches.sharding)
    sampler = experiment.sampler(config.num_samples)
    bar = tqdm(
        total=config.total_steps,
        initial=start,
        disable=not (progress and _is_chief()),
        desc="train",
        unit="step",
    )
    try:
        with jax.set_mesh(experiment.mesh), concurrent.futures.ThreadPoolExecutor(1) as prefetch:
            upcoming = prefetch.submit(batches, start)
            for step in range(start, config.total_steps):
                batch = upcoming.result()
                upcoming = prefetch.submit(batches, step + 1)
                state, metrics = step_fn(state, batch)
                done = step + 1
                if done % config.log_every == 0 or done == config.total_steps:
                    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    _check_finite(values, done, checkpoints)
                    if log:
                        log.write(done, values)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
                if done % config.sample_every == 0 or done == config.total_steps:
                    _save_samples(experiment, sampler, state, workdir)
                if done % config.checkpoint_every == 0 or done == config.total_steps:
                    checkpoints.save(state)
                bar.update(1)
    except KeyboardInterrupt:
        checkpoints.save(state)
        tqdm.write(f"interrupted: saved step {int(jax.device_get(state.step))} in {workdir}")
        raise
    finally:
        bar.close()
        checkpoints.close()
    return state
