"""Data pipeline benchmark: examples per second at 256x256, against the training step it would feed.

Measured in one process on this CPU:

  * photo pipeline: align a photo to the 256 crop from its 68 landmarks (:mod:`faceflax.data.align`), random
    horizontal flip and colour jitter (augmentation), occlusion synthesis (thesis eq. 5.2,
    :mod:`faceflax.data.occlusion`) — the per-example host work of the de-occlusion method's input;
  * synthetic faces: :class:`faceflax.data.synthetic.SyntheticFaces` batches of 16 at 256 px (render, pair
    render and UV visibility), the default data of the methods' runlocal configs;
  * the training step: forward+backward per image of the U-Net N_S and the PatchGAN discriminator at 256
    (``benchmarks/networks.py``'s measurement), i.e. what one example costs the trainer.

The ratio examples/s of the input over examples/s of the step says whether input is a bottleneck (< 1) with
one loading thread. Needs ICT-FaceKit (``FACEFLAX_ASSETS``) for the synthetic faces. Exit code 0 unless a
measurement fails.

Usage (from the repository root)::

  FACEFLAX_ASSETS=../shared/assets python benchmarks/data.py [--seconds 5]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = 256


def photo_pipeline(seconds: float) -> float:
    """Examples/s of align + flip + colour jitter + occlusion synthesis on the embedded photos."""
    from faceflax.data import align, faces, images
    from faceflax.data.occlusion import synthesize_occlusion

    photos = [images.default_photo("astronaut"), images.read_image(images.grace_hopper_path())]
    marks = [faces.detect_landmarks(p).landmarks for p in photos]
    rng = np.random.default_rng(0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        k = count % 2
        aligned = align.align(photos[k], marks[k], SIZE)
        crop, landmarks = aligned.crop, aligned.landmarks
        if rng.random() < 0.5:
            crop, landmarks = crop[:, ::-1], np.stack([SIZE - 1 - landmarks[:, 0], landmarks[:, 1]], 1)[align.MIRROR]
        crop = np.clip(crop * rng.uniform(0.8, 1.2, 3), 0.0, 1.0).astype(np.float32)
        synthesize_occlusion(rng, crop, landmarks)
        count += 1
    return count / (time.perf_counter() - start)


def synthetic_faces(seconds: float) -> float:
    from faceflax.data.synthetic import SyntheticFaces

    dataset = SyntheticFaces(size=SIZE, uv_size=SIZE, num_examples=1 << 20)
    dataset.batch(np.arange(16))  # compile
    count, start = 16, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dataset.batch(np.arange(count, count + 16))
        count += 16
    return (count - 16) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget of each input measurement")
    args = parser.parse_args(argv)
    import networks

    rows = []
    try:
        print("  photo pipeline ...", flush=True)
        rows.append(("align + flip + jitter + occlusion (photos)", photo_pipeline(args.seconds)))
        print("  synthetic faces ...", flush=True)
        rows.append(("SyntheticFaces (render, pair, UV visibility)", synthetic_faces(args.seconds)))
        steps = {}
        for case in networks.cases(batch=4):
            if case.name.startswith(("U-Net", "PatchGAN")):
                print(f"  {case.name} fwd+bwd ...", flush=True)
                steps[case.name] = 1e3 / networks.measure(case, 2.0, 2)["bwd_ms"]
    except Exception as error:  # noqa: BLE001 -- a failed measurement is reported, with a non-zero exit
        print(f"measurement failed: {error!r}", file=sys.stderr)
        return 1
    step_rate = 1.0 / sum(1.0 / rate for rate in steps.values())
    print(f"\ninput pipelines at {SIZE}x{SIZE}, one process on {os.cpu_count()} CPU cores:")
    for name, rate in rows:
        verdict = "keeps up" if rate >= step_rate else "BOTTLENECK"
        print(f"  {name:48s} {rate:8.1f} examples/s   x{rate / step_rate:5.2f} of the step   {verdict}")
    print(f"training step (U-Net N_S + PatchGAN D fwd+bwd): {step_rate:.1f} examples/s")
    print(f"1-min load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
