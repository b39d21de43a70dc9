"""``faceflax reconstruct`` benchmark: wall time per stage and per photo, cold and warm.

Three measurements, each in a fresh Python process so that nothing of one leaks into the next:

  * cold:   an empty XLA compile cache; the first photo pays tracing and compiling of every stage;
  * cached: a second process with the cache the first one wrote (JAX's persistent compilation cache,
    as ``faceflax reconstruct`` enables it): the first photo pays tracing and cache loads only;
  * warm:   later photos in the same process (the median of ``--repeats`` alternating runs on the two
    embedded photos, the astronaut and Grace Hopper); the target is a warm total <= 1 s per photo.

Stages are those of the report's ``timings_s`` (read, detect, fit, sample, complete, render, identity)
plus ``write`` (every output file) and ``setup`` (model loading and ``Reconstructor``, once per process).
For scale, the seeds quote 3.7 s per texture for MvInvert on a GPU, 30 s for GANFit and about 5 minutes
for OSTeC. Needs the ICT-FaceKit asset (``FACEFLAX_ASSETS`` or the user cache). Exit code 0 unless a
measurement fails.

Usage (from the repository root)::

  FACEFLAX_ASSETS=../shared/assets python benchmarks/reconstruct.py [--repeats 6]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WARM_S = 1.0
RESULT_PREFIX = "BENCH_RESULT "
STAGES = ("read", "detect", "fit", "sample", "complete", "render", "identity", "write")


def worker(repeats: int) -> dict:
    """Runs in the child process: setup, then ``repeats + 1`` photos, each timed per stage."""
    from faceflax.geometry.morphable import load_model
    from faceflax.reconstruct.pipeline import Reconstructor, enable_compilation_cache
    from faceflax.reconstruct.run import PhotoInput, write_reconstruction

    enable_compilation_cache()
    start = time.perf_counter()
    reconstructor = Reconstructor(load_model("ict"))
    setup = time.perf_counter() - start
    runs = []
    with tempfile.TemporaryDirectory() as out:
        for k in range(repeats + 1):
            photo = PhotoInput(("astronaut", "grace_hopper")[k % 2], None)
            start = time.perf_counter()
            image = photo.read()
            read = time.perf_counter() - start
            rec = reconstructor(image, photo.label)
            start = time.perf_counter()
            write_reconstruction(rec, reconstructor, Path(out) / photo.name, photo.label)
            runs.append({"read": read, **rec.timings, "write": time.perf_counter() - start})
    return {"setup": setup, "runs": runs}


def run_worker(cache: Path, repeats: int) -> dict:
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, __file__, "--worker", "--repeats", str(repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def format_table(cold: dict, cached: dict) -> str:
    warm_runs = cold["runs"][1:] + cached["runs"][1:]
    columns = {
        "cold (compiling)": cold["runs"][0],
        "2nd process (disk cache)": cached["runs"][0],
        f"warm (median of {len(warm_runs)})": {s: statistics.median(r[s] for r in warm_runs) for s in STAGES},
    }
    width = max(len(c) for c in columns) + 2
    lines = ["stage".ljust(12) + "".join(name.rjust(width) for name in columns)]
    for stage in STAGES:
        lines.append(stage.ljust(12) + "".join(f"{run[stage]:.3f} s".rjust(width) for run in columns.values()))
    lines.append(
        "total".ljust(12) + "".join(f"{sum(run[s] for s in STAGES):.3f} s".rjust(width) for run in columns.values())
    )
    lines.append(
        "setup".ljust(12)
        + f"{cold['setup']:.3f} s".rjust(width)
        + f"{cached['setup']:.3f} s".rjust(width)
        + "(once per process)".rjust(width)
    )
    return "\n".join(lines), sum(columns[f"warm (median of {len(warm_runs)})"][s] for s in STAGES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=6, help="warm photos per process (default 6)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args.repeats)))
        return 0
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as cache:
            print("cold process (empty compile cache) ...", flush=True)
            cold = run_worker(Path(cache), args.repeats)
            print("second process (compile cache on disk) ...", flush=True)
            cached = run_worker(Path(cache), args.repeats)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    table, warm_total = format_table(cold, cached)
    print(
        f"\nfaceflax reconstruct, ICT-FaceKit face, 512-px face square, 512x512 UV, per photo on {os.cpu_count()} CPU(s):"
    )
    print(table)
    verdict = "PASS" if warm_total <= TARGET_WARM_S else "MISS"
    print(f"\n{verdict}: warm total {warm_total:.2f} s per photo (target <= {TARGET_WARM_S:.1f} s)")
    print("For scale (the seeds): MvInvert 3.7 s per texture on a GPU, GANFit 30 s, OSTeC about 5 minutes.")
    print(f"1-min load average: {load:.1f} at start, {os.getloadavg()[0]:.1f} at end.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
