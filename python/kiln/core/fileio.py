"""Saving and loading arrays in MLX's file formats: `.npy`, `.npz` (numpy), `.safetensors` and `.gguf`
(gguf_io.py).

Files are interchangeable with MLX's: bfloat16, which numpy has no name for, is stored in `.npy`/`.npz` as
the 2-byte void type `<V2` (as MLX writes it) and in safetensors as `BF16`.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile

import numpy as np
import safetensors

from . import dtypes as dt
from . import gguf_io, ops
from .array import array

__all__ = ["load", "save", "save_gguf", "save_safetensors", "savez", "savez_compressed"]

_BF16_STORAGE = np.dtype("V2")
_SAFETENSORS_DTYPES = {
    "F64": dt.float64, "F32": dt.float32, "F16": dt.float16, "BF16": dt.bfloat16, "I64": dt.int64,
    "I32": dt.int32, "I16": dt.int16, "I8": dt.int8, "U64": dt.uint64, "U32": dt.uint32, "U16": dt.uint16,
    "U8": dt.uint8, "BOOL": dt.bool_, "C64": dt.complex64,
}


# -- conversions -------------------------------------------------------------------------------------
def _to_storage(op: str, a) -> np.ndarray:
    """The numpy array to write for `a` (bfloat16 as raw 2-byte voids)."""
    if not isinstance(a, array):
        a = ops.to_array(a, op=op)
    data = np.asarray(a._numpy(), order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    if a.dtype == dt.bfloat16:
        return data.view(_BF16_STORAGE)
    return data


def _from_storage(data: np.ndarray) -> array:
    """A kiln array of the stored dtype (no float64 -> float32 narrowing, unlike `array(...)`)."""
    data = np.asarray(data)
    if data.dtype.kind == "V" and data.dtype.itemsize == 2:
        return array._from_numpy(np.ascontiguousarray(data).view(dt.bfloat16.np), dt.bfloat16)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    try:
        d = dt.from_numpy(data.dtype)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"[load] Unsupported dtype {data.dtype} in file.") from None
    return array._from_numpy(np.array(data), d)


# -- paths -------------------------------------------------------------------------------------------
def _is_path(file) -> bool:
    return isinstance(file, (str, os.PathLike))


def _with_suffix(file, suffix: str):
    """MLX appends the format's extension to a path that lacks it."""
    if not _is_path(file):
        return file
    path = os.fspath(file)
    return path if path.endswith(suffix) else path + suffix


def _open_for_write(op: str, file, suffix: str):
    target = _with_suffix(file, suffix)
    if _is_path(target):
        return open(target, "wb"), True
    if not hasattr(target, "write"):
        raise TypeError(f"[{op}] file must be a path or a writable binary file, got {type(file).__name__}.")
    return target, False


def _write(op: str, file, suffix: str, writer):
    handle, owned = _open_for_write(op, file, suffix)
    try:
        writer(handle)
    finally:
        if owned:
            handle.close()


# -- save ---------------------------------------------------------------------------------------------
def save(file, arr) -> None:
    """Save the array to a binary file in ``.npy`` format.

    Args:
        file (str, pathlib.Path, file): File to which the array is saved; ``.npy`` is appended to a path
          without it.
        arr (array): Array to be saved.

    Returns:
        None
    """
    data = _to_storage("save", arr)
    _write("save", file, ".npy", lambda handle: np.save(handle, data, allow_pickle=False))


def _npz_members(op: str, args, kwargs) -> dict:
    members = {}
    for i, a in enumerate(args):
        name = f"arr_{i}"
        if name in kwargs:
            raise ValueError(f"[{op}] Cannot use un-named variables and keyword {name}")
        members[name] = _to_storage(op, a)
    for name, a in kwargs.items():
        members[name] = _to_storage(op, a)
    return members


def _savez(op: str, file, args, kwargs, compression: int):
    members = _npz_members(op, args, kwargs)

    def writer(handle):
        with zipfile.ZipFile(handle, mode="w", compression=compression, allowZip64=True) as archive:
            for name, data in members.items():
                with archive.open(name + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, data, allow_pickle=False)

    _write(op, file, ".npz", writer)


def savez(file, *args, **kwargs) -> None:
    """Save several arrays to a binary file in uncompressed ``.npz`` format.

    Args:
        file (str, pathlib.Path, file): Path to file to which the arrays are saved.
        *args (arrays): Arrays to be saved, named ``arr_0``, ``arr_1``, ...
        **kwargs (arrays): Arrays to be saved under their keyword names.

    Returns:
        None
    """
    _savez("savez", file, args, kwargs, zipfile.ZIP_STORED)


def savez_compressed(file, *args, **kwargs) -> None:
    """Save several arrays to a binary file in compressed ``.npz`` format.

    Args:
        file (str, pathlib.Path, file): Path to file to which the arrays are saved.
        *args (arrays): Arrays to be saved, named ``arr_0``, ``arr_1``, ...
        **kwargs (arrays): Arrays to be saved under their keyword names.

    Returns:
        None
    """
    _savez("savez_compressed", file, args, kwargs, zipfile.ZIP_DEFLATED)


def _check_metadata(metadata) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or any(not isinstance(k, str) or not isinstance(v, str)
                                             for k, v in metadata.items()):
        raise ValueError("[save_safetensors] Metadata must be a dictionary with string keys and values")
    return dict(metadata)


