"""kiln's exported-function file format: traced Graphs (one or more, shapeless or not) with their argument
signatures and constants, written and read back with every size and reference checked.

Layout (all integers little-endian):

    offset  size  field
    0       8     magic b"KILNFN\\r\\n"  (the CR LF catches files mangled by text-mode transfers)
    8       4     format version (uint32), FORMAT_VERSION
    12      8     header length H (uint64)
    20      8     payload length P (uint64)
    28      4     CRC-32 of the H + P bytes that follow (uint32)
    32      H     header: UTF-8 JSON, described below
    32 + H  P     payload: constant buffers, raw bytes, each starting at a multiple of 16

The file is exactly 32 + H + P bytes. The header holds {"kiln": writer version, "metadata": str or null,
"buffers": [[offset, nbytes], ...], "traces": [trace, ...]}; a trace is {"shapeless": bool, "args":
[[shape, dtype], ...], "kwargs": [name, ...], "graph": graph}, its inputs being the positional arguments then
the keyword arguments in that order. A graph is {"vars": [[shape, dtype], ...], "inputs": [var, ...],
"consts": [[var, buffer], ...], "eqns": [[primitive, [ref, ...], params, var], ...], "outputs": [ref, ...]}
where a var is an index into "vars", defined exactly once before it is read, and a ref is a var or a literal
{"lit": value, "dtype": name}. Params and literal values are JSON with tags for what JSON lacks: {"tuple":
[...]}, {"dtype": name}, {"complex": [re, im]}, {"float": "nan" | "inf" | "-inf"}. Identical constant
buffers are stored once. Reading checks the magic, version, sizes and checksum, then every index, type and
shape, and re-runs each equation's shape rule: a damaged file raises ValueError, never a crash.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib

import numpy as np

from . import dtypes as dt
from .graph import Eqn, Graph, Lit, Var
from .primitives import REGISTRY

MAGIC = b"KILNFN\r\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQQI")  # magic, version, header length, payload length, crc32
_ALIGN = 16
# Primitives whose params hold Python objects (a user's function, a fused region): not exportable.
_NOT_EXPORTABLE = ("custom", "fused")


class FormatError(ValueError):
    """A file that is not a valid kiln function file (truncated, corrupted, or of another format)."""


# -- writing --------------------------------------------------------------------------------------------------
def _encode_value(value, what: str):
    """JSON form of a param or literal value; tags keep tuples, dtypes, complex and non-finite floats."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(value, (complex, np.complexfloating)):
        return {"complex": [_encode_value(value.real, what), _encode_value(value.imag, what)]}
    if isinstance(value, dt.Dtype):
        return {"dtype": value.name}
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v, what) for v in value]}
    if isinstance(value, list):
        return [_encode_value(v, what) for v in value]
    raise ValueError(f"[export_function] Cannot export {what}: a value of type {type(value).__name__}.")


class _Buffers:
    """The payload: constant buffers, each stored once however many traces read it."""

    def __init__(self):
        self.chunks, self.index, self.table, self.size = [], {}, [], 0

    def add(self, data: np.ndarray) -> int:
        raw = np.ascontiguousarray(data).tobytes()
        key = (len(raw), zlib.crc32(raw), raw)
        if key not in self.index:
            pad = -self.size % _ALIGN
            self.chunks.append(b"\0" * pad + raw)
            self.size += pad
            self.table.append([self.size, len(raw)])
            self.size += len(raw)
            self.index[key] = len(self.table) - 1
        return self.index[key]


def _encode_graph(graph: Graph, buffers: _Buffers) -> dict:
    ids, shapes = {}, []

    def define(v: Var) -> int:
        ids[id(v)] = len(shapes)
        shapes.append([list(v.shape), v.dtype.name])
        return ids[id(v)]

    def ref(v):
        if isinstance(v, Lit):
            return {"lit": _encode_value(v.value, "a literal"), "dtype": v.dtype.name}
        return ids[id(v)]

    inputs = [define(v) for v in graph.inputs]
    consts = [[define(v), buffers.add(value)] for v, value in zip(graph.consts, graph.const_values)]
    eqns = []
    for e in graph.eqns:
        if e.prim in _NOT_EXPORTABLE:
            raise ValueError(f"[export_function] Cannot export the primitive '{e.prim}' (it holds Python objects, "
                             "e.g. a custom_function's rules).")
        params = {k: _encode_value(v, f"parameter '{k}' of {e.prim}") for k, v in e.params.items()}
        eqns.append([e.prim, [ref(v) for v in e.inputs], params, None])
        eqns[-1][3] = define(e.out)
    outputs = [ref(v) for v in graph.outputs]
    return {"vars": shapes, "inputs": inputs, "consts": consts, "eqns": eqns, "outputs": outputs}


