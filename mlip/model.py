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
Parameters are plain named arrays (:class:`Params`); ``save``/``load`` use a pickle-free ``.npz``
holding the arrays and the JSON config with a format version.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cartesian_irreps._validate import parity_of
from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.backend import is_cupy, module_of
from cartesian_irreps.runtime.fused import GraphIndex, PathTable
from cartesian_irreps.runtime.monomials import sparse_basis, table_from_levels

from . import autodiff as ad
from .autodiff import Tensor
from .data import reverse_edge_pairs
from .equivariant import edge_harmonics, graph_message_product
from .monomials import basis_product
from .monomials import kernel_available as monomial_kernel_available
from .radial import SILU_SCALE, bessel_basis

FORMAT = "cartesian-irreps-mlip"
FORMAT_VERSION = 1
PRODUCT_SETS = ("even", "parity_complete")

Key = tuple[int, int]  # (rank l, parity label s)


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


# --------------------------------------------------------------------------- architecture plan
@dataclass(frozen=True)
class LayerPlan:
    """Static structure of one interaction layer (keys, paths, tables)."""

    index: int
    in_keys: tuple[Key, ...]
    out_keys: tuple[Key, ...]
    a_keys: tuple[Key, ...]
    # message paths grouped by input parity label s: (table, [(l1, l2, l3, out key)])
    message: tuple[tuple[int, PathTable, tuple[tuple[int, int, int, Key], ...]], ...]
    # per A key: list of (input parity label, path index in that table)
    a_sources: dict[Key, tuple[tuple[int, int], ...]] = field(hash=False)
    # product basis: nodes of the product tree and the paths feeding each output key
    nodes: tuple[tuple[int, Key, int, Key, tuple[int, int, int]], ...] = ()  # (id, key, parent id, A key, triple)
    basis: dict[Key, tuple[int, ...]] = field(default_factory=dict, hash=False)  # out key -> node ids
    # symmetric monomials of the stacked A (see _product_tables): for levels 2..nu the index of each
    # monomial's lower-order factor (in level nu-1) and of its last factor (in A), both (T_nu,)
    mono_select: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    # out key -> (T, P * (2l+1)) float64: every path's coupling chain folded onto the monomials
    basis_matrix: dict[Key, np.ndarray] = field(default_factory=dict, hash=False)

    @property
    def num_message_paths(self) -> int:
        return sum(len(p) for _, _, p in self.message)

    @cached_property
    def mono_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``mono_select`` as one ``(parent, last)`` monomial table over the stacked A (built once)."""
        return table_from_levels(sum(2 * k[0] + 1 for k in self.a_keys), list(self.mono_select))

    @cached_property
    def sparse_basis(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, int], dict[Key, slice]]:
        """Every out key's basis matrix side by side, as the nonzeros the compiled monomial kernel
        folds in (:func:`cartesian_irreps.runtime.monomials.sparse_basis`), and each key's columns."""
        mats = [self.basis_matrix[k] for k in self.out_keys]
        bounds = np.cumsum([0] + [m.shape[1] for m in mats])
        cols = {k: slice(int(bounds[i]), int(bounds[i + 1])) for i, k in enumerate(self.out_keys)}
        return sparse_basis(np.concatenate(mats, axis=1)), cols


def _parity_out(s1: int, s2: int, triple: tuple[int, int, int]) -> int:
    return s1 * s2 * (1 if parity_of(*triple) == "even" else -1)


def _allowed(triple: tuple[int, int, int], products: str) -> bool:
    return products == "parity_complete" or parity_of(*triple) == "even"


