"""Helpers shared by the ``mlip`` subcommands: list arguments, positional/flag twins, the backend line."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator

__all__ = ["announce_backend", "either", "int_list", "str_list", "warnings_as_lines"]


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Print every warning raised inside the block as one ``warning: ...`` line on stderr (at its end)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)


def announce_backend(device: str) -> None:
    """Print ``backend: ...`` (what runs the model, and a warning when the compiled kernels are missing)."""
    from ..evaluation import backend_line

    with warnings_as_lines():
        print(backend_line(device), file=sys.stderr)


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
