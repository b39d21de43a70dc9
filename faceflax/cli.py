"""The ``faceflax`` command: ``faceflax reconstruct [PHOTO | DIR | GLOB ...] --out DIR``,
``faceflax prepare PHOTO|DIR|GLOB ... --out DIR``,
``faceflax train | eval --config FILE.py[:ARG] --workdir DIR`` and
``faceflax assets list | verify [NAME...] | fetch NAME``."""

import argparse
import sys
from pathlib import Path

from faceflax import assets
from faceflax.config import apply_overrides, describe_configs, load_config


def _experiments_root() -> Path | None:
    for root in (Path.cwd() / "experiments", Path(__file__).resolve().parents[1] / "experiments"):
        if root.is_dir():
            return root
    return None


def _config_listing() -> str:
    root = _experiments_root()
    if root is None:
        return "No experiments/ folder found: run from the faceflax checkout."
    lines = ["methods and configs (the argument after ':' picks the variant):"]
    lines += [f"  {path:<34} {doc}" for path, doc in describe_configs(root)]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceflax",
        description=(
            "GAN-based face synthesis in JAX/Flax: reconstruct textured 3D faces from photos, "
            "train and evaluate experiment configs, manage assets."
        ),
        epilog=_config_listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _reconstruct_parser(commands)
    _prepare_parser(commands)
    for name, help_text in (
        ("train", "train a config, resuming from the latest checkpoint in --workdir"),
        ("eval", "score the latest checkpoint in --workdir (FID, IS) and write eval.json"),
    ):
        command = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_config_listing(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("--config", required=True, help="experiments/<method>/<data>.py[:arg]")
        command.add_argument("--workdir", required=True, help="folder for checkpoints and outputs")
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set total_steps=100 (repeatable)",
        )
        command.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        command.add_argument(
            "--distributed",
            action="store_true",
            help="multi-host pod: call jax.distributed.initialize() first (run on every host)",
        )
    asset_command = commands.add_parser("assets", help="list, verify or download third-party assets (face models)")
    actions = asset_command.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="each asset's licence, where it is found and whether it is gated")
    verify = actions.add_parser("verify", help="check files and sha256 hashes; exit 1 on any problem")
    verify.add_argument("names", nargs="*", metavar="NAME", help="assets to check (default: those present)")
    fetch = actions.add_parser("fetch", help="download into the user cache ($FACEFLAX_HOME, ~/.cache/faceflax)")
    fetch.add_argument("name", metavar="NAME")
    fetch.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _reconstruct_parser(commands) -> None:
    text = (
        "one photo (or many) in: a textured 3D face with a complete UV texture, an OBJ mesh, renders at the "
        "photo's pose and from the front, left and right, a summary grid and a JSON report per photo"
    )
    command = commands.add_parser("reconstruct", help=text, description=text)
    command.add_argument(
        "inputs",
        nargs="*",
        metavar="PHOTO",
        help="image files, folders or glob patterns (default: the embedded astronaut photo)",
    )
    command.add_argument("--out", default="runs/reconstruct", help="output folder; one subfolder per photo")
    command.add_argument("--model", default="ict", help="morphable model: ict, ict+head, mediapipe, bfm:PATH, npz:PATH")
    command.add_argument("--landmarks", metavar="FILE", help="68 landmarks of the one photo (.npy, .json, .pts, text)")
    command.add_argument("--uv-size", type=int, default=512, help="UV texture size in texels (default 512)")
    command.add_argument("--crop-size", type=int, default=512, help="face square the stages work in (default 512)")
    command.add_argument(
        "--no-flip",
        action="store_true",
        help="no symmetric flip blending (it assumes a symmetric face and light; MvInvert sec. 3.1 has none)",
    )
    command.add_argument("--no-identity", action="store_true", help="skip the dlib identity distances")
    command.add_argument("--skip-existing", action="store_true", help="resume: skip photos with a complete folder")
    command.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _prepare_parser(commands) -> None:
    text = (
        "pseudo ground truth for training (landmarks, 3DMM coefficients, UV_gt and its mask, UV_bl, the sampling "
        "map S_gt, face mask) of many photos, one .npz each; resumes, runs one process per CPU core"
    )
    command = commands.add_parser("prepare", help=text, description=text)
    command.add_argument("inputs", nargs="+", metavar="PHOTO", help="image files, folders or glob patterns")
    command.add_argument("--out", required=True, help="output folder of <name>.npz files and failures.json")
    command.add_argument("--model", default="ict", help="morphable model: ict, ict+head, mediapipe, bfm:PATH, npz:PATH")
    command.add_argument("--uv-size", type=int, default=256, help="UV texture size in texels (default 256)")
    command.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU core)")
    command.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _prepare(args: argparse.Namespace) -> int:
    """``faceflax prepare``: 0 when every photo worked, 1 when some failed (the others are written)."""
    from faceflax.data.prepare import prepare
    from faceflax.reconstruct.run import expand_inputs

    photos = expand_inputs(args.inputs)
    summary = prepare(
        photos, args.out, model=args.model, uv_size=args.uv_size, workers=args.workers, progress=not args.no_progress
    )
    print(f"prepared {summary['done']} photo(s) into {args.out}; {summary['skipped']} already there")
    for source, message in summary["failed"].items():
        print(f"  failed: {source}: {message}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _reconstruct(args: argparse.Namespace) -> int:
    """``faceflax reconstruct``: 0 when every photo worked, 1 when some failed (the others are written)."""
    from faceflax.data.faces import load_landmarks  # deferred: imports dlib and JAX only when needed
    from faceflax.geometry.morphable import load_model
    from faceflax.reconstruct.pipeline import ReconstructOptions, Reconstructor, enable_compilation_cache
    from faceflax.reconstruct.run import expand_inputs, reconstruct_many

    photos = expand_inputs(args.inputs)
    landmarks = None if args.landmarks is None else load_landmarks(args.landmarks)
    options = ReconstructOptions(
        crop_size=args.crop_size, uv_size=args.uv_size, flip=not args.no_flip, identity=not args.no_identity
    )
    options.check()
    enable_compilation_cache()
    reconstructor = Reconstructor(load_model(args.model), options)
    result = reconstruct_many(
        photos,
        Path(args.out),
        reconstructor,
        landmarks=landmarks,
        skip_existing=args.skip_existing,
        progress=not args.no_progress,
    )
    summary = f"reconstructed {len(result.done)} of {len(photos)} photo(s) into {args.out}"
    if result.skipped:
        summary += f"; {len(result.skipped)} skipped (already complete)"
    print(summary)
    if result.failed:
        print(f"{len(result.failed)} photo(s) failed:", file=sys.stderr)
        for source, message in result.failed:
            print(f"  {source}: {message}", file=sys.stderr)
        return 1
    return 0


def _assets(args: argparse.Namespace) -> int:
    """``faceflax assets list | verify | fetch``; returns the exit code."""
    if args.action == "fetch":
        print(f"{args.name}: {assets.fetch(args.name, progress=not args.no_progress)}")
    elif args.action == "list":
        rows = [("name", "licence", "gated", "location")]
        rows += [
            (name, asset.licence, "yes" if asset.gated else "no", str(assets.locate(name) or "missing"))
            for name, asset in assets.ASSETS.items()
        ]
        widths = [max(map(len, column)) for column in zip(*rows)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    else:
        failed = False
        for name in args.names or list(assets.ASSETS):
            folder = assets.locate(name)
            if folder is None and not args.names:
                print(f"{name}: not present, skipped")
            elif problems := assets.verify(name):
                print("\n".join(problems), file=sys.stderr)
                failed = True
            else:
                print(f"{name}: ok ({folder})")
        return 1 if failed else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "assets":
            return _assets(args)
        if args.command == "reconstruct":
            return _reconstruct(args)
        if args.command == "prepare":
            return _prepare(args)
        config = load_config(args.config)
        apply_overrides(config, args.set)
        if args.distributed:
            import jax

            jax.distributed.initialize()
        if args.command == "train":
            from faceflax.train.loop import train  # deferred: imports JAX only when needed

            train(config, args.workdir, progress=not args.no_progress)
            print(f"trained {config.total_steps} steps; outputs in {args.workdir}")
        else:
            from faceflax.train.evaluate import evaluate

            result = evaluate(config, args.workdir, progress=not args.no_progress)
            print(", ".join(f"{k}={v}" for k, v in result.items()))
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"faceflax {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"faceflax {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
