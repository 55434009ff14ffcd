"""The irreducible-Cartesian-tensor potential (ICTP-like, MACE-style message passing) on NumPy/CuPy.

Features are irreducible Cartesian tensors in the compact layout, stored per *irrep key* ``(l, s)``:
rank l and parity label s = +1 for natural parity ((-1)^l, true tensors) or -1 for pseudotensors.
With ``products="even"`` (the paper) only natural parity occurs; ``products="parity_complete"`` also
uses the odd (Levi-Civita) products, which flip s, and carries both parities.

For each structure (positions r_i in Å, species Z_i), with edges j -> i inside the cutoff r_c and
``r_ij = r_j - r_i (+ periodic shift)``:

1. embedding: ``h_i^(0) = W_emb[Z_i]`` (K scalars);
2. per interaction layer t:
   * self-connection ``sc_i = W_sc[Z_i] h_i`` (species-dependent, per key), kept as a residual;
   * ``h~ = W_up h`` (per key, mixes channels);
   * radial weights ``R_ij = MLP(Bessel(r_ij) f(r_ij/r_c))`` with one weight per path and channel;
   * messages ``A_i = (1/avg_neighbours) sum_j sum_p R_ij,p (h~_j (x) T(r_ij/|r_ij|))_p`` for every
     path p = (l1, l2 -> l3 <= L), kept separately, then ``A_i[key] = W_mix[key] [A_i,p]_p``
     scaled by ``(K P_key)^(-1/2)``;
   * product basis up to correlation order nu: ``Pi_1 = A``, ``Pi_{n+1} = Pi_n (x) A`` channel-wise,
     every path kept (intermediate ranks <= L, the last step only into the layer's output keys);
     ``B_i[key] = sum_paths w[Z_i, k, path] Pi_path``;
   * update ``h^(t+1) = W_lin B + sc``; readout: linear on the scalars (inner layers), an MLP
     K -> 16 -> 1 (last layer);
3. site energy ``E_i = s sum_t readout_t(h_i^(t)) + mu[Z_i]``; ``E = sum_i E_i`` (eV).

Forces ``F = -dE/dr`` and stress ``sigma = (1/V) dE/d(strain)`` come from :mod:`mlip.autodiff`.
The layer plan (keys, paths, the folded product basis) is :mod:`mlip.layer_plan`; the steps above are
the functions of :mod:`mlip.blocks`, composed here.
Parameters are plain named arrays (:func:`param_shapes`); ``save``/``load`` use a pickle-free ``.npz``
holding the arrays and the JSON config with a format version.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.backend import module_of

from . import autodiff as ad
from . import blocks
from .archive import read_archive, write_archive
from .autodiff import Tensor
from .data import edge_vectors
from .equivariant import edge_harmonics
from .layer_plan import Key, LayerPlan, build_plan, key_name

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PRODUCT_SETS",
    "Key",
    "LayerPlan",
    "ModelConfig",
    "Potential",
    "build_plan",
    "init_params",
    "load_model",
    "param_shapes",
    "save_model",
]

FORMAT = "cartesian-irreps-mlip"
FORMAT_VERSION = 1
PRODUCT_SETS = ("even", "parity_complete")


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters (JSON-serialisable). Lengths in Å, energies in eV."""

    elements: tuple[str, ...]
    channels: int = 32
    lmax: int = 2
    hidden_lmax: int = 1
    correlation: int = 3
    num_layers: int = 2
    cutoff: float = 5.0
    num_bessel: int = 8
    envelope_p: int = 5
    radial_hidden: tuple[int, ...] = (64, 64, 64)
    readout_hidden: int = 16
    products: str = "even"
    avg_num_neighbors: float = 1.0
    atomic_energies: tuple[float, ...] = ()
    energy_scale: float = 1.0
    dtype: str = "float64"

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(self.elements))
        object.__setattr__(self, "radial_hidden", tuple(int(v) for v in self.radial_hidden))
        energies = tuple(float(v) for v in self.atomic_energies) or (0.0,) * len(self.elements)
        object.__setattr__(self, "atomic_energies", energies)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming any impossible value."""
        problems = []
        if not self.elements:
            problems.append("elements must not be empty")
        if len(set(self.elements)) != len(self.elements):
            problems.append(f"elements has duplicates: {self.elements}")
        for name in ("channels", "num_layers", "correlation", "num_bessel", "readout_hidden"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.hidden_lmax <= self.lmax:
            problems.append(f"hidden_lmax must be between 0 and lmax={self.lmax}, got {self.hidden_lmax}")
        if self.lmax < 0 or self.lmax > tables.generated_lmax():
            problems.append(f"lmax must be between 0 and the generated lmax {tables.generated_lmax()}, got {self.lmax}")
        if not self.cutoff > 0:
            problems.append(f"cutoff must be > 0 Å, got {self.cutoff}")
        if self.envelope_p < 1:
            problems.append(f"envelope_p must be >= 1, got {self.envelope_p}")
        if self.products not in PRODUCT_SETS:
            problems.append(f"products must be one of {PRODUCT_SETS}, got {self.products!r}")
        if not self.avg_num_neighbors > 0:
            problems.append(f"avg_num_neighbors must be > 0, got {self.avg_num_neighbors}")
        if len(self.atomic_energies) != len(self.elements):
            problems.append(f"atomic_energies has {len(self.atomic_energies)} values for {len(self.elements)} elements")
        if not self.energy_scale > 0:
            problems.append(f"energy_scale must be > 0, got {self.energy_scale}")
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["elements"] = list(self.elements)
        d["radial_hidden"] = list(self.radial_hidden)
        d["atomic_energies"] = list(self.atomic_energies)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return ModelConfig.from_dict({**self.to_dict(), **changes})


# --------------------------------------------------------------------------- parameters
def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter (deterministic order)."""
    K, S = config.channels, len(config.elements)
    shapes: dict[str, tuple[int, ...]] = {"embed": (S, K)}
    for lp in build_plan(config):
        pre = f"layers.{lp.index}"
        for k in lp.in_keys:
            shapes[f"{pre}.up.{key_name(k)}"] = (K, K)
            if k in lp.out_keys:
                shapes[f"{pre}.sc.{key_name(k)}"] = (S, K, K)
        sizes = (config.num_bessel, *config.radial_hidden, K * lp.num_message_paths)
        for i in range(len(sizes) - 1):
            shapes[f"{pre}.radial.{i}"] = (sizes[i], sizes[i + 1])
        for k in lp.a_keys:
            shapes[f"{pre}.mix.{key_name(k)}"] = (K, len(lp.a_sources[k]), K)
        for k in lp.out_keys:
            shapes[f"{pre}.product.{key_name(k)}"] = (S, K, len(lp.basis[k]))
            shapes[f"{pre}.linear.{key_name(k)}"] = (K, K)
        if lp.index < config.num_layers - 1:
            shapes[f"{pre}.readout"] = (K,)
        else:
            shapes[f"{pre}.readout.0"] = (K, config.readout_hidden)
            shapes[f"{pre}.readout.1"] = (config.readout_hidden,)
    return shapes


