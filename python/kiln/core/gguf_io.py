"""GGUF files (llama.cpp's format) for `load` and `save_gguf`, read and written with the `gguf` package.

Loading follows MLX: plain tensors keep their type; Q8_0, Q4_0 and Q4_1 blocks become MLX's affine
quantization (group size 32) as three arrays, `name`, `name.scales` and `name.biases`, ready for
`dequantize` and `quantized_matmul`; metadata values become 0-d or 1-d arrays, strings or lists of strings.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array

_BLOCK = 32  # elements per Q8_0 / Q4_0 / Q4_1 block, which is MLX's group size for them


def _gguf():
    try:
        import gguf
    except ModuleNotFoundError:
        raise ModuleNotFoundError("[gguf] Reading and writing GGUF files needs the `gguf` package "
                                  "(pip install gguf).") from None
    return gguf


def _plain_types(gguf) -> dict:
    t = gguf.GGMLQuantizationType
    return {t.F32: dt.float32, t.F16: dt.float16, t.BF16: dt.bfloat16, t.F64: dt.float64, t.I8: dt.int8,
            t.I16: dt.int16, t.I32: dt.int32, t.I64: dt.int64}


# -- loading --------------------------------------------------------------------------------------------------
def _affine(codes: np.ndarray, bits: int, scales: np.ndarray, biases: np.ndarray) -> tuple:
    """MLX's affine layout from per-element codes (rows, K): codes packed into uint32 words lowest first."""
    rows = codes.shape[0]
    if bits == 8:
        words = codes.astype(np.uint8).reshape(rows, -1).view(np.uint32)
    else:
        pairs = codes.astype(np.uint8).reshape(rows, -1, 2)
        words = (pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8).view(np.uint32)
    return words, scales.astype(np.float16), biases.astype(np.float16)


def _blocks(data: np.ndarray, rows: int, block_bytes: int) -> np.ndarray:
    return np.ascontiguousarray(data).view(np.uint8).reshape(rows, -1, block_bytes)


