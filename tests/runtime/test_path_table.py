"""Tests of :class:`cartesian_irreps.runtime.path_table.PathTable`: layout, custom offsets, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cartesian_irreps.runtime.fused import GraphIndex, PathTable, phi_grad_graph, phi_grad_graph_reference

from .fused_cases import close, exact_coupling, make_table, natural_paths, random_inputs, without


def test_path_table_layout():
    paths = natural_paths(3)
    table = make_table(paths)
    assert (table.P, table.DX, table.DY, table.DZ) == (23, 16, 16, sum(2 * t[2] + 1 for t in paths))
    assert table.z_slices[0] == slice(0, 1) and table.z_slices[-1].stop == table.DZ
    assert table.meta.dtype == np.int32 and table.meta.shape == (23, 6)
    assert table.coo_val32.dtype == np.float32 and table.coo_val64.dtype == np.float64
    assert table.nnz == sum(int(np.count_nonzero(exact_coupling(*t))) for t in paths)
    for p, (l1, l2, l3) in enumerate(paths):
        ox, dx, oy, dy, _, dz = table.meta[p]
        assert (ox, dx, oy, dy, dz) == (l1 * l1, 2 * l1 + 1, l2 * l2, 2 * l2 + 1, 2 * l3 + 1)
        a, b = table.coo_ptr[p], table.coo_ptr[p + 1]
        dense = np.zeros((dx, dy, dz))
        dense[table.coo_i[a:b], table.coo_j[a:b], table.coo_k[a:b]] = table.coo_val64[a:b]
        assert np.array_equal(dense, exact_coupling(l1, l2, l3))
    with pytest.raises(ValueError):
        table.meta[0, 0] = 1  # read-only


def test_path_table_custom_offsets():
    """Blocks of x and y in another order, and wider arrays; results follow the layout (per-edge product)."""
    paths = [(1, 1, 0), (2, 1, 1), (1, 2, 1)]
    xo, yo = {2: 0, 1: 6}, {1: 0, 2: 4}
    table = PathTable.from_couplings(paths, [exact_coupling(*t) for t in paths], xo, yo, dx=12)
    assert (table.DX, table.DY, table.DZ) == (12, 9, 7)
    std = make_table(paths)
    gi = GraphIndex.identity(11)
    arrays = random_inputs(std, gi, 5, np.float64, 9)
    h = np.zeros((11, 5, 12))
    h[:, :, 6:9] = arrays["h"][:, :, 1:4]
    h[:, :, 0:5] = arrays["h"][:, :, 4:9]
    y = np.zeros((11, 9))
    y[:, 0:3] = arrays["y"][:, 1:4]
    y[:, 4:9] = arrays["y"][:, 4:9]
    custom = {"h": h, "y": y, "w": arrays["w"], "g": arrays["g"]}
    for fn in (phi_grad_graph, phi_grad_graph_reference):
        assert close(fn("z", table, gi, **without(custom, "g")), fn("z", std, gi, **without(arrays, "g")), 1e-12)
        assert close(fn("w", table, gi, **without(custom, "w")), fn("w", std, gi, **without(arrays, "w")), 1e-12)
        gx = fn("x", table, gi, **without(custom, "h"))
        assert np.all(gx[:, :, 5] == 0) and np.all(gx[:, :, 9:] == 0)
        assert close(gx[:, :, 6:9], fn("x", std, gi, **without(arrays, "h"))[:, :, 1:4], 1e-12)


def test_path_table_errors():
    c = exact_coupling(1, 1, 2)
    with pytest.raises(ValueError, match="at least one path"):
        PathTable.from_couplings([], [])
    with pytest.raises(ValueError, match="2 paths but 1"):
        PathTable.from_couplings([(1, 1, 2), (0, 0, 0)], [c])
    with pytest.raises(ValueError, match="shape"):
        PathTable.from_couplings([(1, 1, 1)], [c])
    with pytest.raises(ValueError, match="triangle"):
        PathTable.from_couplings([(0, 1, 2)], [np.zeros((1, 3, 5))])
    with pytest.raises(ValueError, match="no offset for rank"):
        PathTable.from_couplings([(1, 1, 2)], [c], x_offsets={0: 0})
    with pytest.raises(ValueError, match="overlap"):
        PathTable.from_couplings([(1, 1, 2)], [c], x_offsets={0: 0, 1: 0})
    with pytest.raises(ValueError, match="smaller than the layout"):
        PathTable.from_couplings([(1, 1, 2)], [c], dx=2)
    with pytest.raises(ValueError, match="NaN"):
        PathTable.from_couplings([(1, 1, 2)], [np.full_like(c, np.nan)])
