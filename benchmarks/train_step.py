"""Training-step benchmark of the gan_zoo GANs: JAX (1 and 8 CPU devices) against PyTorch.

What is measured, for batch 64 of 32x32 LFW images (``experiments/gan_zoo/lfw.py``, full size):

  * ``sngan_cnn``    - SN-GAN, standard CNN, hinge loss, n_critic = 1
  * ``sngan_resnet`` - SN-GAN, ResNet, hinge loss, n_critic = 5
  * ``wgan_gp_cnn``  - WGAN-GP, standard CNN, lambda = 10, n_critic = 5

One *iteration* is one generator update including its ``n_critic`` discriminator updates, i.e.
one call of the jitted ``faceflax.train.step.make_train_step`` step, set up exactly as
``faceflax/train/loop.py`` does (same shardings, donation, mesh and RNG mode). For each setting:

  * compile s: ``jit(...).lower(state, batch).compile()`` (trace + XLA compile), reported apart;
  * JAX s/iter: steady state: ``warmup`` untimed calls, then ``iters`` calls timed together
    and closed by ``jax.block_until_ready`` (batches are made beforehand; loading is not timed);
  * PyTorch s/iter: the same nets and step in plain PyTorch (``benchmarks/torch_reference.py``,
    ``torch.set_num_threads(2)``), same warm-up/timing protocol, measured in the same run. If
    PyTorch is not installed (or ``--skip-torch``), the issue's numbers measured on this machine
    earlier are used instead and labelled ``ref`` - they are NOT measured in this run;
  * ratio JAX/PyTorch and whether it meets the target (<= 0.5).

Every measurement runs in its own fresh subprocess of this script (hidden ``--worker`` mode
printing JSON), JAX with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. The 8-device
rows run the data-parallel sharded path on 8 *simulated* CPU devices sharing the machine's cores:
they show that the sharded program works and what it costs, and are not expected to be faster.
Timings on a shared machine are noisy; compare the ratios of one run, not absolute numbers across
runs. The script exits non-zero only when a measurement errors, never for a missed target.

Usage (from the repository root)::

  python benchmarks/train_step.py [--quick] [--settings sngan_cnn,wgan_gp_cnn] [--devices 1,8]
                                   [--skip-torch]
"""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = ROOT / "experiments" / "gan_zoo" / "lfw.py"
RESULT_PREFIX = "BENCH_RESULT "
TARGET_RATIO = 0.5
BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    label: str
    config_arg: str
    n_critic: int
    reference_s: float  # PyTorch s/iter from the issue, measured on this machine earlier
    warmup: int
    iters: int
    quick_iters: int
    torch_iters: int
    torch_quick_iters: int


SETTINGS = {
    s.name: s
    for s in (
        Setting("sngan_cnn", "SN-GAN CNN", "sngan", 1, 1.9, 2, 10, 3, 5, 2),
        Setting("sngan_resnet", "SN-GAN ResNet", "sngan,arch=resnet", 5, 24.0, 1, 3, 1, 2, 1),
        Setting("wgan_gp_cnn", "WGAN-GP CNN", "wgan_gp", 5, 2.3, 2, 5, 2, 3, 1),
    )
}


def load_setting_config(setting: Setting):
    from faceflax.config import apply_overrides, load_config

    config = load_config(f"{CONFIG_FILE}:{setting.config_arg}")
    apply_overrides(config, [f"batch_size={BATCH_SIZE}"])
    if config.method.n_critic != setting.n_critic:
        raise RuntimeError(
            f"{setting.name}: config has n_critic={config.method.n_critic}, the benchmark expects "
            f"{setting.n_critic}"
        )
    return config


# ----------------------------------------------------------------------------- workers


def jax_worker(setting: Setting, devices: int, warmup: int, iters: int) -> dict:
    """Compile time and steady-state s/iter of the library's jitted train step."""
    import jax

    from faceflax.train.experiment import STEP_STREAM, setup
    from faceflax.train.loop import make_batches
    from faceflax.train.step import make_train_step

    available = jax.devices()
    if len(available) < devices:
        raise RuntimeError(f"asked for {devices} devices, JAX sees {len(available)}")
    config = load_setting_config(setting)
    with jax.threefry_partitionable(config.partitionable_rng):
        experiment = setup(config, available[:devices])
        batches = make_batches(experiment)
        state = jax.block_until_ready(experiment.init())
        # Distinct batches, made before timing (the trainer prefetches them in a thread).
        data = [jax.block_until_ready(batches(i)) for i in range(warmup + iters)]
        step = jax.jit(
            make_train_step(
                experiment.method, experiment.optimizers, config.ema.decay, experiment.key(STEP_STREAM)
            ),
            in_shardings=(experiment.state_shardings, batches.sharding),
            out_shardings=(experiment.state_shardings, experiment.replicated),
            donate_argnums=0,
        )
        with jax.set_mesh(experiment.mesh):
            start = time.perf_counter()
            lowered = step.lower(state, data[0])
            lower_s = time.perf_counter() - start
            compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            for batch in data[:warmup]:
                state, metrics = compiled(state, batch)
            jax.block_until_ready((state, metrics))
            start = time.perf_counter()
            for batch in data[warmup:]:
                state, metrics = compiled(state, batch)
            jax.block_until_ready((state, metrics))
            total = time.perf_counter() - start
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = sorted(k for k, v in values.items() if v != v or v in (float("inf"), float("-inf")))
    if bad:
        raise FloatingPointError(f"{setting.name}: non-finite metrics {bad}")
    return {
        "devices": len(experiment.mesh.devices.flat),
        "lower_s": lower_s,
        "compile_s": compile_s,
        "s_per_iter": total / iters,
        "warmup": warmup,
        "iters": iters,
        "jax_version": jax.__version__,
    }


