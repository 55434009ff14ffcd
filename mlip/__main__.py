"""``python -m mlip``: the ``mlip`` command line (see :mod:`mlip.cli`)."""

from __future__ import annotations

from .cli import entry

if __name__ == "__main__":
    entry()
