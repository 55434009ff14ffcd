"""Documentation stays true: formula blocks are the current output of `show`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_formula_blocks_are_fresh():
    spec = importlib.util.spec_from_file_location("refresh_formulas", DOCS / "refresh_formulas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in DOCS.glob("*.md"):
        text = path.read_text()
        assert module.render(text) == text, f"{path.name}: run python docs/refresh_formulas.py"


def test_api_page_examples_run():
    import doctest

    result = doctest.testfile(str(DOCS / "api.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


def test_testing_page_examples_run():
    import doctest

    result = doctest.testfile(str(DOCS / "testing.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 15 and result.failed == 0