def torch_worker(setting: Setting, warmup: int, iters: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch_reference

    config = load_setting_config(setting)
    return torch_reference.measure(config, warmup, iters, threads=2)


# ----------------------------------------------------------------------------- driver


def _xla_flags(devices: int) -> str:
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    return f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()


def run_worker(kind: str, setting: Setting, devices: int, warmup: int, iters: int) -> dict:
    """Runs one measurement in a fresh subprocess; returns its JSON or ``{"error": ...}``."""
    env = dict(os.environ, XLA_FLAGS=_xla_flags(devices), JAX_PLATFORMS="cpu")
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--settings",
        setting.name,
        "--devices",
        str(devices),
        "--warmup",
        str(warmup),
        "--iters",
        str(iters),
    ]
    what = f"{setting.name} {kind}" + (f" on {devices} device(s)" if kind == "jax" else "")
    print(f"  measuring {what} (warm-up {warmup}, timed {iters}) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        print(f"  {what} FAILED (exit {proc.returncode}):\n{tail}", file=sys.stderr, flush=True)
        return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else 'no output'}"}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    print(f"    done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    header = ["setting", "devices", "compile s", "JAX s/iter", "PyTorch s/iter", "JAX/PyTorch", "target <=0.5 met"]
    body = []
    for r in rows:
        torch_cell = "error" if r["torch_error"] else _fmt(r["torch_s"])
        if r["torch_source"] == "reference" and r["torch_s"] is not None:
            torch_cell += " (ref)"
        if r["jax_error"]:
            body.append([r["setting"], str(r["devices"]), "error", "error", torch_cell, "-", "-"])
            continue
        ratio = None if r["torch_s"] is None else r["jax_s"] / r["torch_s"]
        met = "-" if ratio is None else ("yes" if ratio <= TARGET_RATIO else "no")
        body.append(
            [r["setting"], str(r["devices"]), _fmt(r["compile_s"], ".1f"), _fmt(r["jax_s"], ".3f"),
             torch_cell, _fmt(ratio, ".2f"), met]
        )
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print(line(row))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed iterations")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {list(SETTINGS)}")
    parser.add_argument("--devices", default="1,8", help="comma list of simulated CPU device counts")
    parser.add_argument("--skip-torch", action="store_true", help="use the issue's reference numbers")
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    device_counts = [int(d) for d in args.devices.split(",") if d.strip()]
    if any(d < 1 or BATCH_SIZE % d for d in device_counts):
        parser.error(f"--devices must divide the batch size {BATCH_SIZE}")

    if args.worker:
        setting = SETTINGS[names[0]]
        if args.worker == "jax":
            result = jax_worker(setting, device_counts[0], args.warmup, args.iters)
        else:
            result = torch_worker(setting, args.warmup, args.iters)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    use_torch = not args.skip_torch and _torch_available()
    if not use_torch:
        why = "--skip-torch given" if args.skip_torch else "PyTorch is not installed"
        print(f"NOTE: {why}: the PyTorch column holds the issue's reference numbers (marked 'ref'),"
              " NOT measured in this run.", file=sys.stderr)
    rows, errors = [], 0
    for name in names:
        setting = SETTINGS[name]
        iters = setting.quick_iters if args.quick else setting.iters
        torch_error = False
        if use_torch:
            torch_iters = setting.torch_quick_iters if args.quick else setting.torch_iters
            measured = run_worker("torch", setting, 1, 1 if args.quick else setting.warmup, torch_iters)
            torch_error = "error" in measured
            errors += torch_error
            torch_s, source = measured.get("s_per_iter"), "measured"
        else:
            torch_s, source = setting.reference_s, "reference"
        for devices in device_counts:
            result = run_worker("jax", setting, devices, 1 if args.quick else setting.warmup, iters)
            errors += "error" in result
            rows.append(
                dict(
                    setting=name,
                    devices=devices,
                    compile_s=result.get("compile_s"),
                    jax_s=result.get("s_per_iter"),
                    jax_error="error" in result,
                    torch_s=torch_s,
                    torch_source=source,
                    torch_error=torch_error,
                )
            )

    print()
    print(f"gan_zoo train step, batch {BATCH_SIZE}, 32x32, s/iter = one G update incl. its n_critic D "
          f"updates ({'quick' if args.quick else 'full'} run)")
    print_table(rows)
    print()
    if use_torch:
        print("PyTorch: measured in this run (benchmarks/torch_reference.py, 2 threads, same nets).")
    else:
        print("PyTorch (ref): reference from the issue (1.9 s, 24 s, 2.3 s), not measured in this run.")
    if any(d > 1 for d in device_counts):
        print("Rows with devices > 1 use simulated CPU devices sharing the same cores: they exercise the "
              "sharded path and are not expected to be faster.")
    print("Compile time (trace + XLA compile) is not part of s/iter.")
    if errors:
        print(f"{errors} measurement(s) failed; see the messages above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
