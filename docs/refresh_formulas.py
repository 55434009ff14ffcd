"""Rewrite every ``<!-- show L1 L2 L3 -->`` block in docs/*.md with the current output of ``show``.

Usage: ``python docs/refresh_formulas.py`` (``--check`` exits 1 when a block is stale).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cartesian_irreps.symbolic.formula import product_formula

BLOCK = re.compile(r"(<!-- show (\d+) (\d+) (\d+) -->\n)```text\n.*?```\n```latex\n.*?```\n", re.S)


def render(text: str) -> str:
    def repl(m: re.Match) -> str:
        f = product_formula(int(m.group(2)), int(m.group(3)), int(m.group(4)))
        return f"{m.group(1)}```text\n{f.plain}\n```\n```latex\n{f.latex}\n```\n"

    return BLOCK.sub(repl, text)


def main(argv: list[str]) -> int:
    stale = []
    for path in sorted(Path(__file__).parent.glob("*.md")):
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path.name)
            if "--check" not in argv:
                path.write_text(new)
    if stale and "--check" in argv:
        print("stale formula blocks in: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
