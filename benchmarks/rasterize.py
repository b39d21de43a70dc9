"""Rasterizer benchmark: forward and forward+backward of a textured face render on the CPU.

Meshes (from the ICT-FaceKit asset, ``load_model("ict")``, never downloaded here):

  * ``ict face``     - the ICT face region, 9,409 vertices / 18,460 triangles;
  * ``ict face x4``  - the same face subdivided once (trimesh, positions and UVs alike): 37,280
    vertices / 73,840 triangles, the scale of the BFM (about 35.7k vertices / 70k triangles).

Scene: the face in model space, posed with yaws spread over [-30, 30] degrees across the batch
(frontal for batch 1) by ``rigid_transform`` and projected by ``PerspectiveCamera().to_clip``
(Deep3DFaceRecon's camera), rendered at ``--size`` (224) squared. The face (the ICT region is
the front of the head, ears included) covers about 60% of the image; the coverage is printed,
and under 25% is an error (the scene would be wrong). For each mesh and batch size, three
jitted programs are timed:

  * forward:     ``rasterize`` alone, on precomputed clip coordinates;
  * textured:    pose + project + ``rasterize`` -> ``interpolate`` (UVs over the UV triangles)
    -> ``texture`` (a 256x256x3 texture) -> L2 loss to a target image;
  * fwd+bwd:     that loss and ``jax.grad`` of it w.r.t. the texture AND the model-space
    vertex positions.

ms/img is the median of single calls (each closed by ``jax.block_until_ready``) after warm-up,
over a window of about 1.5 s (0.3 s with ``--quick``), divided by the batch size; ``best`` is
the fastest call, a hint of how much other work on the machine inflated the median. compile s
is ``jit(...).lower(...).compile()`` (trace + XLA compile), not part of ms/img. peak MB is the
compiled executable's ``memory_analysis()`` (arguments + outputs + temporaries - aliased), or,
where this jax version has none, the growth of the process's max RSS over the measurement (the
table says which).

The NumPy reference (``faceflax.render.reference.rasterize_reference``, a Python loop over the
triangles, float64) rasterizes the batch-1 scene of each mesh once, timed; ``vs NumPy`` is its
time per image over our forward time per image. Its ``tri_id`` must agree with ours on >= 99.5%
of the pixels (a failed check is an error).

Targets (the issue, on the 2-core development CPU): forward <= 15 ms and forward+backward <=
40 ms per 224x224 image at 70k triangles. For scale: Mitsuba 3's LLVM backend renders such a
buffer in about 7 ms and differentiates a texture loss in about 40 ms there; PyTorch3D's CPU
rasterizer takes about 10 s. PASS/MISS is reported for the ``ict face x4`` rows at 224x224
(forward judged on ``rasterize`` alone; the textured forward is shown beside it); a MISS never
changes the exit code. Exit 1 when a measurement or check fails, 2 when the ICT-FaceKit asset
cannot be found (set ``FACEFLAX_ASSETS`` to a mirror holding ``ict-facekit/``).

Usage (from the repository root)::

  FACEFLAX_ASSETS=/path/to/mirror python benchmarks/rasterize.py [--quick] [--batches 1 8]
      [--skip-reference] [--size 224]

The full run takes 1-2 minutes on the development machine (the NumPy reference ~6 s of it),
``--quick`` under one. Timings
on a shared machine are noisy; the load average is printed.
"""

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.rotation import euler_to_matrix, rigid_transform
from faceflax.render import interpolate, rasterize, texture
from faceflax.render.reference import rasterize_reference

TARGET_FORWARD_MS = 15.0
TARGET_BACKWARD_MS = 40.0
TARGET_SIZE = 224
MIN_AGREEMENT = 0.995
MIN_COVERAGE = 0.25
TEXTURE_SIZE = 256
MAX_YAW_DEG = 30.0


@dataclasses.dataclass(frozen=True)
class Mesh:
    name: str
    verts: np.ndarray  # [V, 3] float32, model space
    faces: np.ndarray  # [F, 3] int32
    uvs: np.ndarray  # [T, 2] float32
    uv_faces: np.ndarray  # [F, 3] int32, parallel to faces
    bfm_scale: bool  # the rows the targets apply to


