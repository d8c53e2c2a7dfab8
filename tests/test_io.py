"""save / load in MLX's formats (.npy, .npz, .safetensors): round trips, numpy interop, MLX interop."""

import io

import kiln.core as mx
import numpy as np
import pytest

DTYPES = [mx.float32, mx.float16, mx.bfloat16, mx.int8, mx.int32, mx.int64, mx.uint16, mx.uint64, mx.bool_,
          mx.complex64]


def _sample(dtype):
    values = np.arange(-3, 3).reshape(2, 3)
    if dtype == mx.complex64:
        return mx.array(values + 1j * values[::-1], mx.complex64)
    return mx.array(values, dtype)


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert mx.array_equal(a, b, equal_nan=True).item()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_npy_round_trip_appends_suffix(tmp_path, dtype):
    a = _sample(dtype)
    mx.save(tmp_path / "x", a)
    assert (tmp_path / "x.npy").exists()
    _same(mx.load(tmp_path / "x.npy"), a)


def test_npy_interoperates_with_numpy(tmp_path):
    np.save(tmp_path / "f64.npy", np.arange(3.0))
    loaded = mx.load(str(tmp_path / "f64.npy"))
    assert loaded.dtype == mx.float64  # the file's dtype, not array()'s float32 default
    mx.save(str(tmp_path / "k.npy"), mx.array([[1.5, 2.0]]))
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), np.array([[1.5, 2.0]], np.float32))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip_names(tmp_path, compressed):
    save = mx.savez_compressed if compressed else mx.savez
    a, b = _sample(mx.bfloat16), _sample(mx.int32)
    save(tmp_path / "w", a, bias=b)
    loaded = mx.load(tmp_path / "w.npz")
    assert sorted(loaded) == ["arr_0", "bias"]
    _same(loaded["arr_0"], a)
    _same(loaded["bias"], b)
    with np.load(tmp_path / "w.npz") as archive:
        np.testing.assert_array_equal(archive["bias"], np.array(b))


def test_savez_refuses_clashing_names(tmp_path):
    with pytest.raises(ValueError, match=r"^\[savez\]"):
        mx.savez(tmp_path / "w", mx.ones(2), arr_0=mx.ones(2))


@pytest.mark.parametrize("dtype", [d for d in DTYPES], ids=lambda d: d.name)
def test_safetensors_round_trip_with_metadata(tmp_path, dtype):
    a = _sample(dtype)
    mx.save_safetensors(tmp_path / "m", {"w": a, "s": mx.array(2.0)}, metadata={"format": "mlx"})
    arrays, metadata = mx.load(tmp_path / "m.safetensors", return_metadata=True)
    _same(arrays["w"], a)
    _same(arrays["s"], mx.array(2.0))
    assert metadata == {"format": "mlx"}
    assert sorted(mx.load(tmp_path / "m.safetensors")) == ["s", "w"]


def test_file_objects_need_a_format():
    buffer = io.BytesIO()
    mx.save(buffer, mx.array([1, 2]))
    buffer.seek(0)
    _same(mx.load(buffer, format="npy"), mx.array([1, 2]))
    buffer.seek(0)
    with pytest.raises(ValueError, match=r"^\[load\]"):
        mx.load(buffer)


def test_load_errors(tmp_path):
    with pytest.raises(RuntimeError, match=r"^\[load\] Failed to open file"):
        mx.load(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"^\[load\] Unknown file format foo"):
        mx.load(tmp_path / "x.foo")
    mx.save(tmp_path / "x", mx.ones(2))
    with pytest.raises(ValueError, match=r"^\[load\] metadata not supported for format npy"):
        mx.load(tmp_path / "x.npy", return_metadata=True)
    with pytest.raises(ValueError, match=r"^\[save_safetensors\]"):
        mx.save_safetensors(tmp_path / "m", {"w": mx.ones(2)}, metadata={"k": 1})
    with pytest.raises(ValueError, match=r"^\[save_gguf\] Metadata value"):
        mx.save_gguf(tmp_path / "g", {"w": mx.ones(2)}, {"k": 1.5})


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors"])
def test_files_interchange_with_mlx(tmp_path, fmt):
    mlx = pytest.importorskip("mlx.core")
    ours = mx.array([[1.5, -2.25]], mx.bfloat16)
    theirs = mlx.array([[1.5, -2.25]], mlx.bfloat16)
    writers = {
        "npy": (lambda p: mx.save(p, ours), lambda p: mlx.save(p, theirs)),
        "npz": (lambda p: mx.savez(p, w=ours), lambda p: mlx.savez(p, w=theirs)),
        "safetensors": (lambda p: mx.save_safetensors(p, {"w": ours}), lambda p: mlx.save_safetensors(p, {"w": theirs})),
    }
    write_ours, write_theirs = writers[fmt]
    write_ours(str(tmp_path / "ours"))
    write_theirs(str(tmp_path / "theirs"))
    read_by_mlx = mlx.load(str(tmp_path / f"ours.{fmt}"))
    read_by_kiln = mx.load(str(tmp_path / f"theirs.{fmt}"))
    if fmt != "npy":
        read_by_mlx, read_by_kiln = read_by_mlx["w"], read_by_kiln["w"]
    assert read_by_mlx.dtype == mlx.bfloat16
    np.testing.assert_array_equal(np.array(read_by_mlx.astype(mlx.float32)), [[1.5, -2.25]])
    _same(read_by_kiln, ours)
