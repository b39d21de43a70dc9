"""Network zoo benchmark: forward and forward+backward time per image on this CPU, with compile time.

For each network the methods use, at the seeds' resolutions (128 px for thesis ch. 3, 224 for MvInvert and
N_R, 256 for ch. 4-5 and StyleGAN2), with random weights (speed does not depend on their values):

  * forward:   the jitted network on a batch (inference mode: running batch statistics);
  * fwd+bwd:   the gradient of the mean output w.r.t. the parameters (and, for generators of images, through
    the image), in training mode where the network has one (batch statistics, spectral-norm updates) — what
    one training step of that network costs, without the optimiser.

Feature networks that the methods only run frozen (VGG-Face, LightCNN, ArcFace, FaceNet, Inception, BiSeNet)
get forward and fwd+bwd w.r.t. their *input* (the gradient a perceptual or identity loss sends back).
ms/img is the median of the timed calls divided by the batch; compile s is ``lower(...).compile()`` (trace +
XLA compile), not part of the times. There is no baseline in another framework here: this table is for later
issues to see what a training step of each method costs (the GAN zoo's PyTorch comparison is
``benchmarks/train_step.py``). Exit code 0 unless a measurement fails.

Usage (from the repository root)::

  python benchmarks/networks.py [--quick] [--only NAME ...] [--batch 4]
"""

import argparse
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Case:
    name: str
    size: int
    build: Callable[[], tuple]  # -> (init(key) -> variables, inputs tuple, apply(variables, *inputs, train))
    frozen: bool = False  # a frozen feature network: gradient w.r.t. the input, not the parameters


def _images(size: int, batch: int, channels: int = 3) -> jax.Array:
    return jax.random.uniform(jax.random.key(1), (batch, size, size, channels))


def cases(batch: int) -> list[Case]:
    """Every benchmarked network, built lazily (imports stay inside)."""
    from faceflax.models import discriminators as d
    from faceflax.models.arcface import IResNet
    from faceflax.models.bisenet import BiSeNet
    from faceflax.models.facenet import InceptionResnetV1
    from faceflax.models.inception import FIDInceptionV3
    from faceflax.models.lightcnn import LightCNN29v2
    from faceflax.models.restyle import BackboneEncoder
    from faceflax.models.stylegan2 import Discriminator, Generator
    from faceflax.models.vgg_face import VGGFace
    from faceflax.nn.resnet import ResNet
    from faceflax.nn.unet import UNet

    def trainable(module, *inputs):
        def apply(v, *x, train):
            return module.apply(v, *x, train=train, mutable=_mutable(v, train))

        return (lambda key: module.init(key, *inputs, train=False)), inputs, apply

    def frozen(module, *inputs, method=None):
        def apply(v, *x, train):
            return module.apply(v, *x, method=method)

        return (lambda key: module.init(key, *inputs, method=method)), inputs, apply

    def stylegan_generator():
        g, z = Generator(256), jax.random.normal(jax.random.key(2), (batch, 512))
        return (lambda key: g.init(key, z)), (z,), lambda v, z, train: g.apply(v, z, key=jax.random.key(3))

    def stylegan_discriminator():
        disc, images = Discriminator(256), _images(256, batch) * 2 - 1
        return (lambda key: disc.init(key, images)), (images,), lambda v, x, train: disc.apply(v, x)

    condition = jax.random.normal(jax.random.key(4), (batch, 68 * 3))
    return [
        Case("StyleGAN2 G (config-f, MvInvert)", 256, stylegan_generator),
        Case("StyleGAN2 D (config-f)", 256, stylegan_discriminator),
        Case(
            "ReStyle IR-SE-50 encoder",
            256,
            lambda: trainable(BackboneEncoder(), _images(256, batch), _images(256, batch)),
        ),
        Case(
            "projection D (ch. 3)", 128, lambda: trainable(d.ProjectionDiscriminator(), _images(128, batch), condition)
        ),
        Case("U-Net ResNet-18 N_S (ch. 5)", 256, lambda: trainable(UNet(), _images(256, batch))),
        Case("ResNet-50 N_R (ch. 5)", 224, lambda: trainable(ResNet(50, 239), _images(224, batch))),
        Case("VGG-shaped D (ch. 5)", 128, lambda: trainable(d.VGGDiscriminator(), _images(128, batch))),
        Case("PatchGAN D", 256, lambda: trainable(d.PatchDiscriminator(), _images(256, batch))),
        Case("partial UV Ds (ch. 4)", 256, lambda: trainable(d.PartialUVDiscriminators(), _images(256, batch))),
        Case(
            "VGG-Face features (eq. 3.5)", 224, lambda: frozen(VGGFace(), _images(224, batch), method="features"), True
        ),
        Case("LightCNN-29 v2", 128, lambda: frozen(LightCNN29v2(None), _images(128, batch, 1)), True),
        Case("ArcFace IResNet-50", 112, lambda: frozen(IResNet(50), _images(112, batch)), True),
        Case("FaceNet InceptionResnetV1", 160, lambda: frozen(InceptionResnetV1(), _images(160, batch)), True),
        Case("FID Inception v3", 299, lambda: frozen(FIDInceptionV3(), _images(299, batch)), True),
        Case("BiSeNet face parsing", 512, lambda: frozen(BiSeNet(), _images(512, batch)), True),
    ]


