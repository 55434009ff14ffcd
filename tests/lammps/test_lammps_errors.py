"""Bad type mappings and setups give clear errors (LAMMPS errors naming the problem), both routes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import requires_lammps, save_model

pytestmark = requires_lammps

EXPECTED = {
    "unknown_element": ["atom type 2", "'Xx'", "model elements: H, C, O, Cu, Ni"],
    "element_not_in_model": ["atom type 2", "'Fe'", "does not have"],
    "too_few_elements": ["one element per atom type", "2 types, got 1 elements"],
    "too_many_elements": ["one element per atom type", "2 types, got 3 elements"],
    "unregistered_name": ["no model registered under the name 'other'", "mlip.lammps.attach"],
    "newton_off": ["requires newton pair on"],
    "external_too_few_elements": ["2 atom types but 1 elements"],
    "external_element_not_in_model": ["atom type 2", "'Fe'"],
}


@pytest.fixture(scope="module")
def messages(tmp_path_factory) -> dict[str, str]:
    model = save_model(tmp_path_factory.mktemp("err_model"))
    script = Path(__file__).with_name("error_cases.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(model)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CARTESIAN_IRREPS_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_setup_is_refused_with_a_clear_message(case, messages):
    message = messages[case]
    assert message, f"{case}: no error was raised"
    for part in EXPECTED[case]:
        assert part in message, f"{case}: {part!r} not in {message!r}"


def test_good_setup_runs(messages):
    assert messages["ok"] == ""
