"""Every experiment config's runlocal variant trains two steps and writes a checkpoint."""

import math
import os

import numpy as np
import pytest

from faceflax.train.logging import read_metrics
from tests.celeba_layout import make_manual_dir

LFW_SPECS = [
    "lfw.py:vae,runlocal",
    "lfw.py:dcgan,runlocal",
    "lfw.py:wgan,runlocal",
    "lfw.py:wgan_gp,runlocal",
    "lfw.py:sngan,runlocal",
    "lfw.py:sagan,runlocal",
    "lfw.py:sngan,arch=resnet,runlocal",
]


def _check_run(state, workdir, image_size):
    assert int(state.step) == 2
    assert {"1", "2"} <= set(os.listdir(workdir / "checkpoints"))
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == [1, 2]
    assert all(math.isfinite(v) for r in records for v in r.values())
    assert (workdir / "samples" / "step_0000002.png").exists()


@pytest.mark.parametrize("spec", LFW_SPECS)
def test_lfw_runlocal_trains_and_checkpoints(trained_runlocal, spec):
    _check_run(*trained_runlocal(spec), 32)


def test_celeba_runlocal_trains_on_a_manual_download(trained_runlocal, tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    manual = make_manual_dir(root / "manual")
    state, workdir = trained_runlocal(
        "celeba.py:sngan,runlocal", f"data.manual_dir='{manual}'", f"data.data_dir='{root / 'tfds'}'"
    )
    _check_run(state, workdir, 64)
    assert np.asarray(state.params["discriminator"]["Conv_0"]["sn"]["kernel"]).shape[2] == 3
