"""keep_freed_memory: opt-in, and it stops repeated large temporaries from page-faulting afresh."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from ase.build import bulk
from cartesian_irreps.runtime.allocator import keep_freed_memory
from mlip.data import SpeciesTable, batch_structures
from mlip.model import ModelConfig, Potential
ok = keep_freed_memory() if sys.argv[1] == "keep" else None
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
atoms.rattle(0.05, seed=0)
pot = Potential.create(ModelConfig(elements=("Cu",), channels=16, lmax=2, hidden_lmax=1), seed=0)
batch = batch_structures([atoms], 5.0, SpeciesTable(["Cu"]))
pot.evaluate(batch)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    pot.evaluate(batch)
print(ok, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def run(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    ok, faults = out.stdout.split()
    return ok, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_removes_the_page_faults_of_repeated_temporaries():
    ok, kept = run("keep")
    _, default = run("default")
    if ok != "True":
        pytest.skip("this C library does not accept the mallopt settings (not glibc)")
    # energy + forces of a 108-atom cell: thousands of fresh pages per call by default, none kept
    assert default > 1000
    assert kept < default // 10


def test_importing_the_library_does_not_change_malloc():
    """The setting is opt-in: importing the packages leaves the thresholds alone (faults stay)."""
    ok, default = run("default")
    assert ok == "None" and default > 1000