@dataclasses.dataclass(frozen=True)
class Protocol:
    """``warmup`` untimed calls, then as many timed calls as fit ``budget_s`` judging by the
    last warm-up call, at least ``min_repeats``, at most ``max_repeats``: a longer window makes
    the median less sensitive to short bursts of other work on a shared machine."""

    warmup: int
    min_repeats: int
    max_repeats: int
    budget_s: float

    def repeats(self, last_warmup_s: float) -> int:
        fit = int(self.budget_s / max(last_warmup_s, 1e-6))
        return max(self.min_repeats, min(self.max_repeats, fit))


FULL = Protocol(warmup=2, min_repeats=10, max_repeats=200, budget_s=1.5)
QUICK = Protocol(warmup=1, min_repeats=5, max_repeats=50, budget_s=0.3)


# ----------------------------------------------------------------------------- meshes


def _candidates(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Corners and edge midpoints (01, 12, 20) of each triangle: [F, 6, D]."""
    corners = points[tris]
    return np.concatenate([corners, (corners + np.roll(corners, -1, axis=1)) / 2], 1)


def subdivide(mesh: Mesh) -> Mesh:
    """One 1-to-4 subdivision of positions and UVs, checked to stay in correspondence.

    ``trimesh.remesh.subdivide`` orders the new faces by parent face only (4 per face, corners
    and midpoints in a fixed pattern), so subdividing the UV mesh with the same call keeps face
    ``i`` of both in step. Checked: every corner of every new face is the same corner or edge
    midpoint of its parent triangle in 3D and in UV.
    """
    import trimesh

    verts, faces = trimesh.remesh.subdivide(mesh.verts, mesh.faces)
    uvs, uv_faces = trimesh.remesh.subdivide(mesh.uvs, mesh.uv_faces)
    num = len(mesh.faces)
    if not len(faces) == len(uv_faces) == 4 * num:
        raise RuntimeError(f"subdivision gave {len(faces)} / {len(uv_faces)} faces, not {4 * num}")
    parent = np.repeat(np.arange(num), 4)
    expected = _candidates(mesh.verts.astype(np.float64), mesh.faces)[parent]  # [4F, 6, 3]
    got = verts[faces].astype(np.float64)  # [4F, 3, 3]
    distance = np.linalg.norm(got[:, :, None] - expected[:, None], axis=-1)  # [4F, 3, 6]
    which = distance.argmin(-1)
    if distance.min(-1).max() > 1e-5:
        raise RuntimeError("subdivided positions are not corners/midpoints of their parents")
    expected_uv = _candidates(mesh.uvs.astype(np.float64), mesh.uv_faces)[parent]
    expected_uv = np.take_along_axis(expected_uv, which[..., None], axis=1)  # [4F, 3, 2]
    if not np.allclose(uvs[uv_faces], expected_uv, atol=1e-6):
        raise RuntimeError("subdivided UV triangles are out of step with the 3D triangles")
    return Mesh(
        name=f"{mesh.name} x4",
        verts=verts.astype(np.float32),
        faces=faces.astype(np.int32),
        uvs=uvs.astype(np.float32),
        uv_faces=uv_faces.astype(np.int32),
        bfm_scale=True,
    )


def load_meshes() -> list[Mesh]:
    """The ICT face region and its subdivision; asset errors propagate."""
    from faceflax.geometry.morphable import load_model

    model = load_model("ict", download=False)
    face = Mesh(
        name="ict face",
        verts=np.asarray(model.mean, np.float32),
        faces=np.asarray(model.faces, np.int32),
        uvs=np.asarray(model.uvs, np.float32),
        uv_faces=np.asarray(model.uv_faces, np.int32),
        bfm_scale=False,
    )
    return [face, subdivide(face)]


# ----------------------------------------------------------------------------- scene


@dataclasses.dataclass(frozen=True)
class Scene:
    angles: jax.Array  # [B, 3] (pitch, yaw, roll)
    translation: jax.Array  # [B, 3]
    camera: PerspectiveCamera
    size: tuple[int, int]

    @classmethod
    def make(cls, batch: int, size: int) -> "Scene":
        yaws = np.linspace(-MAX_YAW_DEG, MAX_YAW_DEG, batch) if batch > 1 else np.zeros(1)
        angles = np.zeros((batch, 3), np.float32)
        angles[:, 1] = np.deg2rad(yaws)
        return cls(
            angles=jnp.asarray(angles),
            translation=jnp.zeros((batch, 3), jnp.float32),
            camera=PerspectiveCamera.for_image_size((size, size)),
            size=(size, size),
        )

    def clip(self, verts: jax.Array) -> jax.Array:
        """Model-space ``verts [V, 3]`` -> posed clip coordinates ``[B, V, 4]``."""
        posed = rigid_transform(verts, euler_to_matrix(self.angles), self.translation)
        return self.camera.to_clip(posed)


def make_programs(mesh: Mesh, scene: Scene) -> dict[str, tuple[Callable, tuple]]:
    """name -> (function, arguments) of the three measured programs."""
    size = scene.size
    batch = scene.angles.shape[0]
    rng = np.random.default_rng(0)
    verts = jnp.asarray(mesh.verts)
    faces, uvs, uv_faces = map(jnp.asarray, (mesh.faces, mesh.uvs, mesh.uv_faces))
    tex = jnp.asarray(rng.random((TEXTURE_SIZE, TEXTURE_SIZE, 3), np.float32))
    target = jnp.asarray(rng.random((batch, *size, 3), np.float32))
    clip = jax.block_until_ready(scene.clip(verts))

    def forward(clip, faces):
        return rasterize(clip, faces, size)

    def loss(tex, verts, faces, uvs, uv_faces, target):
        fragments = rasterize(scene.clip(verts), faces, size)
        image = texture(tex, interpolate(uvs, fragments, uv_faces))
        return jnp.mean(jnp.square(image - target))

    textured_args = (tex, verts, faces, uvs, uv_faces, target)
    return {
        "forward": (forward, (clip, faces)),
        "textured": (loss, textured_args),
        "backward": (jax.grad(loss, argnums=(0, 1)), textured_args),
    }


# ----------------------------------------------------------------------------- measuring


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _peak_bytes(compiled: Any) -> int | None:
    """Arguments + outputs + temporaries - aliased of a compiled executable, if XLA says."""
    try:
        stats = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    if stats is None:
        return None
    return (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )


def measure(fn: Callable, args: tuple, protocol: Protocol) -> dict[str, Any]:
    """Compile time, median and best seconds per call, peak bytes, last output of ``fn``."""
    rss_before = _max_rss_bytes()
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    for _ in range(max(protocol.warmup, 1)):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        last_warmup_s = time.perf_counter() - start
    times = []
    for _ in range(protocol.repeats(last_warmup_s)):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    peak, source = _peak_bytes(compiled), "xla"
    if peak is None:
        peak, source = _max_rss_bytes() - rss_before, "rss"
    return {
        "compile_s": compile_s,
        "s": statistics.median(times),
        "best_s": min(times),
        "calls": len(times),
        "peak_bytes": peak,
        "peak_source": source,
        "out": out,
    }


def run_row(mesh: Mesh, batch: int, size: int, protocol: Protocol) -> dict[str, Any]:
    scene = Scene.make(batch, size)
    row: dict[str, Any] = {"mesh": mesh, "batch": batch}
    for name, (fn, args) in make_programs(mesh, scene).items():
        print(
            f"  {mesh.name}, batch {batch}: {name} ...",
            end="",
            file=sys.stderr,
            flush=True,
        )
        result = measure(fn, args, protocol)
        out = result.pop("out")
        if name == "forward":
            row["coverage"] = float(jnp.mean(out.tri_id >= 0))
            if row["coverage"] < MIN_COVERAGE:
                raise RuntimeError(
                    f"{mesh.name}, batch {batch}: the face covers only "
                    f"{row['coverage']:.1%} of the image; the scene is wrong"
                )
        else:
            bad = [i for i, leaf in enumerate(jax.tree.leaves(out)) if not jnp.all(jnp.isfinite(leaf))]
            if bad:
                raise FloatingPointError(f"{mesh.name}, batch {batch}: non-finite {name} output")
        row[name] = result
        print(
            f" {result['s'] * 1e3 / batch:.1f} ms/img (median of {result['calls']}, best "
            f"{result['best_s'] * 1e3 / batch:.1f}), compile {result['compile_s']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return row


def reference_check(mesh: Mesh, size: int) -> dict[str, float]:
    """Times the NumPy reference on the batch-1 scene once; tri_id agreement with ours."""
    print(f"  {mesh.name}: NumPy reference ...", end="", file=sys.stderr, flush=True)
    scene = Scene.make(1, size)
    clip = jax.block_until_ready(scene.clip(jnp.asarray(mesh.verts)))
    ours = np.asarray(rasterize(clip, jnp.asarray(mesh.faces), scene.size).tri_id)
    clip_np = np.asarray(clip)
    start = time.perf_counter()
    ref_id, _, _ = rasterize_reference(clip_np, mesh.faces, scene.size)
    seconds = time.perf_counter() - start
    agreement = float(np.mean(ours == ref_id))
    print(
        f" {seconds:.1f} s, tri_id agreement {agreement:.4%}",
        file=sys.stderr,
        flush=True,
    )
    return {"s_per_img": seconds, "agreement": agreement}


# ----------------------------------------------------------------------------- report


def _target(value_ms: float | None, limit_ms: float) -> str:
    return "-" if value_ms is None else ("PASS" if value_ms <= limit_ms else "MISS")


def format_table(rows: list[dict[str, Any]], references: dict[str, dict[str, float]], judge: bool) -> str:
    """The results; ``judge``: fill the target column (the targets are for 224x224)."""
    header = [
        "mesh",
        "vertices",
        "triangles",
        "batch",
        "cover %",
        "forward ms/img",
        "textured fwd ms/img",
        "fwd+bwd ms/img",
        "best fwd/tex/bwd",
        "compile s fwd/tex/bwd",
        "peak MB fwd/tex/bwd",
        "vs NumPy",
        "target fwd/bwd",
    ]
    programs = ("forward", "textured", "backward")
    body = []
    for r in rows:
        mesh, batch = r["mesh"], r["batch"]
        cells = [mesh.name, f"{len(mesh.verts):,}", f"{len(mesh.faces):,}", str(batch)]
        if "error" in r:
            body.append(cells + ["error"] + ["-"] * (len(header) - len(cells) - 1))
            continue
        ms = {p: r[p]["s"] * 1e3 / batch for p in programs}
        ref = references.get(mesh.name)
        ratio = "-" if ref is None else f"x{ref['s_per_img'] * 1e3 / ms['forward']:,.0f}"
        target = "-"
        if mesh.bfm_scale and judge:
            fwd = _target(ms["forward"], TARGET_FORWARD_MS)
            target = f"{fwd}/{_target(ms['backward'], TARGET_BACKWARD_MS)}"
        body.append(
            cells
            + [
                f"{100 * r['coverage']:.1f}",
                *(f"{ms[p]:.1f}" for p in programs),
                "/".join(f"{r[p]['best_s'] * 1e3 / batch:.1f}" for p in programs),
                "/".join(f"{r[p]['compile_s']:.1f}" for p in programs),
                "/".join(f"{r[p]['peak_bytes'] / 2**20:.0f}" for p in programs),
                ratio,
                target,
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if not r["mesh"].bfm_scale or "error" in r:
            continue
        batch = r["batch"]
        fwd, tex, bwd = (r[p]["s"] * 1e3 / batch for p in ("forward", "textured", "backward"))
        fwd_ok, tex_ok = (
            _target(fwd, TARGET_FORWARD_MS),
            _target(tex, TARGET_FORWARD_MS),
        )
        lines.append(
            f"  {r['mesh'].name}, batch {batch}: forward {fwd:.1f} ms {fwd_ok} (textured "
            f"forward {tex:.1f} ms {tex_ok}), fwd+bwd {bwd:.1f} ms " + _target(bwd, TARGET_BACKWARD_MS)
        )
    return lines


def one_line(message: str) -> str:
    """The resolver's multi-line message on one line, without its per-file download list."""
    parts: list[str] = []
    for line in message.splitlines():
        if line.startswith("Put these files"):
            break
        if line.startswith("  ") and parts:  # an item of the list the previous line opened
            parts[-1] += (" " if parts[-1].endswith(":") else "; ") + line.strip()
        elif line.strip():
            parts.append(line.strip())
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="batch 1 only, fewer repeats")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default: 1 8)")
    parser.add_argument("--skip-reference", action="store_true", help="no NumPy reference/check")
    parser.add_argument("--size", type=int, default=224, help="image height and width (224)")
    args = parser.parse_args(argv)
    batches = args.batches or ([1] if args.quick else [1, 8])
    if any(b < 1 for b in batches) or args.size < 1:
        parser.error("--batches and --size must be positive")
    protocol = QUICK if args.quick else FULL

    from faceflax.assets import AssetNotFoundError

    try:
        meshes = load_meshes()
    except (AssetNotFoundError, ValueError) as error:
        message = one_line(str(error))
        print(
            f"rasterize benchmark: cannot load the ICT face model: {message}",
            file=sys.stderr,
        )
        return 2

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows, references, errors = [], {}, 0
    for mesh in meshes:
        for batch in batches:
            try:
                rows.append(run_row(mesh, batch, args.size, protocol))
            except Exception:  # noqa: BLE001 - reported, counted, the other rows still run
                print(" FAILED\n" + traceback.format_exc(), file=sys.stderr, flush=True)
                rows.append({"mesh": mesh, "batch": batch, "error": True})
                errors += 1
        if not args.skip_reference:
            try:
                references[mesh.name] = reference_check(mesh, args.size)
            except Exception:  # noqa: BLE001
                print(" FAILED\n" + traceback.format_exc(), file=sys.stderr, flush=True)
                errors += 1
            else:
                errors += references[mesh.name]["agreement"] < MIN_AGREEMENT

    print()
    mode = "quick" if args.quick else "full"
    print(
        f"rasterize benchmark: {args.size}x{args.size}, texture {TEXTURE_SIZE}x{TEXTURE_SIZE}"
        f"x3, yaw in [-{MAX_YAW_DEG:.0f}, {MAX_YAW_DEG:.0f}] deg across the batch; jax "
        f"{jax.__version__} on {jax.devices()[0].platform} ({mode} run: {protocol.warmup} "
        f"warm-up, then the median of {protocol.min_repeats}-{protocol.max_repeats} calls "
        f"(~{protocol.budget_s:g} s) per program; {time.perf_counter() - started:.0f} s)"
    )
    judge = args.size == TARGET_SIZE
    print(format_table(rows, references, judge))
    print()
    sources = {r[p]["peak_source"] for r in rows if "error" not in r for p in ("forward", "textured", "backward")}
    memory = {
        "xla": "compiled.memory_analysis(): arguments + outputs + temporaries - aliased",
        "rss": "growth of the process's max RSS during the measurement (no memory_analysis)",
    }
    print(
        "forward = rasterize only; textured = pose/project + rasterize + interpolate + texture + "
        "L2; fwd+bwd = that loss and its gradient w.r.t. texture and vertex positions."
    )
    print(
        "compile s (trace + XLA compile) is not part of ms/img; peak MB: "
        + "; ".join(memory[s] for s in sorted(sources))
        + "."
    )
    if references:
        print("NumPy reference on the batch-1 scene, run once (vs NumPy = its s/img / ours):")
        for name, ref in references.items():
            ok = "ok" if ref["agreement"] >= MIN_AGREEMENT else f"BELOW {MIN_AGREEMENT:.1%}"
            print(f"  {name}: {ref['s_per_img']:.1f} s/img, tri_id agreement with ours {ref['agreement']:.3%} ({ok})")
    else:
        print("NumPy reference skipped (--skip-reference): no ratio, no tri_id check.")
    print(
        f"Targets at ~70k triangles (ict face x4 rows): forward <= {TARGET_FORWARD_MS:.0f} "
        f"ms/img, fwd+bwd <= {TARGET_BACKWARD_MS:.0f} ms/img (a MISS is not an error):"
    )
    if judge:
        print("\n".join(target_lines(rows)) or "  (no ict face x4 row measured)")
    else:
        print(f"  not judged: the targets are for {TARGET_SIZE}x{TARGET_SIZE}, this run is --size {args.size}")
    load_after = os.getloadavg()[0]
    print(
        f"1-min load average: {load_before:.1f} at start, {load_after:.1f} at end on "
        f"{os.cpu_count()} CPU(s); other processes on the cores make timings slower/noisier."
    )
    if errors:
        print(
            f"{errors} measurement(s)/check(s) failed; see the messages above.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