def encode(traces: list, metadata: str | None) -> bytes:
    """The file's bytes for `traces`: dicts with graph, shapeless, kwargs (the input names after the positional
    ones) and args (input count minus kwargs)."""
    if sys.byteorder != "little":
        raise RuntimeError("[export_function] Exporting is supported on little-endian machines only.")
    from .. import __version__

    buffers = _Buffers()
    encoded = []
    for t in traces:
        graph = t["graph"]
        n_pos = len(graph.inputs) - len(t["kwargs"])
        encoded.append({"shapeless": bool(t["shapeless"]), "kwargs": list(t["kwargs"]),
                        "args": [[list(v.shape), v.dtype.name] for v in graph.inputs[:n_pos]],
                        "graph": _encode_graph(graph, buffers)})
    header = json.dumps({"kiln": __version__, "metadata": metadata, "buffers": buffers.table, "traces": encoded},
                        separators=(",", ":")).encode()
    payload = b"".join(buffers.chunks)
    crc = zlib.crc32(payload, zlib.crc32(header))
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), len(payload), crc) + header + payload


# -- reading --------------------------------------------------------------------------------------------------
def _fail(message: str):
    raise FormatError(message)


def _expect(cond: bool, message: str):
    if not cond:
        _fail(message)


def _decode_value(value):
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    _expect(isinstance(value, dict) and len(value) == 1, f"malformed value {str(value)[:60]}")
    (tag, inner), = value.items()
    if tag == "tuple":
        _expect(isinstance(inner, list), "malformed tuple")
        return tuple(_decode_value(v) for v in inner)
    if tag == "dtype":
        return _dtype(inner)
    if tag == "float":
        _expect(inner in ("nan", "inf", "-inf"), f"malformed float {str(inner)[:20]}")
        return float(inner)
    if tag == "complex":
        _expect(isinstance(inner, list) and len(inner) == 2, "malformed complex value")
        re, im = (_decode_value(v) for v in inner)
        _expect(all(isinstance(p, (int, float)) for p in (re, im)), "malformed complex value")
        return complex(re, im)
    _fail(f"unknown value tag {tag[:20]!r}")


def _dtype(name) -> dt.Dtype:
    _expect(isinstance(name, str) and name in {d.name for d in dt.ALL}, f"unknown dtype {str(name)[:20]!r}")
    return dt.from_name(name)


def _shape(value) -> tuple:
    _expect(isinstance(value, list) and len(value) <= 64, "malformed shape")
    _expect(all(type(d) is int and 0 <= d < 2**48 for d in value), "malformed shape")
    return tuple(value)


def _list(value, what: str) -> list:
    _expect(isinstance(value, list), f"malformed {what}")
    return value


