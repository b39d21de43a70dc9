import json
import subprocess
import sys

import pytest

from faceflax import cli


def _run(*args):
    return subprocess.run([sys.executable, "-m", "faceflax.cli", *args], capture_output=True, text=True)


def test_help_lists_methods_and_configs():
    result = _run("--help")
    assert result.returncode == 0
    assert "experiments/gan_zoo/lfw.py" in result.stdout and "experiments/gan_zoo/celeba.py" in result.stdout
    assert "common.py" not in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "experiments/gan_zoo/missing.py"], "config file 'experiments/gan_zoo/missing.py' not found"),
        (["--config", "experiments/gan_zoo/lfw.py:nogan"], "unknown gan_zoo variant 'nogan'"),
        (["--config", "experiments/gan_zoo/lfw.py:sngan,colour=1"], "unknown key 'colour'"),
        (["--config", "experiments/gan_zoo/lfw.py", "--set", "method.lossy=1"], "unknown config key 'method.lossy'"),
        (["--config", "experiments/gan_zoo/lfw.py", "--set", "batch_size"], "must look like key=value"),
        (
            ["--config", "experiments/gan_zoo/lfw.py", "--set", "batch_size=big"],
            "bad value for config key 'batch_size'",
        ),
        (
            ["--config", "experiments/gan_zoo/lfw.py:runlocal", "--set", "batch_size=12"],
            "not divisible by the 8 data shards",
        ),
    ],
)
def test_bad_input_is_one_clear_message(tmp_path, args, message):
    result = _run("train", "--workdir", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_arguments_are_usage_errors():
    result = _run("train", "--config", "experiments/gan_zoo/lfw.py")
    assert result.returncode == 2 and "--workdir" in result.stderr and "Traceback" not in result.stderr


def test_eval_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["eval", "--config", "experiments/gan_zoo/lfw.py:sngan,runlocal", "--workdir", str(tmp_path)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_train_then_eval(tmp_path, capsys):
    spec = "experiments/gan_zoo/lfw.py:vae,runlocal"
    assert cli.main(["train", "--config", spec, "--workdir", str(tmp_path), "--no-progress"]) == 0
    assert cli.main(["eval", "--config", spec, "--workdir", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["step"] == 4 and result["num_samples"] == 32 and result["fid"] > 0
    assert (tmp_path / "eval_samples.png").exists()
    assert "fid=" in capsys.readouterr().out


def test_diverging_run_stops_with_a_clear_message(tmp_path):
    result = _run(
        "train", "--config", "experiments/gan_zoo/lfw.py:wgan,runlocal", "--workdir", str(tmp_path),
        "--no-progress", "--set", "optimizers.generator.learning_rate=1e30",
        "--set", "optimizers.discriminator.learning_rate=1e30", "--set", "method.clip_value=0.0",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "became non-finite at step" in result.stderr and "lower the learning rate" in result.stderr
