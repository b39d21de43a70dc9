"""Test set-up: 8 simulated CPU devices (set here, before JAX starts, not by the caller)."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same runlocal steps; XLA's persistent cache keys on the program, so it
# shares those compiles across tests and subprocesses.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "xla"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax
import pytest

from faceflax.config import apply_overrides, load_config


@pytest.fixture(scope="session", autouse=True)
def eight_devices():
    assert jax.device_count() == 8, "tests expect 8 simulated CPU devices"


@pytest.fixture
def make_config():
    """``make_config("lfw.py:sngan,runlocal", "total_steps=3")`` -> a locked gan_zoo config."""

    def make(spec: str, *overrides: str):
        config = load_config(f"experiments/gan_zoo/{spec}")
        apply_overrides(config, list(overrides))
        return config

    return make


@pytest.fixture(scope="session")
def trained_runlocal(tmp_path_factory):
    """``trained_runlocal(spec) -> (final state, workdir)``: 2 steps, a checkpoint after each.

    Cached per spec, so the config smoke tests and the step-semantics tests share one run.
    """
    from faceflax.train.loop import train

    runs = {}

    def run(spec: str, *overrides: str):
        key = (spec, overrides)
        if key not in runs:
            workdir = tmp_path_factory.mktemp("run")
            config = load_config(f"experiments/gan_zoo/{spec}")
            apply_overrides(config, ["total_steps=2", "checkpoint_every=1", *overrides])
            runs[key] = (train(config, workdir, progress=False), workdir)
        return runs[key]

    return run


@pytest.fixture(scope="session")
def asset_mirror():
    """The offline asset mirror named by ``$FACEFLAX_ASSETS``; tests that need it skip without it."""
    from pathlib import Path

    root = os.environ.get("FACEFLAX_ASSETS")
    if not root or not Path(root).is_dir():
        pytest.skip("FACEFLAX_ASSETS is not set to an asset mirror (e.g. ../shared/assets)")
    return Path(root)


@pytest.fixture(scope="session")
def ict_face(asset_mirror):
    """The ICT-FaceKit face-region morphable model, loaded once per session."""
    from faceflax.geometry.morphable import from_ict

    return from_ict(asset_mirror / "ict-facekit")


@pytest.fixture(scope="session")
def mediapipe_face(asset_mirror):
    """The MediaPipe canonical face as a mean-only model with iBUG-68 landmarks."""
    from faceflax.geometry.morphable import MEDIAPIPE_IBUG68, from_obj

    return from_obj(
        asset_mirror / "mediapipe" / "canonical_face_model.obj",
        "mediapipe",
        MEDIAPIPE_IBUG68,
    )
