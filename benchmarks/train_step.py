"""Training-step benchmark of the gan_zoo GANs: JAX (1 and 8 CPU devices) against PyTorch.

What is measured, for batch 64 of 32x32 LFW images (``experiments/gan_zoo/lfw.py``, full size):

  * ``sngan_cnn``    - SN-GAN, standard CNN, hinge loss, n_critic = 1
  * ``sngan_resnet`` - SN-GAN, ResNet, hinge loss, n_critic = 5
  * ``wgan_gp_cnn``  - WGAN-GP, standard CNN, lambda = 10, n_critic = 5

One *iteration* is one generator update including its ``n_critic`` discriminator updates, i.e.
one call of the trainer's own jitted step (``Experiment.jit_train_step``: same shardings and
donation), run as ``faceflax/train/loop.py`` runs it (same mesh and RNG mode). For each setting:

  * compile s: ``jit(...).lower(state, batch).compile()`` (trace + XLA compile), reported apart;
  * JAX s/iter: steady state: ``warmup`` untimed calls (each closed by ``block_until_ready``),
    then as many calls as fit a time budget judged by the last warm-up call (full: 2 warm-up,
    2-20 timed calls, ~30 s; ``--quick``: 1 warm-up, 1-5 timed calls, ~5 s), dispatched back to
    back and timed together up to ``jax.block_until_ready``. Batches are made beforehand (the
    trainer prefetches them), so data loading is not timed;
  * PyTorch s/iter: the same nets and step in plain PyTorch (``benchmarks/torch_reference.py``,
    ``torch.set_num_threads(2)``), same warm-up/timing protocol, measured in the same run. If
    PyTorch is not installed (or ``--skip-torch``), the issue's numbers measured on this machine
    earlier are used instead and labelled ``ref`` - they are NOT measured in this run;
  * ratio JAX/PyTorch and whether it meets the target (<= 0.5).

Every measurement runs in its own fresh subprocess of this script (hidden ``--worker`` mode
printing JSON), JAX with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. The 8-device
rows run the data-parallel sharded path on 8 *simulated* CPU devices sharing the machine's cores:
they show that the sharded program works and what it costs. They bring no extra hardware: any
difference to 1 device only reflects how XLA:CPU schedules 8 small programs on the same cores.
Timings on a shared machine are noisy; compare the ratios of one run, not absolute numbers across
runs. The script exits non-zero only when a measurement errors, never for a missed target.

Usage (from the repository root)::

  python benchmarks/train_step.py [--quick] [--settings sngan_cnn,wgan_gp_cnn] [--devices 1,8]
                                   [--skip-torch]

On the 2-core development machine ``--quick`` takes about 7 minutes for everything (the ResNet
alone needs ~25 s per PyTorch iteration); ``--quick --settings sngan_cnn --devices 1`` about one.
PyTorch (CPU) is a benchmark-only dependency: ``pip install torch``.
"""

import argparse
import dataclasses
import json
import math
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
    config_arg: str  # argument of experiments/gan_zoo/lfw.py
    n_critic: int
    reference_s: float  # PyTorch s/iter from the issue, measured on this machine earlier