def _mutable(variables, train: bool):
    return [c for c in ("batch_stats", "spectral_stats") if c in variables] if train else False


def _scalar(out) -> jax.Array:
    out = out[0] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) else out
    return sum(jnp.mean(x) for x in jax.tree.leaves(out))


def measure(case: Case, budget_s: float, min_calls: int) -> dict:
    init, inputs, apply = case.build()
    variables = jax.jit(init)(jax.random.key(0))
    forward = jax.jit(lambda v, *x: _scalar(apply(v, *x, train=False)))
    if case.frozen:
        backward = jax.jit(jax.grad(lambda x, v, *rest: _scalar(apply(v, x, *rest, train=False))))
        args_backward = (inputs[0], variables, *inputs[1:])
    else:
        backward = jax.jit(jax.grad(lambda v, *x: _scalar(apply(v, *x, train=True))))
        args_backward = (variables, *inputs)
    row = {"network": case.name, "size": case.size, "params": sum(x.size for x in jax.tree.leaves(variables["params"]))}
    for label, fn, args in (("fwd", forward, (variables, *inputs)), ("bwd", backward, args_backward)):
        start = time.perf_counter()
        compiled = fn.lower(*args).compile()
        row[f"{label}_compile_s"] = time.perf_counter() - start
        jax.block_until_ready(compiled(*args))
        times, spent = [], 0.0
        while len(times) < min_calls or spent < budget_s:
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - start)
            spent += times[-1]
        row[f"{label}_ms"] = 1e3 * statistics.median(times) / inputs[0].shape[0]
    return row


def format_table(rows: list[dict]) -> str:
    header = ("network", "px", "params", "fwd ms/img", "fwd+bwd ms/img", "compile s fwd/bwd")
    lines = [
        (r["network"], str(r["size"]), f"{r['params'] / 1e6:.1f}M", f"{r['fwd_ms']:.0f}", f"{r['bwd_ms']:.0f}",
         f"{r['fwd_compile_s']:.1f}/{r['bwd_compile_s']:.1f}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x) for x in column) for column in zip(header, *lines)]
    out = ["  ".join(c.ljust(w) for c, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    return "\n".join(out + ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, one timed call each")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--only", nargs="*", default=(), help="networks whose name contains one of these words")
    args = parser.parse_args(argv)
    batch, budget, min_calls = (1, 0.0, 1) if args.quick else (args.batch, 2.0, 3)
    selected = [c for c in cases(batch) if not args.only or any(w.lower() in c.name.lower() for w in args.only)]
    rows, errors = [], 0
    for case in selected:
        print(f"  {case.name} at {case.size} px ...", flush=True)
        try:
            rows.append(measure(case, budget, min_calls))
        except Exception:  # noqa: BLE001 -- report every failing network, then exit non-zero
            traceback.print_exc()
            errors += 1
    print(
        f"\nnetworks on {jax.devices()[0].platform} ({os.cpu_count()} CPU cores), batch {batch}, jax {jax.__version__}:"
    )
    print(format_table(rows))
    print("fwd+bwd: gradient w.r.t. parameters in training mode; for frozen feature networks w.r.t. the input.")
    print(f"1-min load average at the end: {os.getloadavg()[0]:.1f}")
    if errors:
        print(f"{errors} network(s) failed; see above.", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