def build_plan(config: ModelConfig) -> tuple[LayerPlan, ...]:
    """Keys, message paths and product-basis paths of every layer (deterministic order)."""
    signs = (1, -1) if config.products == "parity_complete" else (1,)
    hidden = tuple((l, s) for l in range(config.hidden_lmax + 1) for s in signs)
    L = config.lmax
    plans = []
    in_keys: tuple[Key, ...] = ((0, 1),)
    for t in range(config.num_layers):
        last = t == config.num_layers - 1
        out_keys = ((0, 1),) if last else hidden
        # message paths: (l1, s1) x (l2, natural) -> (l3, s3), l3 <= L
        groups = []
        a_sources: dict[Key, list[tuple[int, int]]] = {}
        for s1 in sorted({s for _, s in in_keys}, reverse=True):
            l1s = sorted(l for l, s in in_keys if s == s1)
            paths = []
            for l1 in l1s:
                for l2 in range(L + 1):
                    for l3 in range(abs(l1 - l2), min(l1 + l2, L) + 1):
                        tr = (l1, l2, l3)
                        if _allowed(tr, config.products):
                            paths.append((l1, l2, l3, (l3, _parity_out(s1, 1, tr))))
            paths.sort(key=lambda p: (p[3][0], -p[3][1], p[0], p[1]))
            table = PathTable.from_couplings(
                [p[:3] for p in paths],
                [tables.dense_coupling(*p[:3]) for p in paths],
                {l: l * l for l in range(max(l1s) + 1)},
                {l: l * l for l in range(L + 1)},
            )
            for i, p in enumerate(paths):
                a_sources.setdefault(p[3], []).append((s1, i))
            groups.append((s1, table, tuple(paths)))
        a_keys = tuple(sorted(a_sources, key=lambda k: (k[0], -k[1])))
        # product basis tree
        nodes: list[tuple[int, Key, int, Key, tuple[int, int, int]]] = []
        basis: dict[Key, list[int]] = {k: [] for k in out_keys}
        level = []
        for k in a_keys:
            nodes.append((len(nodes), k, -1, k, (k[0], 0, k[0])))
            level.append(len(nodes) - 1)
        for nu in range(1, config.correlation + 1):
            for nid in level:
                if nodes[nid][1] in basis:
                    basis[nodes[nid][1]].append(nid)
            if nu == config.correlation:
                break
            final = nu + 1 == config.correlation
            nxt = []
            for nid in level:
                key = nodes[nid][1]
                for ak in a_keys:
                    for l3 in range(abs(key[0] - ak[0]), min(key[0] + ak[0], L) + 1):
                        tr = (key[0], ak[0], l3)
                        if not _allowed(tr, config.products):
                            continue
                        k3 = (l3, _parity_out(key[1], ak[1], tr))
                        if final and k3 not in basis:
                            continue
                        nodes.append((len(nodes), k3, nid, ak, tr))
                        nxt.append(len(nodes) - 1)
            level = nxt
        empty = [k for k, ids in basis.items() if not ids]
        if (0, 1) in empty:
            raise ValueError("no product-basis path reaches the scalars; increase lmax or correlation")
        out_keys = tuple(k for k in out_keys if basis[k])
        basis = {k: v for k, v in basis.items() if v}
        select, matrices = _product_tables(a_keys, nodes, basis, config.correlation)
        plans.append(
            LayerPlan(
                index=t,
                in_keys=in_keys,
                out_keys=out_keys,
                a_keys=a_keys,
                message=tuple(groups),
                a_sources={k: tuple(v) for k, v in a_sources.items()},
                nodes=tuple(nodes),
                basis={k: tuple(v) for k, v in basis.items()},
                mono_select=select,
                basis_matrix=matrices,
            )
        )
        in_keys = out_keys
    return tuple(plans)