SETTINGS = {
    s.name: s
    for s in (
        Setting("sngan_cnn", "sngan", 1, 1.9),
        Setting("sngan_resnet", "sngan,arch=resnet", 5, 24.0),
        Setting("wgan_gp_cnn", "wgan_gp", 5, 2.3),
    )
}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Warm-up and timing, the same for JAX and PyTorch.

    ``warmup`` untimed iterations run first; then as many timed iterations as fit ``budget_s``
    judging by the last warm-up iteration, but at least ``min_iters`` and at most ``max_iters``.
    """

    warmup: int
    min_iters: int
    max_iters: int
    budget_s: float

    def timed_iters(self, last_warmup_s: float) -> int:
        fit = int(self.budget_s / max(last_warmup_s, 1e-6))
        return max(self.min_iters, min(self.max_iters, fit))

    def args(self) -> list[str]:
        return ["--protocol", json.dumps(dataclasses.asdict(self))]


FULL = Protocol(warmup=2, min_iters=2, max_iters=20, budget_s=30.0)
QUICK = Protocol(warmup=1, min_iters=1, max_iters=5, budget_s=5.0)


def load_setting_config(setting: Setting):
    from faceflax.config import apply_overrides, load_config

    config = load_config(f"{CONFIG_FILE}:{setting.config_arg}")
    apply_overrides(config, [f"batch_size={BATCH_SIZE}"])
    if config.method.n_critic != setting.n_critic:
        raise RuntimeError(
            f"{setting.name}: config has n_critic={config.method.n_critic}, the benchmark expects {setting.n_critic}"
        )
    return config


# ----------------------------------------------------------------------------- workers


def jax_worker(setting: Setting, devices: int, protocol: Protocol) -> dict:
    """Compile time and steady-state s/iter of the library's jitted train step."""
    import jax

    from faceflax.train.experiment import setup
    from faceflax.train.loop import make_batches

    available = jax.devices()
    if len(available) < devices:
        raise RuntimeError(f"asked for {devices} devices, JAX sees {len(available)}")
    config = load_setting_config(setting)
    # As faceflax/train/loop.py: RNG mode around everything, the mesh around the steps.
    with jax.threefry_partitionable(config.partitionable_rng):
        experiment = setup(config, available[:devices])
        batches = make_batches(experiment)
        state = jax.block_until_ready(experiment.init())
        # A few distinct batches, made before timing (the trainer prefetches them in a thread).
        pool = [jax.block_until_ready(batches(i)) for i in range(4)]
        step = experiment.jit_train_step(batches.sharding)  # the trainer's own jitted step
        with jax.set_mesh(experiment.mesh):
            start = time.perf_counter()
            lowered = step.lower(state, pool[0])
            lower_s = time.perf_counter() - start
            compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            calls = 0
            for _ in range(max(protocol.warmup, 1)):
                start = time.perf_counter()
                state, metrics = compiled(state, pool[calls % len(pool)])
                jax.block_until_ready((state, metrics))
                last_warmup_s = time.perf_counter() - start
                calls += 1
            iters = protocol.timed_iters(last_warmup_s)
            start = time.perf_counter()
            for _ in range(iters):
                state, metrics = compiled(state, pool[calls % len(pool)])
                calls += 1
            jax.block_until_ready((state, metrics))
            total = time.perf_counter() - start
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        raise FloatingPointError(f"{setting.name}: non-finite metrics {bad}")
    return {
        "devices": experiment.mesh.devices.size,
        "lower_s": lower_s,
        "compile_s": compile_s,
        "s_per_iter": total / iters,
        "last_warmup_s": last_warmup_s,
        "warmup": max(protocol.warmup, 1),
        "iters": iters,
        "jax_version": jax.__version__,
    }


def torch_worker(setting: Setting, protocol: Protocol) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch_reference

    config = load_setting_config(setting)
    return torch_reference.measure(config, max(protocol.warmup, 1), protocol.timed_iters, threads=2)


# ----------------------------------------------------------------------------- driver


def _xla_flags(devices: int) -> str:
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    return f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()


