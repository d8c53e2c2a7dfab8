"""GGUF in `load` and `save_gguf`: files written by the `gguf` package's own writer, read as MLX reads them
(plain tensors, Q8_0/Q4_0/Q4_1 as affine quantization, metadata), checked against the gguf package's own
dequantization and against real MLX where installed; kiln's files read back by gguf's reader and by MLX."""

from __future__ import annotations

import kiln.core as mx
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
RNG = np.random.default_rng(0)
QUANT = ["Q8_0", "Q4_0", "Q4_1"]


def _write_with_gguf(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.count", 7)
    writer.add_float32("test.eps", 1.5)
    writer.add_string("test.name", "hello")
    writer.add_array("test.ids", [1, 2, 3])
    writer.add_array("test.words", ["a", "bc"])
    writer.add_tensor("f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.add_tensor("f16", np.arange(4, dtype=np.float16))
    writer.add_tensor("i32", np.arange(4, dtype=np.int32).reshape(2, 1, 2))
    dense = {}
    for name in QUANT:
        w = RNG.standard_normal((4, 64)).astype(np.float32)
        qtype = getattr(gguf.GGMLQuantizationType, name)
        blocks = gguf.quants.quantize(w, qtype)
        writer.add_tensor(name, blocks, raw_shape=blocks.shape, raw_dtype=qtype)
        dense[name] = gguf.quants.dequantize(blocks, qtype)  # the gguf package's own meaning of the blocks
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dense


def test_load_files_written_by_the_gguf_package(tmp_path):
    path = tmp_path / "model.gguf"
    dense = _write_with_gguf(path)
    arrays, metadata = mx.load(str(path), return_metadata=True)
    np.testing.assert_array_equal(np.array(arrays["f32"]), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert arrays["f16"].dtype == mx.float16 and arrays["i32"].shape == (2, 1, 2)
    for name in QUANT:
        w, scales, biases = arrays[name], arrays[name + ".scales"], arrays[name + ".biases"]
        bits = 8 if name == "Q8_0" else 4
        assert w.dtype == mx.uint32 and scales.dtype == mx.float16 and scales.shape == (4, 2)
        back = mx.dequantize(w, scales, biases, group_size=32, bits=bits)
        np.testing.assert_allclose(np.array(back.astype(mx.float32)), dense[name], rtol=1e-3, atol=1e-3)
    assert metadata["test.name"] == "hello" and metadata["test.words"] == ["a", "bc"]
    assert metadata["test.count"].dtype == mx.uint32 and metadata["test.count"].item() == 7
    assert metadata["test.eps"].dtype == mx.float32 and metadata["test.eps"].item() == 1.5
    np.testing.assert_array_equal(np.array(metadata["test.ids"]), [1, 2, 3])
    assert metadata["general.architecture"] == "llama"


def test_load_matches_mlx(tmp_path):
    mlx = pytest.importorskip("mlx.core")
    path = tmp_path / "model.gguf"
    _write_with_gguf(path)
    ours, our_meta = mx.load(str(path), return_metadata=True)
    theirs, their_meta = mlx.load(str(path), return_metadata=True)
    assert sorted(ours) == sorted(theirs) and sorted(our_meta) == sorted(their_meta)
    for name in theirs:
        assert str(ours[name].dtype).split(".")[-1] == str(theirs[name].dtype).split(".")[-1], name
        np.testing.assert_array_equal(np.array(ours[name]), np.array(theirs[name]), err_msg=name)
    for key, value in their_meta.items():
        if isinstance(value, (str, list)):
            assert our_meta[key] == value
        else:
            np.testing.assert_array_equal(np.array(our_meta[key]), np.array(value))


def test_save_gguf_round_trip_and_gguf_reader(tmp_path):
    arrays = {"w": mx.array(RNG.standard_normal((3, 4)).astype(np.float32)),
              "h": mx.array([1.5, -2.0], mx.float16), "b": mx.array([[0.5, 1.0]], mx.bfloat16),
              "n": mx.array([1, 2, 3], mx.int64)}
    metadata = {"m.s": "text", "m.list": ["x", "y"], "m.scalar": mx.array(3, mx.int32),
                "m.vec": mx.array([1.0, 2.0])}
    mx.save_gguf(str(tmp_path / "out"), arrays, metadata)
    back, meta = mx.load(str(tmp_path / "out.gguf"), return_metadata=True)
    for name, a in arrays.items():
        assert back[name].dtype == a.dtype and back[name].shape == a.shape
        np.testing.assert_array_equal(np.array(back[name].astype(mx.float32)), np.array(a.astype(mx.float32)))
    assert meta["m.s"] == "text" and meta["m.list"] == ["x", "y"] and "general.architecture" not in meta
    assert meta["m.scalar"].dtype == mx.int32 and meta["m.scalar"].item() == 3
    np.testing.assert_array_equal(np.array(meta["m.vec"]), [1.0, 2.0])
    reader = gguf.GGUFReader(str(tmp_path / "out.gguf"))
    by_name = {t.name: t for t in reader.tensors}
    np.testing.assert_array_equal(np.asarray(by_name["w"].data).reshape(3, 4), np.array(arrays["w"]))


def test_kiln_gguf_files_load_in_mlx(tmp_path):
    mlx = pytest.importorskip("mlx.core")
    w = RNG.standard_normal((2, 5)).astype(np.float32)
    mx.save_gguf(str(tmp_path / "k.gguf"), {"w": mx.array(w)}, {"note": "kiln"})
    arrays, metadata = mlx.load(str(tmp_path / "k.gguf"), return_metadata=True)
    np.testing.assert_array_equal(np.array(arrays["w"]), w)
    assert metadata["note"] == "kiln"


def test_gguf_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(10))
    with pytest.raises(RuntimeError, match=r"\[load_gguf\]"):  # as MLX
        mx.load(str(bad))
    with pytest.raises(RuntimeError, match=r"\[load\] Failed to open"):
        mx.load(str(tmp_path / "missing.gguf"))
    with pytest.raises(ValueError, match=r"\[save_gguf\] Array 'c' has type complex64"):
        mx.save_gguf(str(tmp_path / "c.gguf"), {"c": mx.array([1 + 1j])})
