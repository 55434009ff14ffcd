"""The built-in reference data set: a small fcc alloy sampled by Langevin MD and labelled by ASE's EMT.

The package must be able to train a potential on a fresh machine with nothing downloaded, so it makes
its own data with the Effective Medium Theory calculator that ships with ASE
(:class:`ase.calculators.emt.EMT`, elements Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O only qualitatively).

:func:`make_emt_dataset` builds a periodic cubic fcc supercell (``size=(2, 2, 2)``: 32 atoms) of
``elements[0]`` with a fraction ``composition`` of the sites, drawn at random, taken by ``elements[1]``.
Its lattice constant is the EMT zero-pressure one of that decoration (ideal sites), found from a
Vegard's-law first guess. Each temperature gets its own decoration and its own Langevin run (NVT at
fixed cell); after an equilibration a snapshot is labelled every ``steps_between`` steps. A fraction
of the snapshots (``strained_fraction``) is scaled isotropically by up to ``±max_strain`` before
labelling, so that the stress labels span more than the thermal pressure at one volume.

Units follow ASE: Å, eV, eV/Å, eV/Å³ (stress in ASE Voigt order xx, yy, zz, yz, xz, xy and sign,
``stress = (1/V) dE/dε``), temperatures in K, times in fs.

Every returned structure carries its labels twice: as a
:class:`~ase.calculators.singlepoint.SinglePointCalculator` *and* in ``info["energy"]``,
``arrays["forces"]``, ``info["stress"]``, so that :func:`mlip.data.labels_from_atoms` finds them
however the structure is handled. ``info`` also holds ``config_type`` (``"md"`` or ``"md_strained"``),
``temperature`` (target, K), ``kinetic_temperature`` (K, of the MD state the snapshot comes from),
``strain`` (isotropic, dimensionless), ``lattice_constant`` (Å, before strain) and ``md_step``.

Randomness comes only from ``numpy.random.default_rng(seed)``, passed to the velocity initialisation
and to :class:`~ase.md.langevin.Langevin`; the global NumPy and ``random`` states are never used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

__all__ = [
    "EMT_ELEMENTS",
    "fcc_cu_cell",
    "isolated_atom_energies",
    "make_emt_dataset",
    "split",
    "write_dataset",
]

#: Elements with EMT parameters in ASE (the metals are the ones EMT describes well).
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O")

#: Fallback first-guess lattice constants (Å) for elements without an fcc reference state in ASE.
_FALLBACK_A = 4.0


def _check_elements(elements: Sequence[str]) -> tuple[str, ...]:
    elements = tuple(elements)
    for e in elements:
        if e not in EMT_ELEMENTS:
            raise ValueError(f"element {e!r} has no EMT parameters in ASE; choose from {', '.join(EMT_ELEMENTS)}")
    return elements


def _fcc_guess(symbol: str) -> float:
    """Experimental fcc lattice constant (Å) from :data:`ase.data.reference_states`, or a fallback."""
    from ase.data import atomic_numbers, reference_states

    state = reference_states[atomic_numbers[symbol]]
    if state is not None and state.get("symmetry") == "fcc":
        return float(state["a"])
    return _FALLBACK_A


def _emt():
    from ase.calculators.emt import EMT

    return EMT()


def _mean_normal_stress(atoms: Atoms, a: float, a_ref: float) -> float:
    """Mean of the diagonal stress (eV/Å³) of ``atoms`` with its cell scaled to lattice constant ``a``."""
    trial = atoms.copy()
    trial.set_cell(atoms.cell.array * (a / a_ref), scale_atoms=True)
    trial.calc = _emt()
    return float(np.mean(trial.get_stress(voigt=True)[:3]))


def _zero_pressure_lattice_constant(atoms: Atoms, a_guess: float, tol: float = 1e-7, max_iter: int = 30) -> float:
    """EMT lattice constant (Å) at which the ideal-site structure has zero mean normal stress (secant)."""
    a0, a1 = a_guess, a_guess * 1.01
    f0, f1 = _mean_normal_stress(atoms, a0, a_guess), _mean_normal_stress(atoms, a1, a_guess)
    for _ in range(max_iter):
        if abs(f1) < tol or f1 == f0:
            break
        a0, a1, f0 = a1, a1 - f1 * (a1 - a0) / (f1 - f0), f1
        f1 = _mean_normal_stress(atoms, a1, a_guess)
    if not (math.isfinite(a1) and 0.7 * a_guess < a1 < 1.3 * a_guess):
        raise RuntimeError(f"could not find the EMT lattice constant near {a_guess:.4g} Å (got {a1})")
    return float(a1)


def _decorated_supercell(
    elements: tuple[str, ...], composition: float, size: tuple[int, int, int], rng: np.random.Generator
) -> tuple[Atoms, float]:
    """A random fcc decoration at its EMT zero-pressure lattice constant, and that constant (Å)."""
    from ase.build import bulk

    host = elements[0]
    a_host = _fcc_guess(host)
    atoms = bulk(host, "fcc", a=a_host, cubic=True).repeat(size)
    a_guess = a_host
    if len(elements) == 2:
        n = len(atoms)
        k = round(composition * n)
        sites = rng.choice(n, size=k, replace=False)
        numbers = atoms.numbers.copy()
        from ase.data import atomic_numbers

        numbers[sites] = atomic_numbers[elements[1]]
        atoms.numbers = numbers
        x = k / n
        a_guess = (1.0 - x) * a_host + x * _fcc_guess(elements[1])  # Vegard's law
        atoms.set_cell(atoms.cell.array * (a_guess / a_host), scale_atoms=True)
    a = _zero_pressure_lattice_constant(atoms, a_guess)
    atoms.set_cell(atoms.cell.array * (a / a_guess), scale_atoms=True)
    return atoms, a


def _thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` (K) from ``rng`` (ASE >= 3.29 or older)."""
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):
        vd.thermalize_momenta(atoms, temperature, rng=rng)
    else:  # pragma: no cover - ASE < 3.29
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)


