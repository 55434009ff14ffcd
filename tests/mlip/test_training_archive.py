"""mlip.archive: the one ``.npz`` + ``__meta__`` writer/reader (atomic, pickle-free) used by checkpoints."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlip.archive import ArchiveError, atomic_write_text, read_archive, write_archive
from mlip.training import TrainingError, load_checkpoint


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8]),
    seed=st.integers(0, 2**31),
    number=st.floats(allow_nan=False, allow_infinity=False),
)
def test_round_trip_of_arrays_and_metadata(tmp_path_factory, shape, dtype, seed, number):
    path = tmp_path_factory.mktemp("a") / "x.npz"
    a = (np.random.default_rng(seed).normal(size=shape) * 100).astype(dtype)
    meta = {"n": np.int64(3), "t": (1, 2), "x": number, "s": "é"}
    write_archive(path, meta, {"a": a, "b": np.arange(3.0)})
    back_meta, arrays = read_archive(path)
    assert back_meta == {"n": 3, "t": [1, 2], "x": number, "s": "é"}
    assert arrays["a"].dtype == a.dtype and np.array_equal(arrays["a"], a)
    assert set(arrays) == {"a", "b"}
    with zipfile.ZipFile(path) as z:  # plain .npy members, metadata as uint8 JSON
        assert sorted(z.namelist()) == ["__meta__.npy", "a.npy", "b.npy"]


def test_writing_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "f.npz"
    write_archive(path, {"v": 1}, {"a": np.zeros(2)})
    good = path.read_bytes()

    def broken(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        write_archive(path, {"v": 2}, {"a": np.ones(5)})
    assert path.read_bytes() == good and not list(tmp_path.glob("*.tmp"))
    atomic_write_text(tmp_path / "t.txt", "hello\n")
    assert (tmp_path / "t.txt").read_text() == "hello\n"


def test_reserved_name_missing_file_and_folder(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        write_archive(tmp_path / "x.npz", {}, {"__meta__": np.zeros(1)})
    with pytest.raises(FileNotFoundError, match="no model file at"):
        read_archive(tmp_path / "none.npz", "model file")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        read_archive(tmp_path, "checkpoint")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not a zip"), "not a readable checkpoint"),
        (lambda p: np.savez(p, a=np.zeros(2)), r"not a checkpoint \(no metadata\)"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros(2)) or p.with_suffix(".npy").rename(p), "no metadata"),
        (lambda p: np.savez(p, __meta__=np.frombuffer(b"{not json", np.uint8)), "not a readable checkpoint"),
        (lambda p: np.savez(p, __meta__=np.frombuffer(json.dumps([1]).encode(), np.uint8)), "not a JSON object"),
    ],
)
def test_foreign_files_are_clear_errors(tmp_path, make, message):
    path = tmp_path / "c.npz"
    make(path)
    with pytest.raises(ArchiveError, match=message):
        read_archive(path, "checkpoint")
    with pytest.raises(TrainingError, match=message):  # the checkpoint reader raises its own error type
        load_checkpoint(path)


def test_the_model_file_messages_of_mlip_model_are_kept(tmp_path):
    """What :func:`mlip.model.load_model` says today, from the shared reader (the lead's port keeps them)."""
    np.savez(tmp_path / "m.npz", w=np.zeros(2))
    with pytest.raises(ValueError, match=r"m\.npz is not a cartesian-irreps model file \(no metadata\)"):
        read_archive(tmp_path / "m.npz", "model file", error=ValueError, identity="cartesian-irreps model file")
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"t\.npz is not a readable model file \(truncated or foreign\)"):
        read_archive(tmp_path / "t.npz", "model file", error=ValueError, identity="cartesian-irreps model file")


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, __meta__=np.frombuffer(b"{}", np.uint8), evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArchiveError, match="not a readable"):
        read_archive(path)