def _product_tables(
    a_keys: tuple[Key, ...],
    nodes: list[tuple[int, Key, int, Key, tuple[int, int, int]]],
    basis: dict[Key, list[int]],
    correlation: int,
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], dict[Key, np.ndarray]]:
    """Fold every product-basis path onto symmetric monomials of the stacked A.

    With ``a`` (D,) the A keys stacked, the order-nu monomials are ``a_i1 ... a_inu`` for sorted
    ``i1 <= ... <= inu``; level nu is ``mono_{nu-1}[..., parent] * a[..., last]`` with the index
    arrays ``select[nu-2]`` (gathers along the last axis; their gradients are sort-based scatters).
    A path of order nu is a multilinear map ``U[m, i1..inu]`` (the chain of its
    couplings); summing U over the permutations of each sorted tuple gives its coefficients on the
    monomials, so ``Pi_path[m] = sum_t M[t, path, m] mono[t]`` exactly.
    """
    offsets, off = {}, 0
    for k in a_keys:
        offsets[k] = off
        off += 2 * k[0] + 1
    D = off
    tuples = [[(i,) for i in range(D)]]
    select = []
    for _ in range(2, correlation + 1):
        prev, nxt, parent, last = tuples[-1], [], [], []
        for t_idx, t in enumerate(prev):
            for c in range(t[-1], D):
                nxt.append((*t, c))
                parent.append(t_idx)
                last.append(c)
        tuples.append(nxt)
        select.append((np.array(parent, dtype=np.intp), np.array(last, dtype=np.intp)))
    level_offset = np.cumsum([0] + [len(t) for t in tuples])
    position = [{t: i for i, t in enumerate(level)} for level in tuples]
    fold = {}  # level nu -> (D**nu,) index of the sorted tuple of every full index
    full: dict[int, np.ndarray] = {}
    for nid, _key, parent, ak, tr in nodes:
        if parent < 0:
            u = np.zeros((2 * ak[0] + 1, D))
            u[np.arange(2 * ak[0] + 1), offsets[ak] + np.arange(2 * ak[0] + 1)] = 1.0
        else:
            c = tables.dense_coupling(*tr)  # (parent m, A-key m, out m)
            up = full[parent]  # (m_p, D, ..., D)
            u = np.zeros((c.shape[2], *up.shape[1:], D))
            block = np.einsum("abk,a...->k...b", c, up)
            u[..., offsets[ak] : offsets[ak] + c.shape[1]] = block
        full[nid] = u
    matrices = {}
    for key, ids in basis.items():
        m = 2 * key[0] + 1
        mat = np.zeros((int(level_offset[-1]), len(ids), m))
        for p, nid in enumerate(ids):
            u = full[nid]
            nu = u.ndim - 1
            if nu not in fold:
                grid = np.indices((D,) * nu).reshape(nu, -1).T
                fold[nu] = np.array([position[nu - 1][tuple(sorted(g))] for g in grid], dtype=np.intp)
            flat = u.reshape(m, -1)
            for k in range(m):
                mat[level_offset[nu - 1] : level_offset[nu], p, k] = np.bincount(
                    fold[nu], weights=flat[k], minlength=len(tuples[nu - 1])
                )
        matrices[key] = mat.reshape(mat.shape[0], -1)
    return _prune_monomials(D, select, matrices)


def _prune_monomials(
    dim: int, select: list[tuple[np.ndarray, np.ndarray]], matrices: dict[Key, np.ndarray]
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], dict[Key, np.ndarray]]:
    """Keep only the monomials some output uses (and their lower-degree factors).

    Invariance makes the folded matrices sparse: for 9 stacked A entries (l = 0, 1, 2) and ν = 3 the
    scalars use 35 of the 219 monomials. Entries below ``1e-12 max|M|`` are the rounding residue of
    exact cancellations in the coupling chains and are set to zero first. Degree 1 (``A`` itself) is
    always kept; level ``nu`` keeps its used monomials plus the parents of the kept level ``nu + 1``;
    parent indices are renumbered, and the matrices keep the rows of the kept monomials.
    """
    for mat in matrices.values():
        scale = float(np.abs(mat).max()) if mat.size else 0.0
        mat[np.abs(mat) < 1e-12 * scale] = 0.0
    used = np.logical_or.reduce([(mat != 0).any(axis=1) for mat in matrices.values()])
    sizes = [dim] + [len(p) for p, _ in select]
    offsets = np.cumsum([0] + sizes)
    keep = [used[offsets[i] : offsets[i + 1]].copy() for i in range(len(sizes))]
    keep[0][:] = True
    for lvl in range(len(select), 0, -1):  # select[lvl - 1] builds level lvl from level lvl - 1
        keep[lvl - 1][select[lvl - 1][0][keep[lvl]]] = True
    new_select = []
    for lvl, (parent, last) in enumerate(select, start=1):
        renumber = np.cumsum(keep[lvl - 1]) - 1
        new_select.append((renumber[parent[keep[lvl]]].astype(np.intp), last[keep[lvl]].astype(np.intp)))
    rows = np.concatenate(keep)
    return tuple(new_select), {key: np.ascontiguousarray(mat[rows]) for key, mat in matrices.items()}