def _labelled(atoms: Atoms, info: dict) -> Atoms:
    """A fresh copy of ``atoms`` (no momenta, no constraints) with EMT labels attached both ways."""
    snap = Atoms(numbers=atoms.numbers.copy(), positions=atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=True)
    snap.calc = _emt()
    energy = float(snap.get_potential_energy())
    forces = np.array(snap.get_forces(), dtype=np.float64)
    stress = np.array(snap.get_stress(voigt=True), dtype=np.float64)
    snap.calc = SinglePointCalculator(snap, energy=energy, forces=forces.copy(), stress=stress.copy())
    snap.info.update(info)
    snap.info["energy"] = energy
    snap.info["stress"] = stress
    snap.arrays["forces"] = forces
    return snap


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative counts, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def make_emt_dataset(
    n_structures: int = 120,
    temperatures: Sequence[float] = (300.0, 600.0, 900.0),
    size: tuple[int, int, int] = (2, 2, 2),
    elements: Sequence[str] = ("Cu", "Au"),
    composition: float = 0.25,
    seed: int = 0,
    steps_between: int = 10,
    rattle: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    *,
    timestep: float = 2.0,
    friction: float = 0.02,
    equilibration_steps: int = 100,
    strained_fraction: float = 0.1,
    max_strain: float = 0.02,
) -> list[Atoms]:
    """Make the default training data: fcc alloy snapshots from Langevin MD, labelled by EMT.

    The ``n_structures`` snapshots are shared out as evenly as possible between the temperatures (the
    first ones get the remainder), and ``round(strained_fraction * n_structures)`` of them, shared out
    the same way and picked at random within each run, are scaled isotropically by a factor
    ``1 + ε``, ``ε`` uniform in ``[-max_strain, max_strain]``; the MD itself always runs at the
    zero-pressure cell. The default (120 structures of 32 atoms, about 1,500 MD steps) takes a few
    seconds on one core.

    Args:
        n_structures: number of structures returned (>= 1).
        temperatures: Langevin target temperatures (K), one independent run (and decoration) each.
        size: repetitions of the 4-atom cubic fcc cell along a, b, c; ``(2, 2, 2)`` gives 32 atoms.
        elements: ``(host,)`` or ``(host, solute)`` chemical symbols with EMT parameters.
        composition: fraction of the sites (0..1) given to the solute, ``round(composition * n_atoms)``
            of them at random; ignored for a single element.
        seed: seed of the ``numpy.random.Generator`` behind every random choice (decorations,
            velocities, Langevin noise, strains, rattling). Same seed, same data.
        steps_between: MD steps between two snapshots (>= 1).
        rattle: standard deviation (Å) of an extra Gaussian displacement of every atom of a snapshot
            before labelling (the MD trajectory itself is not changed); 0 for none.
        progress: called as ``progress(done, total)`` after each structure.
        timestep: MD time step (fs).
        friction: Langevin friction (1/fs); 0.02 /fs relaxes the kinetic energy in about 50 fs.
        equilibration_steps: MD steps discarded at the start of each run.
        strained_fraction: fraction (0..1) of the structures that are isotropically strained.
        max_strain: largest isotropic strain ``|ε|`` (dimensionless, 0.02 = 2 %).

    Returns:
        ``n_structures`` periodic ``ase.Atoms``, ordered by temperature then MD time, each labelled
        with energy (eV), forces (eV/Å) and stress (eV/Å³, Voigt), see the module docstring.

    Raises:
        ValueError: an argument out of range or an element without EMT parameters.
    """
    from ase.md.langevin import Langevin

    n_structures = int(n_structures)
    if n_structures < 1:
        raise ValueError(f"n_structures must be >= 1, got {n_structures}")
    temperatures = [float(t) for t in temperatures]
    if not temperatures or not all(math.isfinite(t) and t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be a non-empty list of positive K values, got {temperatures}")
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"size must be three positive repetitions, got {size}")
    elements = _check_elements(elements)
    if len(elements) not in (1, 2) or len(set(elements)) != len(elements):
        raise ValueError(f"elements must be (host,) or (host, solute), two different symbols; got {elements}")
    if not 0.0 <= composition <= 1.0:
        raise ValueError(f"composition must lie in [0, 1], got {composition}")
    if int(steps_between) < 1 or int(equilibration_steps) < 0:
        raise ValueError("steps_between must be >= 1 and equilibration_steps >= 0")
    if not (rattle >= 0 and timestep > 0 and friction > 0 and max_strain >= 0 and 0 <= strained_fraction <= 1):
        raise ValueError(
            "need rattle >= 0, timestep > 0, friction > 0, max_strain >= 0 and 0 <= strained_fraction <= 1"
        )

    rng = np.random.default_rng(seed)
    per_temperature = _spread(n_structures, len(temperatures))
    strained_per_temperature = _spread(round(strained_fraction * n_structures), len(temperatures))
    out: list[Atoms] = []
    for temperature, n_snap, n_strained in zip(temperatures, per_temperature, strained_per_temperature):
        if n_snap == 0:
            continue
        n_strained = min(n_strained, n_snap)
        atoms, a = _decorated_supercell(elements, composition, size, rng)
        atoms.calc = _emt()
        _thermalize(atoms, temperature, rng)
        dyn = Langevin(
            atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs, fixcm=False, rng=rng
        )
        if equilibration_steps:
            dyn.run(int(equilibration_steps))
        strained = set(rng.choice(n_snap, size=n_strained, replace=False).tolist())
        for k in range(n_snap):
            dyn.run(int(steps_between))
            strain = float(rng.uniform(-max_strain, max_strain)) if k in strained else 0.0
            source = atoms
            if strain or rattle > 0:
                source = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
                if strain:
                    source.set_cell(source.cell.array * (1.0 + strain), scale_atoms=True)
                if rattle > 0:
                    source.positions = source.positions + rng.normal(0.0, rattle, size=source.positions.shape)
            info = {
                "config_type": "md_strained" if k in strained else "md",
                "temperature": temperature,
                "kinetic_temperature": float(atoms.get_temperature()),
                "strain": strain,
                "lattice_constant": a,
                "md_step": int(dyn.nsteps),
            }
            out.append(_labelled(source, info))
            if progress is not None:
                progress(len(out), n_structures)
    return out