def save_safetensors(file, arrays: dict, metadata: dict | None = None) -> None:
    """Save array(s) to a binary file in ``.safetensors`` format.

    Args:
        file (str, pathlib.Path, file): File in which the arrays are saved; ``.safetensors`` is appended to a
          path without it.
        arrays (dict(str, array)): The dictionary of names to arrays to be saved.
        metadata (dict(str, str), optional): The dictionary of metadata to be saved.

    Returns:
        None
    """
    if not isinstance(arrays, dict):
        raise TypeError("[save_safetensors] arrays must be a dictionary of names to arrays.")
    metadata = _check_metadata(metadata)
    buffers = {}
    specs = {}
    for name, a in arrays.items():
        a = a if isinstance(a, array) else ops.to_array(a, op="save_safetensors")
        if a.dtype == dt.float64:
            raise ValueError("[save_safetensors] received invalid dtype.")
        data = np.asarray(a._numpy(), order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        buffers[name] = data  # the spec holds a raw pointer: keep the buffer alive until serialized
        specs[name] = safetensors.TensorSpec(dtype=a.dtype.name, shape=list(data.shape),
                                             data_ptr=data.ctypes.data, data_len=data.nbytes)
    blob = bytes(safetensors.serialize(specs, metadata=metadata))
    del buffers
    _write("save_safetensors", file, ".safetensors", lambda handle: handle.write(blob))


def save_gguf(file, arrays: dict, metadata: dict | None = None) -> None:
    """Save array(s) to a binary file in ``.gguf`` format (written with the ``gguf`` package).

    Args:
        file (str, pathlib.Path): File in which the arrays are saved; ``.gguf`` is appended to a path
          without it.
        arrays (dict(str, array)): The dictionary of names to arrays to be saved.
        metadata (dict(str, Union[array, str, list(str)]), optional): Metadata: scalars or 1-D arrays,
          strings, or lists of strings.

    Returns:
        None
    """
    if not _is_path(file):
        raise TypeError("[save_gguf] file must be a path.")
    gguf_io.save_gguf(os.fspath(_with_suffix(file, ".gguf")), arrays, metadata)


# -- load ---------------------------------------------------------------------------------------------
def _read_bytes(file) -> bytes:
    if _is_path(file):
        try:
            with open(file, "rb") as handle:
                return handle.read()
        except OSError:
            raise RuntimeError(f"[load] Failed to open file {os.fspath(file)}") from None
    if not hasattr(file, "read"):
        raise TypeError(f"[load] file must be a path or a readable binary file, got {type(file).__name__}.")
    return file.read()


def _infer_format(file, fmt) -> str:
    if fmt is not None:
        return str(fmt).lstrip(".")
    name = os.fspath(file) if _is_path(file) else getattr(file, "name", None)
    if not isinstance(name, str):
        raise ValueError("[load] Cannot infer the format of a file object without a name; pass format=.")  # noqa: TRY004
    suffix = pathlib.Path(name).suffix
    if not suffix:
        raise ValueError(f"[load] Could not infer file format from extension of {name}; pass format=.")
    return suffix[1:]


def _load_npy(raw: bytes):
    import io

    try:
        return _from_storage(np.load(io.BytesIO(raw), allow_pickle=False))
    except (ValueError, EOFError, OSError) as e:  # numpy's errors for a damaged file; MLX raises RuntimeError
        raise RuntimeError(f"[load] Invalid .npy file: {e}") from None


def _load_npz(raw: bytes) -> dict:
    import io

    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            return {name: _from_storage(archive[name]) for name in archive.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise RuntimeError(f"[load] Invalid .npz file: {e}") from None


def _load_safetensors(raw: bytes):
    try:
        entries = safetensors.deserialize(raw)
    except safetensors.SafetensorError as e:
        raise RuntimeError(f"[load] Invalid safetensors file: {e}") from None
    out = {}
    for name, entry in entries:
        d = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if d is None:
            raise ValueError(f"[load] Unsupported safetensors dtype {entry['dtype']} for {name}.")
        data = np.frombuffer(bytes(entry["data"]), dtype=d.np).reshape(entry["shape"])
        out[name] = array._from_numpy(np.array(data), d)
    header_size = int.from_bytes(raw[:8], "little")
    metadata = json.loads(raw[8:8 + header_size]).get("__metadata__", {}) or {}
    return out, metadata


def load(file, /, format: str | None = None, return_metadata: bool = False, *, stream=None):
    """Load array(s) from a binary file.

    The supported formats are ``.npy``, ``.npz``, ``.safetensors`` and ``.gguf``.

    Args:
        file (file, str, pathlib.Path): File from which to load.
        format (str, optional): ``"npy"``, ``"npz"``, ``"safetensors"`` or ``"gguf"``; ``None`` infers it from the
          file extension. Default: ``None``.
        return_metadata (bool, optional): Also return the file's metadata (safetensors and gguf).
          Default: ``False``.

    Returns:
        array, dict, or tuple: An array for ``.npy``, a dict of names to arrays for ``.npz`` and
        ``.safetensors``; with ``return_metadata`` a tuple ``(arrays, metadata)``.
    """
    fmt = _infer_format(file, format)
    if fmt == "gguf":
        arrays, metadata = gguf_io.load_gguf(file)
        return (arrays, metadata) if return_metadata else arrays
    if fmt not in ("npy", "npz", "safetensors"):
        raise ValueError(f"[load] Unknown file format {fmt}")
    if return_metadata and fmt != "safetensors":
        raise ValueError(f"[load] metadata not supported for format {fmt}")
    raw = _read_bytes(file)
    if fmt == "npy":
        return _load_npy(raw)
    if fmt == "npz":
        return _load_npz(raw)
    arrays, metadata = _load_safetensors(raw)
    return (arrays, metadata) if return_metadata else arrays
