"""All paths up to L at once: the message-passing product of node features with edge harmonics.

For node features gathered on edges ``x[e, c, :]`` (ranks 0..Lx stacked compactly: rank l at
offset l^2), edge harmonics ``y[e, :]`` (ranks 0..Ly, shared by the channels) and per-edge,
per-channel, per-path weights ``w[e, c, p]``, every path ``p = (l1, l2, l3)`` with ``l3 <= Lout`` is

    z_p[e, c, k] = w[e, c, p] sum_ij C_p[i, j, k] x[e, c, l1^2 + i] y[e, l2^2 + j],

kept separately: the result ``z`` has shape ``(E, C, DZ)`` with the paths' blocks contiguous in path
order, and :meth:`MessagePassingProduct.split` returns them as views. ``parity="natural"`` keeps the
paths whose output has natural parity (``l1 + l2 + l3`` even: the even products, as MACE keeps
them); ``"all"`` adds the odd (Levi-Civita) products.

The work is done by :mod:`.fused` (a compiled kernel on the CPU, the NumPy/CuPy reference
elsewhere) on the graph with one edge per node pair (:meth:`GraphIndex.identity`, so nothing is
gathered or summed): fold ``y`` and the couplings into a small per-edge matrix per path, then one
small matrix-vector product per channel. :meth:`vjp` returns the gradients with respect to x, y and w.
"""

from __future__ import annotations

from typing import Any

from .._validate import check_choice, check_rank, parity_of, triples
from . import tables
from .backend import array_module, as_float_array, common_dtype
from .fused import GraphIndex, PathTable, extension_available, phi_grad_graph

PARITIES = ("natural", "all")


def message_paths(lmax_x: int, lmax_y: int, lmax_out: int, parity: str = "natural") -> list[tuple[int, int, int]]:
    """Paths ``(l1, l2, l3)`` with ``l1 <= lmax_x``, ``l2 <= lmax_y``, ``l3 <= lmax_out``, lexicographic."""
    check_choice(parity, PARITIES, "parity")
    top = max(lmax_x, lmax_y, lmax_out)
    return [
        t
        for t in triples(top)
        if t[0] <= lmax_x and t[1] <= lmax_y and t[2] <= lmax_out and (parity == "all" or parity_of(*t) == "even")
    ]


class MessagePassingProduct:
    """The fused all-paths product ``(x, y, w) -> z`` and its vector-Jacobian products."""

    def __init__(
        self,
        lmax_x: int,
        lmax_y: int,
        lmax_out: int,
        *,
        parity: str = "natural",
        normalization: str = "unit",
        paths: list[tuple[int, int, int]] | None = None,
    ) -> None:
        for name, l in (("lmax_x", lmax_x), ("lmax_y", lmax_y), ("lmax_out", lmax_out)):
            check_rank(l, name)
        self.paths = list(paths) if paths is not None else message_paths(lmax_x, lmax_y, lmax_out, parity)
        if not self.paths:
            raise ValueError("no path connects these ranks")
        couplings = [tables.dense_coupling(*t, normalization) for t in self.paths]
        self.table = PathTable.from_couplings(
            self.paths,
            couplings,
            {l: l * l for l in range(lmax_x + 1)},
            {l: l * l for l in range(lmax_y + 1)},
        )
        self.lmax = (lmax_x, lmax_y, lmax_out)

    @property
    def num_paths(self) -> int:
        """Number of paths ``P`` (the last axis of ``w``)."""
        return self.table.P

    @property
    def out_dim(self) -> int:
        """``DZ = sum_p (2 l3_p + 1)``, the last axis of ``z``."""
        return self.table.DZ

    @property
    def backend_name(self) -> str:
        """Where the CPU work runs: the compiled kernel or the NumPy reference."""
        return "compiled (fused.c)" if extension_available() else "numpy reference"

    def _check(self, x: Any, y: Any, w: Any, g: Any = None) -> None:
        xp = array_module(x, y, w, g)
        for name, a in (("x", x), ("y", y), ("w", w), ("g", g)):
            if a is not None:
                as_float_array(a, name, xp)
        common_dtype({"x": x, "y": y, "w": w, "g": g})

    def __call__(self, x: Any, y: Any, w: Any, *, threads: int | None = None) -> Any:
        """``z`` of shape ``(E, C, out_dim)``; x ``(E, C, (Lx+1)^2)``, y ``(E, (Ly+1)^2)``, w ``(E, C, P)``."""
        self._check(x, y, w)
        return phi_grad_graph("z", self.table, _edges_of(x), h=x, y=y, w=w, threads=threads)

    def vjp(
        self, g: Any, x: Any, y: Any, w: Any, wrt: tuple[str, ...] = ("x", "y", "w"), *, threads: int | None = None
    ) -> tuple[Any, ...]:
        """Gradients of ``sum(g * z)`` with respect to the inputs named in ``wrt`` (same shapes)."""
        self._check(x, y, w, g)
        args = {"h": x, "y": y, "w": w, "g": g}
        graph = _edges_of(x)
        out = []
        for name in wrt:
            if name not in ("x", "y", "w"):
                raise ValueError(f"wrt may contain 'x', 'y' and 'w', got {name!r}")
            replaced = "h" if name == "x" else name
            others = {k: v for k, v in args.items() if k != replaced}
            out.append(phi_grad_graph(name, self.table, graph, **others, threads=threads))
        return tuple(out)

    def split(self, z: Any) -> list[Any]:
        """Per-path views ``z[..., slice_p]`` of shape ``(E, C, 2l3+1)``."""
        return [z[..., s] for s in self.table.z_slices]

    def flops(self, edges: int, channels: int) -> dict[str, int]:
        """FLOP counts per call: the fused route and the floor it is measured against.

        * ``fold``: building ``M_p = sum_j C_p[:, j, :] y_j`` for every edge (2 per non-zero);
        * ``matvec``: one ``(2l1+1) x (2l3+1)`` mat-vec per edge, channel and path, plus the weight;
        * ``forward_floor``: ``fold + matvec`` (the fused route does exactly this much arithmetic).
        """
        fold = 2 * self.table.nnz * edges
        matvec = sum(2 * (2 * l1 + 1) * (2 * l3 + 1) + (2 * l3 + 1) for l1, _, l3 in self.paths) * edges * channels
        return {"fold": fold, "matvec": matvec, "forward_floor": fold + matvec}


def _edges_of(x: Any) -> GraphIndex:
    """The per-edge graph of ``x (E, C, DX)`` (its shape is checked by :func:`phi_grad_graph`)."""
    if getattr(x, "ndim", 0) < 1:
        raise ValueError(f"x must have shape (E, C, DX), got {tuple(getattr(x, 'shape', ()))}")
    return GraphIndex.identity(int(x.shape[0]))


def stacked_dim(lmax: int) -> int:
    """``(lmax+1)^2``: the width of ranks 0..lmax stacked compactly."""
    return (check_rank(lmax) + 1) ** 2


__all__ = ["MessagePassingProduct", "message_paths", "stacked_dim"]
