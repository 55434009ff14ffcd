"""Helpers shared by the ``mlip`` subcommands: list arguments and positional/flag twins."""

from __future__ import annotations

import argparse

__all__ = ["either", "int_list", "str_list"]


def int_list(text: str) -> list[int]:
    """``"64,64"`` -> ``[64, 64]`` (an argparse type)."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def str_list(text: str) -> list[str]:
    """``"Cu,Au"`` -> ``["Cu", "Au"]`` (an argparse type)."""
    values = [v for v in text.replace(" ", "").split(",") if v]
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return values


def either(args: argparse.Namespace, name: str, flag: str) -> str:
    """The value of a positional argument or of its ``--flag`` twin (exactly one of them)."""
    pos, opt = getattr(args, f"{name}_pos"), getattr(args, name)
    if pos is not None and opt is not None and pos != opt:
        raise ValueError(f"give the {name} once: positional {pos!r} and {flag} {opt!r} differ")
    value = pos if pos is not None else opt
    if value is None:
        raise ValueError(f"missing the {name} file: mlip {args.command} needs {name.upper()} (or {flag})")
    return str(value)
