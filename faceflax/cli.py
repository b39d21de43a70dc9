"""The ``faceflax`` command: ``faceflax train | eval --config FILE.py[:ARG] --workdir DIR``."""

import argparse
import sys
from pathlib import Path

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
        description="GAN-based face synthesis in JAX/Flax: train and evaluate experiment configs.",
        epilog=_config_listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
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