def _decode_graph(data, buffers: list) -> Graph:
    _expect(isinstance(data, dict), "malformed graph")
    declared = []
    for item in _list(data.get("vars"), "vars"):
        _expect(isinstance(item, list) and len(item) == 2, "malformed var")
        declared.append(Var(_shape(item[0]), _dtype(item[1])))
    defined = [False] * len(declared)

    def define(index) -> Var:
        _expect(type(index) is int and 0 <= index < len(declared), f"bad var index {str(index)[:20]}")
        _expect(not defined[index], f"var {index} defined twice")
        defined[index] = True
        return declared[index]

    def read(r):
        if isinstance(r, dict):
            _expect(set(r) == {"lit", "dtype"}, "malformed literal")
            d = _dtype(r["dtype"])
            value = _decode_value(r["lit"])
            _expect(isinstance(value, (bool, int, float, complex)), "malformed literal")
            return Lit(value, d)
        _expect(type(r) is int and 0 <= r < len(declared) and defined[r], f"var {str(r)[:20]} read before defined")
        return declared[r]

    inputs = [define(i) for i in _list(data.get("inputs"), "inputs")]
    consts, const_values = [], []
    for item in _list(data.get("consts"), "consts"):
        _expect(isinstance(item, list) and len(item) == 2, "malformed constant")
        v = define(item[0])
        _expect(type(item[1]) is int and 0 <= item[1] < len(buffers), "bad buffer index")
        raw = buffers[item[1]]
        _expect(len(raw) == math.prod(v.shape) * v.dtype.np.itemsize, "constant size does not match its type")
        consts.append(v)
        const_values.append(np.frombuffer(raw, dtype=v.dtype.np).reshape(v.shape))
    eqns = []
    for item in _list(data.get("eqns"), "eqns"):
        _expect(isinstance(item, list) and len(item) == 4, "malformed equation")
        prim, refs, params, out = item
        _expect(isinstance(prim, str) and prim in REGISTRY and prim not in _NOT_EXPORTABLE,
                f"unknown primitive {str(prim)[:30]!r}")
        ins = tuple(read(r) for r in _list(refs, "equation inputs"))
        _expect(isinstance(params, dict), "malformed params")
        params = {str(k): _decode_value(v) for k, v in params.items()}
        out_var = define(out)
        _check_rule(prim, ins, params, out_var)
        eqns.append(Eqn(prim, ins, params, out_var))
    outputs = [read(r) for r in _list(data.get("outputs"), "outputs")]
    return Graph(inputs=inputs, eqns=eqns, outputs=outputs, consts=consts, const_values=const_values)


def _check_rule(prim: str, ins: tuple, params: dict, out: Var):
    """The equation's declared type must be what its shape rule answers for its inputs and params."""
    try:
        shape, dtype = REGISTRY[prim].shape_rule(*ins, **params)
    except Exception as e:  # noqa: BLE001  (damaged params can fail a rule in any way: a format error here)
        _fail(f"equation {prim} is inconsistent: {type(e).__name__}: {str(e)[:100]}")
    _expect(tuple(shape) == out.shape and dtype == out.dtype, f"equation {prim} declares a wrong result type")


def decode(data: bytes) -> tuple:
    """(traces, metadata) from a file's bytes; raises FormatError for anything but a valid file."""
    _expect(len(data) >= _PREFIX.size, f"file too short ({len(data)} bytes)")
    magic, version, header_len, payload_len, crc = _PREFIX.unpack_from(data)
    _expect(magic == MAGIC, "not a kiln function file (bad magic)")
    _expect(version == FORMAT_VERSION, f"unsupported format version {version} (this kiln reads {FORMAT_VERSION})")
    _expect(len(data) == _PREFIX.size + header_len + payload_len,
            f"file size {len(data)} does not match its header (truncated or extended)")
    body = memoryview(data)[_PREFIX.size:]
    _expect(zlib.crc32(body) == crc, "checksum mismatch (corrupted file)")
    return _decode_body(bytes(body[:header_len]), body[header_len:])


def _decode_body(header_bytes: bytes, payload) -> tuple:
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        _fail(f"unreadable header: {str(e)[:100]}")
    _expect(isinstance(header, dict), "malformed header")
    metadata = header.get("metadata")
    _expect(metadata is None or isinstance(metadata, str), "malformed metadata")
    buffers = []
    for item in _list(header.get("buffers"), "buffers"):
        _expect(isinstance(item, list) and len(item) == 2 and all(type(x) is int and x >= 0 for x in item),
                "malformed buffer entry")
        offset, nbytes = item
        _expect(offset + nbytes <= len(payload), "buffer outside the payload")
        buffers.append(bytes(payload[offset:offset + nbytes]))
    traces = []
    for t in _list(header.get("traces"), "traces"):
        _expect(isinstance(t, dict) and isinstance(t.get("shapeless"), bool), "malformed trace")
        kwargs = _list(t.get("kwargs"), "kwargs")
        _expect(all(isinstance(k, str) for k in kwargs) and len(set(kwargs)) == len(kwargs), "malformed kwargs")
        try:
            graph = _decode_graph(t.get("graph"), buffers)
        except RecursionError:
            _fail("graph nested too deeply")
        _expect(len(kwargs) <= len(graph.inputs), "more keyword inputs than inputs")
        traces.append({"graph": graph, "shapeless": t["shapeless"], "kwargs": kwargs})
    return traces, metadata
