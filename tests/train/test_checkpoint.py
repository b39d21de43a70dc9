import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from faceflax.train.checkpoint import Checkpointer
from faceflax.train.experiment import setup
from faceflax.train.logging import read_metrics
from faceflax.train.loop import train

SPEC = "lfw.py:sngan,runlocal"


def _assert_same_state(a, b):
    assert int(a.step) == int(b.step)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_checkpoint_round_trip_and_saved_config(tmp_path, make_config):
    config = make_config(SPEC, "total_steps=2")
    state = train(config, tmp_path, progress=False)
    checkpoints = Checkpointer(tmp_path, config, keep=3)
    restored = checkpoints.restore(setup(config).restore_target())
    checkpoints.close()
    _assert_same_state(state, restored)
    assert (tmp_path / "config.json").exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]


def test_restore_without_checkpoint_is_a_clear_error(tmp_path, make_config):
    config = make_config(SPEC)
    checkpoints = Checkpointer(tmp_path, config, keep=1)
    with pytest.raises(ValueError, match="no checkpoint in .*train first"):
        checkpoints.restore(setup(config).restore_target())
    checkpoints.close()


def test_keep_n_checkpoints(tmp_path, make_config):
    train(make_config(SPEC, "total_steps=8", "checkpoint_every=2", "keep_checkpoints=2"), tmp_path, progress=False)
    assert sorted(os.listdir(tmp_path / "checkpoints"), key=int) == ["6", "8"]


def _latest_complete(workdir):
    folder = workdir / "checkpoints"
    done = [int(d) for d in os.listdir(folder) if d.isdigit() and (folder / d / "commit_success.txt").exists()]
    return max(done, default=0)


def test_killed_run_resumes_with_identical_state(tmp_path, make_config):
    """SIGKILL a CLI run mid-training; the resumed run ends exactly where an unkilled one does."""
    killed = tmp_path / "killed"
    command = [
        sys.executable, "-m", "faceflax.cli", "train", "--config", f"experiments/gan_zoo/{SPEC}",
        "--workdir", str(killed), "--no-progress",
        "--set", "total_steps=100000", "--set", "checkpoint_every=3", "--set", "sample_every=1000000",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (killed / "checkpoints").exists() and _latest_complete(killed) >= 6:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()

    resume_from = _latest_complete(killed)
    total = resume_from + 3
    overrides = (f"total_steps={total}", "checkpoint_every=3", "sample_every=1000000", "log_every=1")
    resumed = train(make_config(SPEC, *overrides), killed, progress=False)
    reference = train(make_config(SPEC, *overrides), tmp_path / "reference", progress=False)
    _assert_same_state(resumed, reference)
    steps = [r["step"] for r in read_metrics(killed)]
    assert steps == sorted(set(steps)) and steps[-1] == total  # no step logged twice
