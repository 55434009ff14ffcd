"""The user path: `mlip lammps build-plugin` and `mpiexec -np 2 mlip lammps run model.npz in.lammps`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np

from mlip.calculator import ICTPCalculator
from mlip.lammps.cli import add_parser, run

from .helpers import mpiexec, periodic_cell, requires_lammps, save_model

INPUT = """\
units           metal
atom_style      atomic
boundary        p p p
read_data       {data}
mass            1 63.546
mass            2 58.693
pair_style      mlip
pair_coeff      * * Cu Ni
thermo_style    custom step pe press
run             0
print           "PE $(pe:%.17g)" file {out}
"""


@requires_lammps
def test_build_plugin_command(tmp_path):
    env = {**os.environ, "MLIP_LAMMPS_PLUGIN_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlip", "lammps", "build-plugin", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path == tmp_path / "out" / "mlip_pair.so" and path.stat().st_size > 0


@requires_lammps
def test_run_command_on_two_ranks(tmp_path):
    atoms = periodic_cell()
    atoms.set_cell(np.diag(atoms.cell.lengths()), scale_atoms=False)  # orthogonal: the data file keeps positions
    atoms.wrap()
    data = tmp_path / "cell.data"
    ase.io.write(data, atoms, format="lammps-data", specorder=["Cu", "Ni"], atom_style="atomic")
    model = save_model(tmp_path)
    inp = tmp_path / "in.lammps"
    out = tmp_path / "pe.txt"
    inp.write_text(INPUT.format(data=data, out=out))
    env = {**os.environ, "CARTESIAN_IRREPS_NUM_THREADS": "1"}
    cmd = [mpiexec(), "-np", "2", sys.executable, "-m", "mlip", "lammps", "run", str(model), str(inp), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    energy = float(out.read_text().split()[1])
    ref = ase.io.read(data, format="lammps-data", atom_style="atomic", Z_of_type={1: 29, 2: 28})
    ref.calc = ICTPCalculator(model)
    assert abs(energy - ref.get_potential_energy()) < 1e-10


def test_run_command_reports_a_missing_input(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["lammps", "run", str(tmp_path / "m.npz"), str(tmp_path / "missing.in")])
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "missing.in" in err


@requires_lammps
def test_run_command_reports_a_lammps_error(tmp_path):
    atoms = periodic_cell()
    atoms.set_cell(np.diag(atoms.cell.lengths()), scale_atoms=False)
    atoms.wrap()
    data = tmp_path / "cell.data"
    ase.io.write(data, atoms, format="lammps-data", specorder=["Cu", "Ni"], atom_style="atomic")
    inp = tmp_path / "in.lammps"
    inp.write_text(INPUT.format(data=data, out=tmp_path / "pe.txt").replace("* * Cu Ni", "* * Cu Fe"))
    cmd = [sys.executable, "-m", "mlip", "lammps", "run", str(save_model(tmp_path)), str(inp), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert proc.returncode == 1
    assert "error: LAMMPS stopped" in proc.stderr and "'Fe'" in proc.stderr