def _q8_0(data, rows):
    b = _blocks(data, rows, 2 + _BLOCK)
    d = b[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    q = b[..., 2:].view(np.int8).astype(np.int16).reshape(rows, -1)
    return _affine(q + 128, 8, d, -128 * d)


def _nibbles(b: np.ndarray, rows: int) -> np.ndarray:
    # GGML stores element j of a block in the low nibble of byte j and element j + 16 in its high nibble
    packed = b[..., -16:]
    return np.concatenate([packed & 0x0F, packed >> 4], axis=-1).reshape(rows, -1)


def _q4_0(data, rows):
    b = _blocks(data, rows, 2 + 16)
    d = b[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    return _affine(_nibbles(b, rows), 4, d, -8 * d)


def _q4_1(data, rows):
    b = _blocks(data, rows, 4 + 16)
    d = b[..., :2].copy().view(np.float16)[..., 0]
    m = b[..., 2:4].copy().view(np.float16)[..., 0]
    return _affine(_nibbles(b, rows), 4, d, m)


def _metadata_value(gguf, field):
    main = field.types[0]
    value = field.contents()
    if main == gguf.GGUFValueType.STRING:
        return value
    if main == gguf.GGUFValueType.ARRAY:
        if field.types[-1] == gguf.GGUFValueType.STRING:
            return list(value)
        part = field.parts[field.data[0]] if field.data else np.zeros((0,), np.int32)
        return array(np.asarray(value, dtype=part.dtype) if field.data else part)
    raw = field.parts[field.data[0]]
    return array(np.asarray(raw[0], dtype=raw.dtype))


def load_gguf(file) -> tuple:
    """(arrays, metadata) of a GGUF file (a path or a readable binary file)."""
    gguf = _gguf()
    if hasattr(file, "read"):
        with tempfile.NamedTemporaryFile(suffix=".gguf", delete=False) as tmp:
            tmp.write(file.read())
        try:
            return load_gguf(tmp.name)
        finally:
            os.unlink(tmp.name)
    try:
        reader = gguf.GGUFReader(os.fspath(file), "r")
    except OSError:
        raise RuntimeError(f"[load] Failed to open file {os.fspath(file)}") from None
    except (ValueError, IndexError, KeyError, TypeError) as e:  # the gguf parser's errors on malformed files
        raise RuntimeError(f"[load_gguf] Invalid GGUF file {os.fspath(file)}: {e}") from None
    plain = _plain_types(gguf)
    quantized = {gguf.GGMLQuantizationType.Q8_0: _q8_0, gguf.GGMLQuantizationType.Q4_0: _q4_0,
                 gguf.GGMLQuantizationType.Q4_1: _q4_1}
    arrays = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # GGML lists the fastest axis first
        if t.tensor_type in plain:
            d = plain[t.tensor_type]
            data = np.ascontiguousarray(t.data).view(np.uint8)
            arrays[t.name] = array._from_numpy(data.view(d.np).reshape(shape).copy(), d)
        elif t.tensor_type in quantized:
            rows = int(np.prod(shape[:-1], dtype=np.int64))
            words, scales, biases = quantized[t.tensor_type](t.data, rows)
            lead = shape[:-1]
            arrays[t.name] = array(words.reshape(lead + words.shape[-1:]))
            arrays[t.name + ".scales"] = array(scales.reshape(lead + scales.shape[-1:]))
            arrays[t.name + ".biases"] = array(biases.reshape(lead + biases.shape[-1:]))
        else:
            raise ValueError(f"[load_gguf] Tensor type {t.tensor_type.name} of '{t.name}' is not supported "
                             "(supported: F32, F16, BF16, F64, I8, I16, I32, I64, Q8_0, Q4_0, Q4_1).")
    metadata = {name: _metadata_value(gguf, field) for name, field in reader.fields.items()
                if not name.startswith("GGUF.")}
    return arrays, metadata


# -- saving ---------------------------------------------------------------------------------------------------
# kiln dtype name -> GGUF metadata value type name
_METADATA_TYPES = {"uint8": "UINT8", "int8": "INT8", "uint16": "UINT16", "int16": "INT16", "uint32": "UINT32",
                   "int32": "INT32", "uint64": "UINT64", "int64": "INT64", "float32": "FLOAT32",
                   "float64": "FLOAT64", "bool": "BOOL"}

def _add_metadata(gguf, writer, key: str, value):
    if isinstance(value, str):
        writer.add_string(key, value)
        return
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        writer.add_array(key, list(value))
        return
    if not isinstance(value, array):
        message = f"must be an array, a string or a list of strings, got {type(value).__name__}"
        raise ValueError(f"[save_gguf] Metadata value of '{key}' {message}.")  # noqa: TRY004
    data = value._numpy()
    vtype = getattr(gguf.GGUFValueType, _METADATA_TYPES.get(value.dtype.name, ""), None)
    if vtype is None or data.ndim > 1:
        raise ValueError(f"[save_gguf] Metadata array '{key}' must be a scalar or 1-D array of a type GGUF "
                         f"metadata holds (integers, float32, float64, bool), got {value.dtype.name}.")
    if data.ndim == 0:
        writer.add_key_value(key, data.item(), vtype)
    else:
        writer.add_key_value(key, data.tolist(), gguf.GGUFValueType.ARRAY, sub_type=vtype)


def save_gguf(path: str, arrays: dict, metadata: dict | None) -> None:
    """Write `arrays` and `metadata` to the GGUF file at `path`."""
    gguf = _gguf()
    if not isinstance(arrays, dict):
        raise TypeError("[save_gguf] arrays must be a dictionary of names to arrays.")
    metadata = dict(metadata or {})
    types = {d: t for t, d in _plain_types(gguf).items()}
    arch = metadata.get("general.architecture")
    writer = gguf.GGUFWriter(path, arch if isinstance(arch, str) else "")
    if not isinstance(arch, str):
        # the writer always records an architecture; MLX writes only the metadata it is given
        writer.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)
    for key, value in metadata.items():
        if key != "general.architecture" or not isinstance(value, str):
            _add_metadata(gguf, writer, key, value)
    for name, a in arrays.items():
        a = a if isinstance(a, array) else ops.to_array(a, op="save_gguf")
        if a.dtype not in types:
            raise ValueError(f"[save_gguf] Array '{name}' has type {a.dtype.name}, which GGUF cannot store.")
        data = np.asarray(a._numpy(), order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        if a.dtype == dt.bfloat16:  # numpy has no bfloat16: hand the writer the bytes, whose shape it converts
            raw = data.view(np.uint8)
            writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=types[a.dtype])
        else:
            writer.add_tensor(name, data, raw_dtype=types[a.dtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
