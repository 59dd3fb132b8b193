"""Typed dataclass configurations as command-line flags, one flag per field.

Shared by training (`python -m training.run`), serving (`python -m serving`) and the
models' own hyperparameter configs, which is why it sits at the bottom, in `model/`.
Every field is one `--flag` (underscores become dashes) whose help names its
default; a profile is a named set of field values. Precedence, highest first:
a flag on the command line, an environment variable (PREFIX + FIELD_NAME in
capitals, when the caller gives a prefix), a config file's value (a flat TOML
table keyed by field name, when the caller reads one), the profile, the field
default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
from collections.abc import Mapping
from typing import Any, get_type_hints


def option(default: Any, help: str) -> Any:
    """A dataclass field carrying its flag's help text."""
    return dataclasses.field(default=default, metadata={"help": help})


def _flag_type(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        hint = next(a for a in hint.__args__ if a is not type(None))
    return hint


def add_config_arguments(parser: argparse.ArgumentParser, cls: type,
                         profiles: dict[str, dict[str, Any]] | None = None) -> None:
    """Adds one flag per field of `cls` (and `--profile` if there are profiles)."""
    profiles = profiles or {}
    if profiles:
        parser.add_argument("--profile", choices=sorted(profiles), default=next(iter(profiles)),
                            help="named set of defaults (default: %(default)s)")
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        by_profile = {p: v[f.name] for p, v in profiles.items() if f.name in v}
        default = f"default: {f.default!r}" if not by_profile else "default: " + ", ".join(
            f"{p} {by_profile.get(p, f.default)!r}" for p in sorted(profiles))
        flag = "--" + f.name.replace("_", "-")
        kind = _flag_type(hints[f.name])
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{f.metadata['help']} ({default})")
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f"{f.metadata['help']} ({default})")


def _parse(kind: Any, text: str, name: str) -> Any:
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={text!r} is not a boolean (true/false)")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None


def config_from_args(cls: type, args: argparse.Namespace,
                     profiles: dict[str, dict[str, Any]] | None = None,
                     env_prefix: str = "", file_values: Mapping[str, Any] | None = None) -> Any:
    """Field default < profile < config file < environment (if `env_prefix`) < flag.

    Raises ValueError naming the variable when an environment value does not parse.
    """
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = dict((profiles or {}).get(getattr(args, "profile", ""), {}))
    values.update({k: v for k, v in (file_values or {}).items() if k in names})
    if env_prefix:
        for name in names:
            variable = env_prefix + name.upper()
            if variable in os.environ:
                values[name] = _parse(_flag_type(hints[name]), os.environ[variable], variable)
    values.update({name: getattr(args, name) for name in names
                   if getattr(args, name, None) is not None})
    return cls(**values)