def run_worker(kind: str, setting: Setting, devices: int, protocol: Protocol) -> dict:
    """Runs one measurement in a fresh subprocess; returns its JSON or ``{"error": ...}``."""
    env = dict(os.environ, XLA_FLAGS=_xla_flags(devices), JAX_PLATFORMS="cpu")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
               "--settings", setting.name, "--devices", str(devices), *protocol.args()]  # fmt: skip
    what = f"{setting.name}: " + ("PyTorch" if kind == "torch" else f"JAX on {devices} device(s)")
    print(f"  {what} ...", file=sys.stderr, end="", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        print(f" FAILED (exit {proc.returncode}):\n    " + "\n    ".join(tail), file=sys.stderr, flush=True)
        return {"error": f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    print(f" {result['s_per_iter']:.3f} s/iter over {result['iters']} iteration(s)"
          f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    return result


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    header = ["setting", "devices", "compile s", "JAX s/iter", "PyTorch s/iter", "JAX/PyTorch",
              "target <=0.5 met", "timed iters JAX/PT"]  # fmt: skip
    body = []
    for r in rows:
        if r["torch_error"]:
            torch_cell = "error"
        else:
            torch_cell = _fmt(r["torch_s"], ".3f") + (" (ref)" if r["torch_source"] == "reference" else "")
        ratio = None if r["jax_error"] or r["torch_s"] is None else r["jax_s"] / r["torch_s"]
        met = "-" if ratio is None else ("yes" if ratio <= TARGET_RATIO else "no")
        jax_cell = "error" if r["jax_error"] else _fmt(r["jax_s"], ".3f")
        compile_cell = "error" if r["jax_error"] else _fmt(r["compile_s"], ".1f")
        iters = f"{_fmt(r['jax_iters'], 'd')}/{_fmt(r['torch_iters'], 'd')}"
        body.append([r["setting"], str(r["devices"]), compile_cell, jax_cell, torch_cell,
                     _fmt(ratio, ".2f"), met, iters])  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in body)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 warm-up, about 5 s of timed iterations")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {list(SETTINGS)}")
    parser.add_argument("--devices", default="1,8", help="comma list of simulated CPU device counts")
    parser.add_argument("--skip-torch", action="store_true", help="use the issue's reference numbers")
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    try:
        device_counts = [int(d) for d in args.devices.split(",") if d.strip()]
    except ValueError:
        parser.error(f"--devices takes a comma list of integers, got {args.devices!r}")
    if not device_counts or any(d < 1 or BATCH_SIZE % d for d in device_counts):
        parser.error(f"--devices: each count must divide the batch size {BATCH_SIZE}")
    protocol = Protocol(**json.loads(args.protocol)) if args.protocol else (QUICK if args.quick else FULL)

    if args.worker:
        setting = SETTINGS[names[0]]
        if args.worker == "jax":
            result = jax_worker(setting, device_counts[0], protocol)
        else:
            result = torch_worker(setting, protocol)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    use_torch = not args.skip_torch and _torch_available()
    if not use_torch:
        why = "--skip-torch given" if args.skip_torch else "PyTorch is not installed"
        print(f"NOTE: {why}: the PyTorch column holds the issue's reference numbers (marked 'ref'), "
              "NOT measured in this run.", file=sys.stderr)  # fmt: skip
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows, errors = [], 0
    for name in names:
        setting = SETTINGS[name]
        torch_s, torch_iters, torch_error, source = setting.reference_s, None, False, "reference"
        if use_torch:
            measured = run_worker("torch", setting, 1, protocol)
            torch_error = "error" in measured
            errors += torch_error
            torch_s, torch_iters, source = measured.get("s_per_iter"), measured.get("iters"), "measured"
        for devices in device_counts:
            result = run_worker("jax", setting, devices, protocol)
            errors += "error" in result
            rows.append(
                dict(
                    setting=name,
                    devices=devices,
                    compile_s=result.get("compile_s"),
                    jax_s=result.get("s_per_iter"),
                    jax_iters=result.get("iters"),
                    jax_error="error" in result,
                    torch_s=torch_s,
                    torch_iters=torch_iters,
                    torch_source=source,
                    torch_error=torch_error,
                )  # fmt: skip
            )

    print()
    mode = "quick" if args.quick else "full"
    print(f"gan_zoo train step: batch {BATCH_SIZE}, 32x32; 1 iter = 1 generator update incl. its "
          f"n_critic discriminator updates ({mode} run, {time.perf_counter() - started:.0f} s)")  # fmt: skip
    print(format_table(rows))
    print()
    if use_torch:
        print("PyTorch: measured in this run (benchmarks/torch_reference.py, same nets, 2 threads, "
              "same warm-up/timing protocol).")  # fmt: skip
    else:
        print("PyTorch (ref): reference numbers from the issue (1.9 s, 24 s, 2.3 s), NOT measured in "
              "this run.")  # fmt: skip
    if any(d > 1 for d in device_counts):
        print("devices > 1: simulated CPU devices sharing the same cores: they exercise the sharded "
              "path, they add no hardware (a difference to 1 device is XLA:CPU scheduling).")  # fmt: skip
    print("compile s (trace + XLA compile) is not part of s/iter.")
    load_after = os.getloadavg()[0]
    print(f"1-min load average: {load_before:.1f} at start, {load_after:.1f} at end on {os.cpu_count()} "
          "CPU(s); other processes competing for the cores make timings slower and noisier.")  # fmt: skip
    if errors:
        print(f"{errors} measurement(s) failed; see the messages above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