# --------------------------------------------------------------------------- parameters
def _kname(key: Key) -> str:
    return f"{key[0]}{'e' if key[1] == 1 else 'o'}"


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter (deterministic order)."""
    K, S = config.channels, len(config.elements)
    shapes: dict[str, tuple[int, ...]] = {"embed": (S, K)}
    for lp in build_plan(config):
        pre = f"layers.{lp.index}"
        for k in lp.in_keys:
            shapes[f"{pre}.up.{_kname(k)}"] = (K, K)
            if k in lp.out_keys:
                shapes[f"{pre}.sc.{_kname(k)}"] = (S, K, K)
        sizes = (config.num_bessel, *config.radial_hidden, K * lp.num_message_paths)
        for i in range(len(sizes) - 1):
            shapes[f"{pre}.radial.{i}"] = (sizes[i], sizes[i + 1])
        for k in lp.a_keys:
            shapes[f"{pre}.mix.{_kname(k)}"] = (K, len(lp.a_sources[k]), K)
        for k in lp.out_keys:
            shapes[f"{pre}.product.{_kname(k)}"] = (S, K, len(lp.basis[k]))
            shapes[f"{pre}.linear.{_kname(k)}"] = (K, K)
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

    def _tensor(self, name: str, params: dict[str, Any]) -> Tensor:
        v = params[name]
        return v if isinstance(v, Tensor) else ad.constant(v)

    def site_energies(
        self,
        batch: Any,
        vectors: Tensor,
        params: dict[str, Any] | None = None,
        exchange: Callable[[dict[Key, Tensor]], dict[Key, Tensor]] | None = None,
    ) -> Tensor:
        """``E_i`` (N,) in eV for the batch's atoms, given edge vectors ``(E, 3)`` in Å.

        ``exchange`` (domain decomposition, :mod:`mlip.lammps`) maps the node features ``h`` to the ones
        used by the next layer, after every layer but the last (it overwrites ghost atoms' rows).
        """
        cfg = self.config
        params = self.params if params is None else params
        P = lambda name: self._tensor(name, params)  # noqa: E731
        xp = vectors.xp
        K = cfg.channels
        species = xp.asarray(batch.species)
        n_atoms = int(batch.species.shape[0])
        graph = GraphIndex.build(batch.senders, batch.receivers, n_atoms)
        # the radial part depends on |r| only: computed once per {edge, reverse edge} pair
        members, pair_of = reverse_edge_pairs(batch.senders, batch.receivers, batch.unit_shifts)
        halved = len(members) < len(pair_of)
        vec_rep = ad.index_select(vectors, xp.asarray(members[:, 0])) if halved else vectors
        lengths = ad.sqrt(ad.sum(vec_rep * vec_rep, axis=1))
        radial = bessel_basis(lengths, cfg.cutoff, cfg.num_bessel, cfg.envelope_p)
        members, pair_of = xp.asarray(members), xp.asarray(pair_of)
        harm = edge_harmonics(vectors, cfg.lmax)
        h: dict[Key, Tensor] = {(0, 1): ad.reshape(ad.index_select(P("embed"), species), (n_atoms, K, 1))}
        energy = None
        inv_k = 1.0 / math.sqrt(K)
        for lp in self.plan:
            pre = f"layers.{lp.index}"
            sc = {}
            up = {}
            for k in lp.in_keys:
                up[k] = ad.einsum("nkm,kq->nqm", h[k], P(f"{pre}.up.{_kname(k)}")) * inv_k
                if k in lp.out_keys:
                    wsc = ad.index_select(P(f"{pre}.sc.{_kname(k)}"), species)
                    sc[k] = ad.einsum("nkm,nkq->nqm", h[k], wsc) * inv_k
            # radial MLP -> (E, K, P)
            # (constant scales folded into the small weight matrices, not the (E, width) activations)
            x = radial
            n_lin = len(cfg.radial_hidden) + 1
            for i in range(n_lin - 1):
                w = P(f"{pre}.radial.{i}")
                scale = (SILU_SCALE if i > 0 else 1.0) / math.sqrt(w.shape[0])
                x = ad.silu(ad.matmul(x, w * scale))
            # last layer: one matrix product per parity group, so each group's (E, K, P_g) weights
            # come out contiguous; then from pairs back to edges
            w_last = P(f"{pre}.radial.{n_lin - 1}")
            w_last = ad.reshape(w_last * (SILU_SCALE / math.sqrt(w_last.shape[0])), (-1, K, lp.num_message_paths))
            group_weights = []
            offset = 0
            for _, _, paths in lp.message:
                n_g = len(paths)
                w_g = w_last if len(lp.message) == 1 else w_last[:, :, offset : offset + n_g]
                offset += n_g
                x_g = ad.matmul(x, ad.reshape(w_g, (-1, K * n_g)))
                if halved:
                    x_g = ad.pair_gather(x_g, pair_of, members)
                group_weights.append(ad.reshape(x_g, (-1, K, n_g)))
            # messages, per input parity group
            blocks: dict[Key, list[Tensor]] = {k: [] for k in lp.a_keys}
            for (s1, table, paths), w_g in zip(lp.message, group_weights):
                keys_s = sorted((k for k in lp.in_keys if k[1] == s1), key=lambda k: k[0])
                lmax_in = keys_s[-1][0]
                parts = []
                for l in range(lmax_in + 1):
                    parts.append(
                        up[(l, s1)] if (l, s1) in up else ad.constant(xp.zeros((n_atoms, K, 2 * l + 1), vectors.dtype))
                    )
                stacked = parts[0] if len(parts) == 1 else ad.concatenate(parts, axis=2)
                agg = graph_message_product(table, graph, stacked, harm, w_g) * (1.0 / cfg.avg_num_neighbors)
                for i, path in enumerate(paths):
                    sl = table.z_slices[i]
                    blocks[path[3]].append(agg[:, :, sl])
            A: dict[Key, Tensor] = {}
            for k in lp.a_keys:
                parts = blocks[k]
                stacked = ad.stack(parts, axis=2)  # (N, K, P_k, 2l+1)
                wmix = P(f"{pre}.mix.{_kname(k)}")
                A[k] = ad.einsum("nkpm,kpq->nqm", stacked, wmix) * (1.0 / math.sqrt(K * len(parts)))
            # product basis: symmetric monomials of the stacked A times each key's folded coupling matrix
            # (fused in the compiled kernel; else the monomials, then one matrix product per key)
            a_st = A[lp.a_keys[0]] if len(lp.a_keys) == 1 else ad.concatenate([A[k] for k in lp.a_keys], axis=2)
            fused = None
            if monomial_kernel_available() and not is_cupy(a_st.data):
                # one compiled pass (and one per derivative): the monomials times the sparse basis
                # matrices of all out keys, never stored
                basis, columns = lp.sparse_basis
                fused = basis_product(a_st, lp.mono_table, basis)
            elif not lp.mono_select:
                mono = a_st
            else:
                monos, cur = [a_st], a_st
                for parent, last in lp.mono_select:
                    cur = ad.take_last(cur, xp.asarray(parent)) * ad.take_last(a_st, xp.asarray(last))
                    monos.append(cur)
                mono = ad.concatenate(monos, axis=2)
            h_new: dict[Key, Tensor] = {}
            for k in lp.out_keys:
                n_paths, m = len(lp.basis[k]), 2 * k[0] + 1
                if fused is not None:
                    flat = fused if len(lp.out_keys) == 1 else fused[:, :, columns[k]]
                else:
                    mat = ad.constant(_device_matrix(lp.basis_matrix[k], vectors.dtype, xp))
                    flat = ad.matmul(ad.reshape(mono, (n_atoms * K, -1)), mat)
                paths_out = ad.reshape(flat, (n_atoms, K, n_paths, m))
                wprod = ad.index_select(P(f"{pre}.product.{_kname(k)}"), species)  # (N, K, n)
                b = ad.einsum("nkpm,nkp->nkm", paths_out, wprod)
                out = ad.einsum("nkm,kq->nqm", b, P(f"{pre}.linear.{_kname(k)}")) * inv_k
                h_new[k] = out + sc[k] if k in sc else out
            scalars = h_new[(0, 1)][:, :, 0]
            if lp.index < cfg.num_layers - 1:
                e = ad.einsum("nk,k->n", scalars, P(f"{pre}.readout")) * inv_k
            else:
                hid = ad.silu(ad.matmul(scalars, P(f"{pre}.readout.0") * inv_k))
                w1 = P(f"{pre}.readout.1") * (SILU_SCALE / math.sqrt(cfg.readout_hidden))
                e = ad.einsum("nj,j->n", hid, w1)
            energy = e if energy is None else energy + e
            h = h_new if exchange is None or lp.index == cfg.num_layers - 1 else exchange(h_new)
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
        shifts = xp.einsum(
            "ea,eab->eb", xp.asarray(batch.unit_shifts).astype(dtype), cell[xp.asarray(batch.edge_batch)]
        )
        vec = ad.index_select(pos, xp.asarray(batch.senders)) - ad.index_select(pos, xp.asarray(batch.receivers))
        vec = vec + ad.constant(shifts)
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


def _device_matrix(mat: np.ndarray, dtype: Any, xp: Any) -> Any:
    """``mat`` cast to ``dtype`` on the device of ``xp``, cached per (array, dtype, module)."""
    key = (id(mat), np.dtype(dtype).str, xp.__name__)
    if key not in _DEVICE_MATRICES:
        _DEVICE_MATRICES[key] = (mat, xp.asarray(np.ascontiguousarray(mat, dtype=dtype)))
    return _DEVICE_MATRICES[key][1]


def save_model(path: str | os.PathLike, config: ModelConfig, params: dict[str, Any], extra: dict | None = None) -> None:
    """Atomically write ``path`` (.npz without pickle): arrays + ``__meta__`` JSON (format, version, config)."""
    path = Path(path)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": config.to_dict(), "extra": extra or {}}
    arrays = {}
    for k, v in params.items():
        a = v.data if isinstance(v, Tensor) else v
        arrays[k] = np.asarray(a.get() if hasattr(a, "get") else a)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_model(path: str | os.PathLike, xp: Any = None) -> tuple[ModelConfig, dict[str, Any]]:
    """Read a file written by :func:`save_model`; arrays moved to ``xp`` (cupy) when given."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise ValueError(f"{path} is not a cartesian-irreps model file (no metadata)")
            meta = json.loads(bytes(data["__meta__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
    except (OSError, ValueError, EOFError, json.JSONDecodeError, KeyError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ValueError) and "cartesian-irreps" in str(exc):
            raise
        raise ValueError(f"{path} is not a readable model file (truncated or foreign): {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {meta.get('version')}, this code reads version {FORMAT_VERSION}")
    config = ModelConfig.from_dict(meta["config"])
    if xp is not None and xp is not np:
        arrays = {k: xp.asarray(v) for k, v in arrays.items()}
    return config, arrays
