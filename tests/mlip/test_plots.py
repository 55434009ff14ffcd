"""Plots: each writes a PNG of the requested size, copes with missing log columns, rejects bad input."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.image import imread

from mlip.plots import (
    LOG_COLUMNS,
    bar_chart,
    best_epoch,
    energy_profile,
    learning_curve,
    md_energy_plot,
    parity_plot,
    read_training_log,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path, width: int, height: int) -> None:
    path = Path(path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = imread(path)
    assert image.shape[:2] == (height, width)
    assert image.std() > 0.01  # something was drawn, not a blank canvas


def log_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "epoch": i + 1,
                "time_s": 1.5 * (i + 1),
                "lr": 1e-3 * 0.9**i,
                "train_loss": 5.0 * math.exp(-i / 4) + 0.1,
                "valid_loss": 6.0 * math.exp(-i / 4) + 0.3 + (0.5 if i == n - 1 else 0.0),
                "valid_energy_rmse_mev_atom": 30.0 * math.exp(-i / 5) + 2,
                "valid_force_rmse_mev_A": 200.0 * math.exp(-i / 5) + 30,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------------ training log


def test_learning_curve_from_csv(tmp_path):
    csv_path = write_csv(tmp_path / "log.csv", log_rows(), list(LOG_COLUMNS))
    out = learning_curve(csv_path, tmp_path / "figs" / "lc.png", title="training")
    assert out == tmp_path / "figs" / "lc.png"
    check_png(out, 1000, 400)


def test_learning_curve_missing_and_empty_columns(tmp_path):
    rows = log_rows()
    # only a training loss (no epoch, no validation): one panel, epochs counted from 1
    only_train = write_csv(tmp_path / "train.csv", rows, ["train_loss"])
    check_png(learning_curve(only_train, tmp_path / "a.png"), 1000, 400)
    # validation RMSEs present but every valid_loss cell empty
    for r in rows:
        r["valid_loss"] = ""
    partial = write_csv(tmp_path / "partial.csv", rows, ["epoch", "valid_loss", "valid_energy_rmse_mev_atom"])
    check_png(learning_curve(partial, tmp_path / "b.png", figsize=(6, 3), dpi=50), 300, 150)
    # rows as dicts, some keys missing, a non-positive value on a log axis
    dict_rows = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.0, "valid_loss": 0.5}, {"epoch": 3}]
    check_png(learning_curve(dict_rows, tmp_path / "c.png"), 1000, 400)


def test_learning_curve_from_columns_mapping(tmp_path):
    cols = {"epoch": [1, 2, 3], "valid_force_rmse_mev_A": [90.0, 60.0, 70.0]}
    check_png(learning_curve(cols, tmp_path / "m.png"), 1000, 400)
    with pytest.raises(ValueError, match="mismatched lengths"):
        learning_curve({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5]}, tmp_path / "bad.png")


def test_learning_curve_nothing_to_plot(tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        learning_curve([{"epoch": 1, "lr": 0.1, "time_s": 2.0}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        learning_curve([{"epoch": 1, "train_loss": ""}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no rows"):
        learning_curve([], tmp_path / "x.png")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(LOG_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="no rows"):
        learning_curve(empty, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'train_loss', row 1"):
        learning_curve([{"train_loss": 1.0}, {"train_loss": "oops"}], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_read_training_log(tmp_path):
    csv_path = write_csv(tmp_path / "log.csv", log_rows(3), list(LOG_COLUMNS))
    log = read_training_log(csv_path)
    assert list(log) == list(LOG_COLUMNS)
    np.testing.assert_allclose(log["time_s"], [1.5, 3.0, 4.5])
    log = read_training_log([{"a": "1", "b": ""}, {"b": " 2.5 "}, {"a": None, "c": 3}])
    assert list(log) == ["a", "b", "c"]
    np.testing.assert_array_equal(log["a"], [1.0, np.nan, np.nan])
    np.testing.assert_array_equal(log["b"], [np.nan, 2.5, np.nan])
    np.testing.assert_array_equal(log["c"], [np.nan, np.nan, 3.0])


def test_best_epoch():
    assert best_epoch([{"epoch": e, "valid_loss": v} for e, v in [(5, 3.0), (6, 1.0), (7, 2.0), (8, "")]]) == (
        6.0,
        "valid_loss",
    )
    # no valid_loss: the energy RMSE decides; no epoch column: count from 1; ties go to the first
    assert best_epoch({"valid_energy_rmse_mev_atom": [4.0, 2.0, 2.0, 3.0]}) == (2.0, "valid_energy_rmse_mev_atom")
    assert best_epoch({"valid_loss": ["", ""], "valid_force_rmse_mev_A": [9.0, 8.0]}) == (
        2.0,
        "valid_force_rmse_mev_A",
    )
    assert best_epoch({"epoch": [1, 2], "train_loss": [1.0, 0.5]}) is None
    assert best_epoch(log_rows()) == (11.0, "valid_loss")


# ------------------------------------------------------------------------------------ parity


def test_parity_plot(tmp_path):
    rng = np.random.default_rng(0)
    e = rng.normal(size=20) * 0.05
    f = rng.normal(size=(64, 3))
    out = parity_plot(e, e + 0.002, f, f + rng.normal(size=f.shape) * 0.05, tmp_path / "p.png", title="test")
    check_png(out, 1000, 500)
    metrics = {"energy_rmse_mev_atom": 2.0, "force_mae_mev_A": 40.0, "force_rmse_mev_A": None}
    check_png(parity_plot(e, e, f, f, tmp_path / "q.png", metrics=metrics, figsize=(4, 2), dpi=80), 320, 160)
    # energies only, and a single point
    check_png(parity_plot([0.1], [0.1], None, None, tmp_path / "r.png", figsize=(5, 5)), 500, 500)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.1, 0.2, 0.3], [0.1, 0.2], np.zeros((2, 3)), np.zeros((2, 3))), "mismatched lengths"),
        (([0.1], [0.1], np.zeros((5, 3)), np.zeros((4, 3))), "mismatched lengths"),
        (([0.1], [0.1], np.zeros((5, 3)), None), "both"),
        (([], [], None, None), "empty"),
        (([0.1, math.nan], [0.1, 0.2], None, None), "non-finite"),
    ],
)
def test_parity_plot_bad_input(tmp_path, args, match):
    with pytest.raises(ValueError, match=match):
        parity_plot(*args, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


# ------------------------------------------------------------------------------------ profiles and MD


def test_energy_profile(tmp_path):
    x = np.linspace(-2, 2, 9)
    out = energy_profile(x, 1.0 + 0.02 * x**2, 1.1 + 0.021 * x**2, tmp_path / "e.png", "strain (%)", title="EOS")
    check_png(out, 600, 450)
    with pytest.raises(ValueError, match="mismatched lengths: x has 9, ref_energy has 9, pred_energy has 8"):
        energy_profile(x, x, x[:-1], tmp_path / "bad.png", "x")


def test_md_energy_plot(tmp_path):
    t = np.linspace(0, 1, 101)
    kin = 1.0 + 0.2 * np.sin(30 * t)
    pot = -50.0 - 0.2 * np.sin(30 * t)
    out = md_energy_plot(t, kin + pot + 1e-4 * t, pot, kin, tmp_path / "md.png", title="NVE")
    check_png(out, 700, 600)
    check_png(md_energy_plot([0.0], [1.0], [0.5], [0.5], tmp_path / "one.png"), 700, 600)
    with pytest.raises(ValueError, match="mismatched lengths"):
        md_energy_plot(t, kin + pot, pot[:50], kin, tmp_path / "bad.png")


def test_bar_chart(tmp_path):
    check_png(bar_chart(["a", "b"], [1.0, 2.0], tmp_path / "b1.png", "RMSE (meV/Å)"), 700, 450)
    series = {"energy": [1.0, 2.0, 3.0], "force": [10.0, 20.0, 30.0]}
    check_png(bar_chart(["train", "valid", "test"], series, tmp_path / "b2.png", logy=True, title="t"), 700, 450)
    with pytest.raises(ValueError, match="mismatched lengths"):
        bar_chart(["a", "b"], {"s": [1.0]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="positive"):
        bar_chart(["a"], [0.0], tmp_path / "bad.png", logy=True)
    with pytest.raises(ValueError, match="no categories"):
        bar_chart([], [], tmp_path / "bad.png")


# ------------------------------------------------------------------------------------ global state


def test_size_ignores_tight_bbox_setting(tmp_path):
    with matplotlib.rc_context({"savefig.bbox": "tight"}):
        out = energy_profile([0, 1, 2], [0.0, 0.1, 0.3], [0.0, 0.1, 0.2], tmp_path / "t.png", "x")
    check_png(out, 600, 450)


def test_no_pyplot_no_backend_change(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.get_backend()\n"
        "from mlip.plots import energy_profile\n"
        f"energy_profile([0, 1], [0.0, 1.0], [0.0, 1.0], {str(tmp_path / 's.png')!r}, 'x')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert matplotlib.get_backend() == before\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MPLBACKEND": "svg"}, timeout=120)
    check_png(tmp_path / "s.png", 600, 450)


# ------------------------------------------------------------------------------- layout: no overlaps


def _capture(monkeypatch) -> list:
    """Keep the figures that mlip.plots saves (the PNG is still written)."""
    import mlip.plot_base
    import mlip.plots
    import mlip.training_plots

    figs: list = []
    real = mlip.plot_base._save

    def keep(fig, path):
        figs.append(fig)
        return real(fig, path)

    for module in (mlip.plots, mlip.training_plots):
        monkeypatch.setattr(module, "_save", keep)
    return figs


def _text_boxes(fig) -> list[tuple[str, object]]:
    """Window extents of every visible tick label, axis label and title, after drawing."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)

        def shown(t, along_x: bool, frame=frame) -> bool:  # tick labels of ticks outside the limits are not drawn
            bb = t.get_window_extent(renderer)
            c = (bb.x0 + bb.x1) / 2 if along_x else (bb.y0 + bb.y1) / 2
            lo, hi = (frame.x0, frame.x1) if along_x else (frame.y0, frame.y1)
            return lo - 1 <= c <= hi + 1

        texts = [t for t in ax.get_xticklabels() if shown(t, True)]
        texts += [t for t in ax.get_yticklabels() if shown(t, False)]
        texts += [ax.xaxis.label, ax.yaxis.label, ax.title, ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
        for t in texts:
            if t.get_visible() and t.get_text().strip():
                boxes.append((t.get_text(), t.get_window_extent(renderer)))
    return boxes


def _assert_no_overlap(fig) -> None:
    boxes = _text_boxes(fig)
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1 :]:
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            assert w <= 0.5 or h <= 0.5, f"labels {a!r} and {b!r} overlap"


def test_parity_tick_labels_never_overlap(tmp_path, monkeypatch):
    """Large absolute energies with a small spread used to give long, overlapping tick labels."""
    figs = _capture(monkeypatch)
    rng = np.random.default_rng(0)
    for centre, spread in ((-1042.1234, 0.004), (-3.7, 0.03), (-155.0, 2.0)):
        ref = rng.normal(centre, spread, 200)
        rf = rng.normal(0.0, 12.0, (600, 3))
        parity_plot(ref, ref + rng.normal(0, spread / 8, 200), rf, rf + 0.2, tmp_path / "p.png", title="t")
        _assert_no_overlap(figs[-1])


def test_learning_curve_has_no_twin_axis_and_no_overlap(tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    learning_curve(log_rows(60), tmp_path / "lc.png", title="training")
    fig = figs[-1]
    _assert_no_overlap(fig)
    boxes = [ax.get_position().bounds for ax in fig.axes]
    assert len(set(boxes)) == len(boxes), "two axes in one place (a twin axis)"
    lr_axes = [ax for ax in fig.axes if ax.get_ylabel() == "learning rate"]
    assert len(lr_axes) == 1 and lr_axes[0].get_yscale() == "log"
    line = lr_axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [r["lr"] for r in log_rows(60)])