def fcc_cu_cell(repeat: tuple[int, int, int] = (4, 4, 4), a: float = 3.61, stdev: float = 0.05, seed: int = 0) -> Atoms:
    """A periodic fcc Cu supercell with rattled positions: the Cu test and benchmark structure.

    ``bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)`` (4 atoms per cubic cell, so
    ``4 * prod(repeat)`` atoms; the default is the 256-atom ``cu256`` of the benchmarks), every position
    displaced by a normal draw of standard deviation ``stdev`` (Å) from ``seed`` (ASE ``rattle``).

    Raises:
        ValueError: ``repeat`` not three positive integers, ``a`` not positive, ``stdev`` negative.
    """
    from ase.build import bulk

    if len(repeat) != 3 or any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1 for r in repeat):
        raise ValueError(f"repeat must be three positive integers, got {repeat!r}")
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"lattice constant a must be positive (Å), got {a!r}")
    if not (math.isfinite(stdev) and stdev >= 0):
        raise ValueError(f"rattle stdev must be non-negative (Å), got {stdev!r}")
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(tuple(int(r) for r in repeat))
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def isolated_atom_energies(elements: Iterable[str] = ("Cu", "Au"), box: float = 20.0) -> dict[str, float]:
    """EMT energy (eV) of each element as a single atom in a large non-periodic box.

    EMT measures energies from the perfect fcc crystal of each element at its own lattice constant, so
    these are positive (about the cohesive energy: Cu 3.51 eV, Au 3.80 eV). Useful as per-species
    energy offsets (``E - Σ E_atom`` is then minus a binding energy).

    Args:
        elements: chemical symbols with EMT parameters.
        box: edge (Å) of the cubic box; non-periodic, so it only sets the cell.

    Returns:
        ``{symbol: energy in eV}`` in the order given.
    """
    elements = _check_elements(list(elements))
    energies: dict[str, float] = {}
    for e in elements:
        atom = Atoms(e, positions=[(box / 2,) * 3], cell=[box] * 3, pbc=False)
        atom.calc = _emt()
        energies[e] = float(atom.get_potential_energy())
    return energies