def init_params(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random parameters (a seeded Generator; the global RNG is untouched).

    Every weight is drawn N(0, 1) and the forward pass multiplies by ``fan_in^(-1/2)`` (and the path
    counts of the paper), so initial activations are O(1); the species-dependent product-basis
    weights are N(0, 1) divided by their number of paths.
    """
    rng = np.random.default_rng(seed)
    dt = np.dtype(config.dtype)
    out = {}
    for name, shape in param_shapes(config).items():
        a = rng.standard_normal(shape)
        if ".product." in name:
            a /= max(shape[-1], 1)
        out[name] = np.ascontiguousarray(a.astype(dt))
    return out


# --------------------------------------------------------------------------- forward
class Potential:
    """A model: config + parameters, evaluating energies, forces and stress on batches.

    ``params`` values are arrays (NumPy or CuPy) or autodiff Tensors (for training).
    """

    def __init__(self, config: ModelConfig, params: dict[str, Any]) -> None:
        self.config = config
        self.params = params
        shapes = param_shapes(config)
        missing = sorted(set(shapes) - set(params))
        extra = sorted(set(params) - set(shapes))
        if missing or extra:
            raise ValueError(f"parameters do not match the config: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, shape in shapes.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(f"parameter {name!r} has shape {tuple(params[name].shape)}, expected {shape}")

    @cached_property
    def plan(self) -> tuple[LayerPlan, ...]:
        return build_plan(self.config)

    @classmethod
    def create(cls, config: ModelConfig, seed: int = 0) -> Potential:
        return cls(config, init_params(config, seed))

    def site_energies(self, batch: Any, vectors: Tensor, params: dict[str, Any] | None = None) -> Tensor:
        """``E_i`` (N,) in eV for the batch's atoms, given edge vectors ``(E, 3)`` in Å.

        ``batch`` is a :class:`~mlip.data.Batch`: its species, and its edge topology
        (:meth:`~mlip.data.Batch.graph_index`, :meth:`~mlip.data.Batch.edge_pairs`, built once per batch).
        """
        cfg = self.config
        params = self.params if params is None else params

        def weight(name: str) -> Tensor:
            v = params[name]
            return v if isinstance(v, Tensor) else ad.constant(v)

        xp = vectors.xp
        species = xp.asarray(batch.species)
        graph = batch.graph_index()
        radial, pairs = blocks.radial_embedding(vectors, batch.edge_pairs(), cfg.cutoff, cfg.num_bessel, cfg.envelope_p)
        harm = edge_harmonics(vectors, cfg.lmax)
        h = blocks.embedding(weight("embed"), species, cfg.channels)
        energy = None
        for lp in self.plan:
            pre = f"layers.{lp.index}"
            up, sc = blocks.self_interaction(h, lp, weight, pre, species)
            radial_w = blocks.radial_weights(radial, lp, weight, pre, len(cfg.radial_hidden), cfg.channels, pairs)
            A = blocks.interaction(up, harm, graph, radial_w, lp, weight, pre, cfg.avg_num_neighbors)
            h = blocks.product_basis(A, sc, lp, weight, pre, species)
            e = blocks.readout(h[(0, 1)][:, :, 0], weight, pre, last=lp.index == cfg.num_layers - 1)
            energy = e if energy is None else energy + e
        shift = xp.asarray(np.array(cfg.atomic_energies, dtype=vectors.dtype))[species]
        return energy * cfg.energy_scale + ad.constant(shift)

    # ------------------------------------------------------------------ energies, forces, stress
    def evaluate(
        self,
        batch: Any,
        *,
        forces: bool = True,
        stress: bool = False,
        params: dict[str, Any] | None = None,
        create_graph: bool = False,
    ) -> dict[str, Any]:
        """Energies (S,) in eV, forces (N, 3) in eV/Å and stress (S, 3, 3) in eV/Å^3 as arrays.

        With ``create_graph=True`` (training) the results are autodiff Tensors that can be
        differentiated again with respect to parameters given as Tensors.
        """
        xp = module_of(batch.positions)
        dtype = np.dtype(self.config.dtype)
        if np.dtype(batch.positions.dtype) != dtype:
            raise TypeError(
                f"batch has dtype {np.dtype(batch.positions.dtype)} but the model is {dtype}; "
                f"use batch.astype(np.{dtype})"
            )
        pos = ad.tensor(batch.positions, requires_grad=forces)
        cell = xp.asarray(batch.cell)
        vec = edge_vectors(pos, cell, batch, take=ad.index_select)
        strain = None
        if stress:
            strain = ad.tensor(xp.zeros((batch.num_structures, 3, 3), dtype=dtype), requires_grad=True)
            vec = vec + ad.einsum("ea,eab->eb", vec, ad.index_select(strain, xp.asarray(batch.edge_batch)))
        site = self.site_energies(batch, vec, params)
        energy = ad.segment_sum(site, xp.asarray(batch.batch), batch.num_structures)
        out: dict[str, Any] = {"energy": energy}
        wrt = ([pos] if forces else []) + ([strain] if stress else [])
        if wrt:
            grads = ad.grad(ad.sum(energy), wrt, create_graph=create_graph, allow_unused=True)
            if forces:
                g = grads[0]
                out["forces"] = -g if g is not None else ad.constant(xp.zeros_like(batch.positions))
            if stress:
                g = grads[-1]
                volume = xp.abs(xp.linalg.det(cell))
                if bool((volume == 0).any()):
                    raise ValueError("stress needs a 3D cell with non-zero volume for every structure")
                sym = (g + ad.transpose(g, (0, 2, 1))) * 0.5
                out["stress"] = sym * ad.constant((1.0 / volume).reshape(-1, 1, 1))
        if not create_graph:
            out = {k: v.data for k, v in out.items()}
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` (no pickle): every parameter plus the JSON config; atomic rename."""
        save_model(path, self.config, self.params)

    @classmethod
    def load(cls, path: str | os.PathLike, xp: Any = None) -> Potential:
        config, params = load_model(path, xp)
        return cls(config, params)


_DEVICE_MATRICES: dict[tuple[int, str, str], Any] = {}


def save_model(path: str | os.PathLike, config: ModelConfig, params: dict[str, Any], extra: dict | None = None) -> None:
    """Atomically write ``path`` (.npz without pickle): arrays + ``__meta__`` JSON (format, version, config)."""
    path = Path(path)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": config.to_dict(), "extra": extra or {}}
    write_archive(path, meta, {k: (v.data if isinstance(v, Tensor) else v) for k, v in params.items()})


def load_model(path: str | os.PathLike, xp: Any = None) -> tuple[ModelConfig, dict[str, Any]]:
    """Read a file written by :func:`save_model`; arrays moved to ``xp`` (cupy) when given."""
    path = Path(path)
    meta, arrays = read_archive(path, "model file", error=ValueError, identity="cartesian-irreps model file")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {meta.get('version')}, this code reads version {FORMAT_VERSION}")
    config = ModelConfig.from_dict(meta["config"])
    if xp is not None and xp is not np:
        arrays = {k: xp.asarray(v) for k, v in arrays.items()}
    return config, arrays
