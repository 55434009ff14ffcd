"""Bad LAMMPS inputs for the plugin and the fallback; prints one JSON object ``{case: error message}``.

Run as ``python error_cases.py model.npz`` (one rank). Each case uses a fresh LAMMPS instance.
"""

from __future__ import annotations

import json
import sys

from mpi4py import MPI  # noqa: F401  (before lammps)

# isort: split
from lammps import lammps

from mlip.lammps.bridge import attach
from mlip.lammps.external import attach_external

BOX = [
    "units metal",
    "atom_style atomic",
    "region box block 0 7.2 0 7.2 0 7.2",
    "create_box 2 box",
    "lattice fcc 3.6",
    "create_atoms 1 box",
    "set type 1 type/fraction 2 0.3 12345",
    "mass * 60.0",
]

CASES = {
    "unknown_element": ["pair_style mlip", "pair_coeff * * Cu Xx"],
    "element_not_in_model": ["pair_style mlip", "pair_coeff * * Cu Fe"],
    "too_few_elements": ["pair_style mlip", "pair_coeff * * Cu"],
    "too_many_elements": ["pair_style mlip", "pair_coeff * * Cu Ni Cu"],
    "unregistered_name": ["pair_style mlip other", "pair_coeff * * Cu Ni"],
    "newton_off": ["newton off on", "pair_style mlip", "pair_coeff * * Cu Ni", "run 0"],
}


def run_case(model: str, commands: list[str]) -> str:
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        lmp.commands_list(BOX)
        attach(lmp, model)
        lmp.commands_list(commands)
        return ""
    except Exception as exc:
        return str(exc)
    finally:
        lmp.close()


def external_case(model: str, elements: list[str]) -> str:
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        lmp.commands_list(BOX)
        attach_external(lmp, model, elements)
        return ""
    except Exception as exc:
        return str(exc)
    finally:
        lmp.close()


def main(model: str) -> None:
    out = {name: run_case(model, cmds) for name, cmds in CASES.items()}
    out["external_too_few_elements"] = external_case(model, ["Cu"])
    out["external_element_not_in_model"] = external_case(model, ["Cu", "Fe"])
    out["ok"] = run_case(model, ["pair_style mlip", "pair_coeff * * Cu Ni", "run 0"])
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
