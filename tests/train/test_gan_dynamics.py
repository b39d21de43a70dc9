"""SN-GAN on the embedded LFW faces behaves as a GAN should over 200 steps."""

import jax
import numpy as np
import pytest

from faceflax.data.sources import lfw_faces
from faceflax.metrics.features import pixel_features
from faceflax.metrics.fid import fid_from_features
from faceflax.train.experiment import SAMPLE_STREAM, setup
from faceflax.train.logging import read_metrics
from faceflax.train.loop import train


@pytest.mark.slow
def test_sngan_learns_the_embedded_faces(tmp_path, make_config):
    config = make_config(
        "lfw.py:sngan,runlocal",
        "total_steps=200",
        "batch_size=32",
        "num_samples=100",
        "sample_every=1000",
        "checkpoint_every=1000",
        "ema.decay=0.9",  # 0.999 would still be mostly the initial weights after 200 steps
    )
    devices = jax.devices()[:1]
    experiment = setup(config, devices)
    sample = experiment.sampler(config.num_samples)
    key = experiment.key(SAMPLE_STREAM)
    before = np.asarray(sample(experiment.init(), key))
    state = train(config, tmp_path, devices=devices, progress=False)
    after = np.asarray(sample(state, key))

    d_loss = np.array([r["d_loss"] for r in read_metrics(tmp_path)])
    # Hinge D loss starts at ~2 (logits ~0); it must learn (drop) without collapsing to 0.
    assert d_loss[:5].mean() > 1.8
    assert 0.2 < d_loss[-50:].mean() < 1.8
    assert np.abs(after - before).mean() > 0.05  # samples change
    real = pixel_features(lfw_faces(32))[0]
    fid_before = fid_from_features(real, pixel_features(before)[0])
    fid_after = fid_from_features(real, pixel_features(after)[0])
    assert fid_after < 0.5 * fid_before  # and move towards the faces
