"""Typed dataclass configurations as command-line flags, one flag per field.

Every field is one `--flag` (underscores become dashes) whose help names its
default; a profile is a named set of field values. Precedence: a flag given on
the command line wins over the profile, which wins over the field default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
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


def config_from_args(cls: type, args: argparse.Namespace,
                     profiles: dict[str, dict[str, Any]] | None = None) -> Any:
    """Field default < profile value < explicit flag."""
    values = dict((profiles or {}).get(getattr(args, "profile", ""), {}))
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                   if getattr(args, f.name, None) is not None})
    return cls(**values)