def split(
    structures: Sequence[Atoms], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[Atoms], ...]:
    """Shuffle (deterministically) and cut into parts, e.g. train / valid / test.

    Counts are ``fraction * n`` rounded by largest remainder (so they add up to ``n``); when there are
    enough structures, every part with a positive fraction gets at least one, taken from the largest
    part. ``(0.8, 0.1, 0.1)`` of 120 gives 96 / 12 / 12.

    Args:
        structures: the structures (any sequence; the objects themselves are returned, not copies).
        fractions: non-negative fractions, one per part, summing to 1 (within 1e-6).
        seed: seed of the shuffle (``numpy.random.default_rng(seed).permutation``).

    Returns:
        A tuple of ``len(fractions)`` lists, disjoint, together holding every structure once.

    Raises:
        ValueError: fractions empty, negative, not finite or not summing to 1.
    """
    fr = np.asarray(list(fractions), dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or not np.isfinite(fr).all() or (fr < 0).any():
        raise ValueError(f"fractions must be a non-empty list of non-negative numbers, got {list(fractions)}")
    if abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {list(fractions)} (sum {fr.sum():.6g})")
    items = list(structures)
    n = len(items)
    exact = fr * n
    counts = np.floor(exact).astype(np.int64)
    remainder = n - int(counts.sum())
    if remainder:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:remainder]] += 1
    for p in np.nonzero((fr > 0) & (counts == 0))[0]:
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[p] += 1
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return tuple([items[i] for i in perm[bounds[p] : bounds[p + 1]]] for p in range(len(counts)))


def write_dataset(structures: Iterable[Atoms], path: str | PathLike[str]) -> Path:
    """Write structures with their labels to an extended XYZ file (read back with
    :func:`mlip.data.read_structures`).

    Labels are written as the extxyz keys ``energy`` (eV), ``forces`` (eV/Å) and ``stress`` (eV/Å³),
    taken from ``info`` / ``arrays`` or else from an attached calculator's stored results (never
    computed); other ``info`` entries are written as they are. The structures are not modified.

    Args:
        structures: the structures.
        path: output file (parent folders are created); ``.xyz`` or ``.extxyz`` by convention.

    Returns:
        The path written.
    """
    import ase.io

    from mlip.data import labels_from_atoms

    out = []
    for k, atoms in enumerate(structures):
        labels = labels_from_atoms(atoms, virial_key=None, weight_key=None, index=k)
        copy = atoms.copy()  # drops the calculator; info and arrays are copied
        copy.calc = None
        if labels.energy is not None:
            copy.info["energy"] = labels.energy
        if labels.forces is not None:
            copy.arrays["forces"] = labels.forces
        if labels.stress is not None:
            s = labels.stress
            copy.info["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        out.append(copy)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, out, format="extxyz")
    return path
