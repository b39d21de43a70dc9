"""Evaluation of a trained run: FID (thesis eq. 2.69) and, with a classifier, IS (eq. 2.65)."""

import importlib
import math
import os
from pathlib import Path

import jax
import numpy as np
from ml_collections import ConfigDict
from tqdm import tqdm

from faceflax.metrics.fid import accumulate, finalize, frechet_distance
from faceflax.metrics.inception_score import inception_score
from faceflax.train.checkpoint import Checkpointer, write_json_atomically
from faceflax.train.experiment import SAMPLE_STREAM, setup
from faceflax.train.logging import image_grid, write_png
from faceflax.train.loop import make_batches


def load_feature_fn(name: str, weights: str = ""):
    """Resolves ``"module:function"`` (``images -> (features, logits | None)``); with ``weights``, the function
    is a factory called with that checkpoint path (e.g. ``inception_features``)."""
    module_name, _, function = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError):
        raise ValueError(f"config.eval.features {name!r} is not an importable module:function") from None
    if weights:
        return fn(weights)
    if function == "inception_features":
        raise ValueError(
            "config.eval.features inception_features needs config.eval.weights: the path of pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth (faceflax never downloads weights)"
        )
    return fn


def evaluate(config: ConfigDict, workdir: str | os.PathLike, devices=None, progress: bool = True) -> dict:
    """Scores the latest checkpoint in ``workdir`` and writes ``eval.json`` and ``eval_samples.png``.

    Generates ``config.eval.num_samples`` images (EMA weights where kept) and compares their
    features with as many real images of the training stream.

    Returns:
      ``{"step", "num_samples", "fid", and "inception_score"/"inception_score_std" when the
      feature function returns logits}``.
    """
    workdir = Path(workdir)
    with jax.threefry_partitionable(config.partitionable_rng):
        experiment = setup(config, devices)
        checkpoints = Checkpointer(workdir, config, config.keep_checkpoints)
        try:
            state = checkpoints.restore(experiment.restore_target())
        finally:
            checkpoints.close()
        batches = make_batches(experiment)
        features = jax.jit(load_feature_fn(config.eval.features, config.eval.weights))
        with jax.set_mesh(experiment.mesh):
            sampler = experiment.sampler(config.batch_size)
            rounds = math.ceil(config.eval.num_samples / config.batch_size)
            fake, real, logits = None, None, []
            for i in tqdm(range(rounds), desc="eval", disable=not progress):
                samples = sampler(state, jax.random.fold_in(experiment.key(SAMPLE_STREAM), i))
                fake_features, fake_logits = jax.device_get(features(samples))
                real_features, _ = jax.device_get(features(batches(i)[0]))
                fake, real = accumulate(fake, fake_features), accumulate(real, real_features)
                if fake_logits is not None:
                    logits.append(fake_logits)
    result = {
        "step": int(jax.device_get(state.step)),
        "num_samples": rounds * config.batch_size,
        "fid": frechet_distance(finalize(real), finalize(fake)),
        "features": config.eval.features,
    }
    if logits:
        mean, std = inception_score(np.concatenate(logits))
        result |= {"inception_score": mean, "inception_score_std": std}
    write_json_atomically(workdir / "eval.json", result)
    write_png(workdir / "eval_samples.png", image_grid(np.asarray(samples)))
    return result
