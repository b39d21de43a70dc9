"""Experiment configs: ``path/to/config.py[:arg]`` files whose ``get_config(arg)`` returns a
locked ``ml_collections.ConfigDict`` (big_vision style), plus ``key=value`` overrides.
"""

import ast
import importlib.util
import sys
import types
from pathlib import Path

from ml_collections import ConfigDict


def parse_arg(arg: str | None, **defaults) -> types.SimpleNamespace:
    """Parses a config argument like ``"sngan,runlocal,arch=resnet"`` against ``defaults``.

    ``key=value`` sets a key (the value is parsed as a Python literal, else kept as a string); a
    bare word sets a boolean key to ``True``, or else fills the first (positional) key.

    Raises:
      ValueError: on a key ``defaults`` does not have, or a second positional word.
    """
    values = dict(defaults)
    positional = next(iter(defaults))
    seen_positional = False
    for token in filter(None, (t.strip() for t in (arg or "").split(","))):
        key, sep, raw = token.partition("=")
        if not sep and isinstance(defaults.get(key), bool):
            values[key] = True
            continue
        if not sep:
            if seen_positional:
                raise ValueError(f"config argument {arg!r}: more than one {positional!r} given")
            key, raw, seen_positional = positional, token, True
        if key not in defaults:
            raise ValueError(f"config argument {arg!r}: unknown key {key!r}; valid: {sorted(defaults)}")
        values[key] = _literal(raw)
    return types.SimpleNamespace(**values)


def _literal(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def load_config(spec: str) -> ConfigDict:
    """Loads ``file.py[:arg]`` and returns its locked config.

    Raises:
      ValueError: the file is missing, not a config file, or ``get_config`` rejects the argument.
    """
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise ValueError(f"config file {path!r} not found (expected experiments/<method>/<data>.py)")
    # Configs import shared helpers of their package (``experiments.gan_zoo.common``): put the
    # folder holding the outermost package on the path, as for ``python -m``.
    root = file.resolve().parent
    while (root / "__init__.py").exists():
        root = root.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module_spec = importlib.util.spec_from_file_location(f"faceflax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config(arg) function")
    config = module.get_config(arg or None)
    if not isinstance(config, ConfigDict):
        raise ValueError(f"{path}: get_config must return an ml_collections.ConfigDict")
    config.lock()
    return config


def apply_overrides(config: ConfigDict, overrides: list[str]) -> None:
    """Applies ``dotted.key=value`` overrides in place; the config stays locked.

    Raises:
      ValueError: malformed override, unknown key (naming the valid ones) or a wrong value type.
    """
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override {override!r} must look like key=value")
        *parents, leaf = key.split(".")
        node = config
        for depth, part in enumerate(parents + [leaf]):
            if not isinstance(node, ConfigDict) or part not in node:
                where = ".".join(parents[:depth]) or "the top level"
                valid = sorted(node.keys()) if isinstance(node, ConfigDict) else []
                raise ValueError(f"unknown config key {key!r}: {where} has {valid}")
            if depth < len(parents):
                node = node[part]
        try:
            node[leaf] = _literal(raw)
        except (TypeError, ValueError) as error:
            raise ValueError(f"bad value for config key {key!r}: {error}") from None


def describe_configs(root: Path) -> list[tuple[str, str]]:
    """``(relative path, first docstring line)`` of each config (a file defining ``get_config``)."""
    found = []
    for file in sorted(root.glob("*/*.py")):
        tree = ast.parse(file.read_text())
        if not any(isinstance(n, ast.FunctionDef) and n.name == "get_config" for n in tree.body):
            continue
        doc = (ast.get_docstring(tree) or "").strip()
        found.append((str(file.relative_to(root.parent)), doc.splitlines()[0] if doc else ""))
    return found
