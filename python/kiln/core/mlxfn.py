"""Reading real MLX's ``.mlxfn`` files (written by MLX 0.32's ``export_function`` / ``exporter``) in
``import_function``: a bounds-checked parser of MLX's binary layout, and a replay of each exported trace
through kiln's ops that records it as a kiln Graph.

Layout (little-endian; a vector or string is a uint64 count and its items; a bool is one byte; a shape is a
vector of int32; a dtype is MLX's int32 type code and its uint8 item size):

    file      := version:string  count:int32  shapeless:bool  metadata:string  function{count}
    function  := kwarg_keys:vector<string>  input_ids:vector<uint64>  inputs:vector<(shape, dtype)>
                 output_ids:vector<uint64>  tape:vector<node>
    node      := id:uint64  (1:bool  input_ids:vector<uint64>  stream:int32{3}  name:string  state
                            n_siblings:uint64  (shape dtype  if n_siblings == 0
                                                | ids:vector<uint64> shapes:vector<shape> dtypes:vector<dtype>))
               | (0:bool  1:bool  shape dtype raw-bytes   a constant, first time its id is seen in the file
               | (0:bool  1:bool)                          a constant seen before
               | (0:bool  0:bool)                          an input

A primitive's ``state`` is its fields in order with no size of its own (see ``_STATES``), so a primitive
this reader does not know ends the parse with a clear error. MLX primitives read: the stateless elementwise
ones (unary, binary, Select), Log, Sqrt/Rsqrt, BitwiseBinary, Equal/NaNEqual, AsType, Broadcast,
BroadcastAxes, Reshape, Transpose, Squeeze, ExpandDims, Flatten, Unflatten, Reduce, ArgReduce, Scan,
NumberOfElements, Matmul, AddMM, Slice, SliceUpdate, DynamicSlice, DynamicSliceUpdate, Gather, GatherAxis,
Scatter, ScatterAxis, Concatenate, Split, Pad, Full, Copy, Contiguous, StopGradient, Softmax, LogSumExp,
Sort, ArgSort, Partition, ArgPartition, Arange, RandomBits, Convolution, QuantizedMatmul (affine), View,
AsStrided, Hadamard, and the fast primitives RMSNorm, LayerNorm, RoPE and ScaledDotProductAttention.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct

import numpy as np

from . import dtypes as dt

# MLX's Dtype::Val order: the int32 type code written for every dtype.
_DTYPES = (dt.bool_, dt.uint8, dt.uint16, dt.uint32, dt.uint64, dt.int8, dt.int16, dt.int32, dt.int64,
           dt.float16, dt.float32, dt.float64, dt.bfloat16, dt.complex64)
_VERSION = re.compile(rb"\d+\.\d+\.\d+[0-9A-Za-z.+-]*")
_MAX_RANK = 64


class FormatError(ValueError):
    """A file that is not a valid MLX function file, or uses a primitive kiln cannot read."""


def looks_like_mlx(data: bytes) -> bool:
    """Whether `data` starts as MLX's files do: a uint64 length, then a version string like ``0.32.4``."""
    if len(data) < 9:
        return False
    (n,) = struct.unpack_from("<Q", data)
    return 5 <= n <= 32 and len(data) >= 8 + n and _VERSION.fullmatch(bytes(data[8:8 + n])) is not None


# -- the byte reader ------------------------------------------------------------------------------------
class _Reader:
    """Reads MLX's serialized values from a buffer; every read checks that the bytes are there."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def fail(self, message: str):
        raise FormatError(f"{message} (at byte {self.pos})")

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            self.fail(f"truncated file: {what} needs {n} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))[0]

    def i32(self, what="an int32") -> int:
        return self.unpack("<i", what)

    def u64(self, what="a uint64") -> int:
        return self.unpack("<Q", what)

    def f32(self, what="a float32") -> float:
        return self.unpack("<f", what)

    def f64(self, what="a float64") -> float:
        return self.unpack("<d", what)

    def flag(self, what="a bool") -> bool:
        value = self.take(1, what)[0]
        if value > 1:
            self.fail(f"{what} is {value}, not 0 or 1")
        return bool(value)

    def count(self, item_size: int, what: str) -> int:
        """A vector's length, refused when its items cannot fit in the bytes left (no huge allocations)."""
        n = self.u64(f"the length of {what}")
        if n * item_size > len(self.data) - self.pos:
            self.fail(f"truncated file: {what} claims {n} items")
        return n

    def string(self, what="a string") -> str:
        raw = self.take(self.count(1, what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not UTF-8")

    def ints(self, what="a vector of int32") -> tuple:
        n = self.count(4, what)
        return struct.unpack(f"<{n}i", self.take(4 * n, what))

    def int64s(self, what="a vector of int64") -> tuple:
        n = self.count(8, what)
        return struct.unpack(f"<{n}q", self.take(8 * n, what))

    def ids(self, what="a vector of ids") -> tuple:
        n = self.count(8, what)
        return struct.unpack(f"<{n}Q", self.take(8 * n, what))

    def shape(self, what="a shape") -> tuple:
        shape = self.ints(what)
        if len(shape) > _MAX_RANK or any(d < 0 for d in shape):
            self.fail(f"{what} {shape[:8]} is not a valid shape")
        return shape

    def dtype(self, what="a dtype") -> dt.Dtype:
        code = self.i32(what)
        size = self.take(1, what)[0]
        if not 0 <= code < len(_DTYPES) or _DTYPES[code].np.itemsize != size:
            self.fail(f"{what} has an unknown type code {code} (item size {size})")
        return _DTYPES[code]


# Each primitive's serialized state, field by field (MLX's `state()` in primitives.h / fast_primitives.h):
# i32, f32, f64, bool, u64 are scalars; ints a vector of int32 (also Shape), int64s a vector of int64, u64s a
# vector of uint64, dtype a Dtype. A primitive not listed has no state if in _STATELESS, else is unsupported.
_STATES = {
    "AddMM": ("f32", "f32"),
    "Arange": ("f64", "f64", "f64"),
    "ArgPartition": ("i32", "i32"),
    "ArgReduce": ("i32", "i32"),
    "ArgSort": ("i32",),
    "AsStrided": ("ints", "int64s", "u64"),
    "AsType": ("dtype",),
    "BitwiseBinary": ("i32",),
    "Broadcast": ("ints",),
    "BroadcastAxes": ("ints",),
    "Concatenate": ("i32",),
    "Convolution": ("ints", "ints", "ints", "ints", "ints", "i32", "bool"),
    "DynamicSlice": ("ints", "ints"),
    "DynamicSliceUpdate": ("ints",),
    "Equal": ("bool",),
    "ExpandDims": ("ints",),
    "Flatten": ("i32", "i32"),
    "Gather": ("ints", "ints"),
    "GatherAxis": ("i32",),
    "Hadamard": ("f32",),
    "LayerNorm": ("f32",),
    "Log": ("i32",),
    "NumberOfElements": ("ints", "bool", "dtype"),
    "Pad": ("ints", "ints", "ints"),
    "Partition": ("i32", "i32"),
    "QuantizedMatmul": ("i32", "i32", "i32", "bool"),
    "RandomBits": ("ints", "i32"),
    "Reduce": ("i32", "ints"),
    "Reshape": ("ints",),
    "RMSNorm": ("f32",),
    "RoPE": ("i32", "bool", "f32", "f32", "bool"),
    "ScaledDotProductAttention": ("f32", "bool", "bool", "bool", "bool"),
    "Scan": ("i32", "i32", "bool", "bool"),
    "Scatter": ("i32", "ints"),
    "ScatterAxis": ("i32", "i32"),
    "Slice": ("ints", "ints", "ints"),
    "SliceUpdate": ("i32", "ints", "ints", "ints"),
    "Softmax": ("bool",),
    "Sort": ("i32",),
    "Split": ("ints", "i32"),
    "Sqrt": ("bool",),
    "Squeeze": ("ints",),
    "Transpose": ("ints",),
    "Unflatten": ("i32", "ints"),
    "View": ("dtype",),
}
_FIELD_READERS = {
    "i32": _Reader.i32, "f32": _Reader.f32, "f64": _Reader.f64, "bool": _Reader.flag, "u64": _Reader.u64,
    "ints": _Reader.ints, "int64s": _Reader.int64s, "dtype": _Reader.dtype,
}
_STATELESS = frozenset((
    "Abs", "Add", "ArcCos", "ArcCosh", "ArcSin", "ArcSinh", "ArcTan", "ArcTan2", "ArcTanh", "BitwiseInvert",
    "Ceil", "Conjugate", "Contiguous", "Copy", "Cos", "Cosh", "Divide", "DivMod", "Erf", "ErfInv", "Exp", "Expm1", "Floor",
    "FloorDivide", "Full", "Greater", "GreaterEqual", "Imag", "Less", "LessEqual", "Log1p", "LogAddExp",
    "LogicalAnd", "LogicalNot", "LogicalOr", "LogSumExp", "Matmul", "Maximum", "Minimum", "Multiply",
    "Negative", "NotEqual", "Power", "Real", "Remainder", "Round", "Select", "Sigmoid", "Sign", "Sin", "Sinh",
    "Square", "StopGradient", "Subtract", "Tan", "Tanh",
))


# -- the file's structure ---------------------------------------------------------------------------------
class _Node:
    """One tape entry: an operation (`name` set) with its outputs, a constant (`value` set) or an input."""

    __slots__ = ("id", "name", "state", "input_ids", "outputs", "value")

    def __init__(self, node_id, name=None, state=(), input_ids=(), outputs=(), value=None):
        self.id, self.name, self.state, self.input_ids = node_id, name, state, input_ids
        self.outputs, self.value = outputs, value


def _read_state(r: _Reader, name: str) -> tuple:
    if name not in _CONVERTERS:
        raise FormatError(f"MLX primitive '{name[:40]}' is not supported by kiln's .mlxfn reader")
    if name in _STATES:
        return tuple(_FIELD_READERS[field](r, f"{name}'s state") for field in _STATES[name])
    if name in _STATELESS:
        return ()
    raise FormatError(f"MLX primitive '{name[:40]}' is not supported by kiln's .mlxfn reader")


def _read_constant(r: _Reader) -> tuple:
    shape, dtype = r.shape("a constant's shape"), r.dtype("a constant's dtype")
    nbytes = math.prod(shape) * dtype.np.itemsize
    raw = r.take(nbytes, "a constant's data")
    return np.frombuffer(raw, dtype=dtype.np).reshape(shape).copy(), dtype


def _read_function(r: _Reader, constants: dict) -> dict:
    n_keys = r.count(8, "the keyword names")
    kwargs = [r.string("a keyword name") for _ in range(n_keys)]
    input_ids = r.ids("the input ids")
    n_inputs = r.count(13, "the inputs")
    inputs = [(r.shape("an input's shape"), r.dtype("an input's dtype")) for _ in range(n_inputs)]
    if n_inputs != len(input_ids) or len(set(input_ids)) != n_inputs or len(set(kwargs)) != n_keys \
            or n_keys > n_inputs:
        r.fail("the inputs do not match their ids and keyword names")
    output_ids = r.ids("the output ids")
    tape = []
    for _ in range(r.count(10, "the tape")):
        node_id = r.u64("a tape entry's id")
        if r.flag("a tape entry's kind"):
            node_ids = r.ids("an operation's inputs")
            r.take(12, "an operation's stream")  # stream index, device type, device index: kiln has one device
            name = r.string("a primitive's name")
            state = _read_state(r, name)
            n_siblings = r.u64("a sibling count")
            if n_siblings == 0:
                outputs = ((node_id, r.shape("an output's shape"), r.dtype("an output's dtype")),)
            else:
                ids = r.ids("the sibling ids")
                shapes = [r.shape("a sibling's shape") for _ in range(r.count(8, "the sibling shapes"))]
                dtypes = [r.dtype("a sibling's dtype") for _ in range(r.count(5, "the sibling dtypes"))]
                if not len(ids) == len(shapes) == len(dtypes) == n_siblings + 1 or node_id not in ids:
                    r.fail(f"{name}'s outputs do not match their ids")
                outputs = tuple(zip(ids, shapes, dtypes))
            tape.append(_Node(node_id, name, state, node_ids, outputs))
        elif r.flag("a tape entry's constant flag"):
            if node_id not in constants:
                constants[node_id] = _read_constant(r)
            tape.append(_Node(node_id, value=constants[node_id]))
        else:
            if node_id not in input_ids:
                r.fail(f"tape entry {node_id} is neither an operation, a constant nor an input")
            tape.append(_Node(node_id))
    return {"kwargs": kwargs, "input_ids": input_ids, "inputs": inputs, "output_ids": output_ids, "tape": tape}


def decode(data: bytes) -> tuple:
    """(version, shapeless, metadata, functions) from the bytes of an MLX function file; raises FormatError
    for a truncated, corrupted or unsupported one."""
    r = _Reader(bytes(data))
    version = r.string("the version")
    count = r.i32("the function count")
    if count < 0:
        r.fail(f"negative function count {count}")
    shapeless = r.flag("the shapeless flag")
    metadata = r.string("the metadata")
    constants = {}  # a constant is written once per file, the first time a trace reads it
    try:
        functions = [_read_function(r, constants) for _ in range(count)]
        if r.pos != len(r.data):
            r.fail(f"{len(r.data) - r.pos} bytes after the last function")
    except FormatError as e:  # other MLX versions lay traces out differently: say which one wrote the file
        raise FormatError(f"{e} (the file says MLX {version[:20]}; kiln reads MLX 0.32's layout)") from None
    return version, shapeless, metadata, functions


# -- MLX primitives as kiln operations ----------------------------------------------------------------
# Each converter takes the kiln inputs, the primitive's state and its declared outputs ((shape, dtype)
# pairs) and returns kiln arrays; `_replay` checks that they have the declared types.
_UNARY = {
    "Abs": "abs", "ArcCos": "arccos", "ArcCosh": "arccosh", "ArcSin": "arcsin", "ArcSinh": "arcsinh",
    "ArcTan": "arctan", "ArcTanh": "arctanh", "BitwiseInvert": "bitwise_invert", "Ceil": "ceil",
    "Conjugate": "conjugate", "Copy": "copy", "Cos": "cos", "Cosh": "cosh", "Erf": "erf", "ErfInv": "erfinv",
    "Exp": "exp", "Expm1": "expm1", "Floor": "floor", "Imag": "imag", "Log1p": "log1p",
    "LogicalNot": "logical_not", "Negative": "negative", "Real": "real", "Round": "round", "Sigmoid": "sigmoid",
    "Sign": "sign", "Sin": "sin", "Sinh": "sinh", "Square": "square", "StopGradient": "stop_gradient",
    "Tan": "tan", "Tanh": "tanh",
}
_BINARY = {
    "Add": "add", "ArcTan2": "arctan2", "Divide": "divide", "FloorDivide": "floor_divide", "Greater": "greater",
    "GreaterEqual": "greater_equal", "Less": "less", "LessEqual": "less_equal", "LogAddExp": "logaddexp",
    "LogicalAnd": "logical_and", "LogicalOr": "logical_or", "Maximum": "maximum", "Minimum": "minimum",
    "Multiply": "multiply", "NotEqual": "not_equal", "Power": "power", "Remainder": "remainder",
    "Subtract": "subtract",
}
_LOG_BASES = ("log2", "log10", "log")  # Log::Base {two, ten, e}
_BITWISE = ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift")  # BitwiseBinary::Op
_REDUCES = ("all", "any", "sum", "prod", "min", "max")  # Reduce::ReduceType {And, Or, Sum, Prod, Min, Max}
_SCANS = ("cummax", "cummin", "cumsum", "cumprod", "logcumsumexp")  # Scan::ReduceType
_SCATTERS = ("scatter_maximum", "scatter_minimum", "scatter_add", "scatter_multiply", "scatter")
_SLICE_COMBINE = ("maximum", "minimum", "add", "multiply", None)  # SliceUpdate::ReduceType


def _ops():
    from .. import core  # the public namespace: ops, linalg, conv and quantized ops in one place

    return core


def _bind(name, *xs, **params):
    from .array import bind

    return bind(name, *xs, **params)


def _choice(table: tuple, index: int, what: str):
    if not 0 <= index < len(table):
        raise FormatError(f"unknown {what} {index}")
    return table[index]


def _broadcast(ins, state, outs):
    """Broadcast: to a fixed shape, or in a shapeless trace to the shape of all inputs broadcast together
    (MLX passes the arrays that decide the shape as extra inputs)."""
    from .tracing import tracing_shapeless

    x, others = ins[0], ins[1:]
    if not others or not tracing_shapeless():
        return [_ops().broadcast_to(x, outs[0][0])]
    for other in others:  # select(True, x, other) takes x at the broadcast shape, whatever it is at run time
        x = _bind("select", _ops().array(True), x, _bind("astype", other, dtype=x.dtype) if other.dtype != x.dtype
                  else other)
    return [x]


def _broadcast_axes(ins, state, outs):
    """BroadcastAxes (shapeless traces only): broadcast x against the other inputs except along the ignored
    axes (a matmul's matrix axes), where x keeps its own sizes."""
    from .tracing import tracing_shapeless

    x, others = ins[0], ins[1:]
    if not tracing_shapeless():
        return [_ops().broadcast_to(x, outs[0][0])]
    ignored = sorted({a % x.ndim for a in state[0]}) if x.ndim else []
    for other in others:
        # `other` at index 0 along its ignored axes, kept as size-1 axes: it then broadcasts only its batch axes.
        n_ignored = len(ignored)
        for axis in range(other.ndim - 1, max(other.ndim - n_ignored, 0) - 1, -1):
            other = _bind("expand_dims", _bind("gather", other, _ops().array(0, _ops().int32), axes=(axis,)),
                          axes=(axis,))
        other = other if other.dtype == x.dtype else _bind("astype", other, dtype=x.dtype)
        x = _bind("select", _ops().array(True), x, other)
    return [x]


def _gather(ins, state, outs):
    """MLX's Gather keeps every axis (an indexed one as a slice of size `slice_sizes[axis]`, 1 here); kiln's
    drops the indexed axes and keeps the others whole."""
    x, indices = ins[0], ins[1:]
    axes, sizes = state
    if len(sizes) != x.ndim or any(sizes[a] != 1 for a in axes if 0 <= a < x.ndim):
        raise FormatError("Gather with slices wider than 1 along an indexed axis is not supported")
    out = _bind("gather", x, *indices, axes=tuple(axes)) if indices else x
    rest = [d for d in range(x.ndim) if d not in axes]
    batch = out.ndim - len(rest)
    if any(sizes[d] != x.shape[d] for d in rest):
        stop = list(out.shape[:batch]) + [sizes[d] for d in rest]
        out = _bind("slice", out, start=(0,) * out.ndim, stop=tuple(stop), strides=(1,) * out.ndim)
    return [_bind("expand_dims", out, axes=tuple(batch + a for a in sorted(axes)))] if axes else [out]


def _scatter(ins, state, outs):
    """MLX's Scatter updates carry every axis of x (size 1 along the indexed ones); kiln's drop those."""
    kind, axes = state
    x, indices, updates = ins[0], ins[1:-1], ins[-1]
    batch = updates.ndim - x.ndim
    rest = [d for d in range(x.ndim) if d not in axes]
    if batch < 0 or any(updates.shape[batch + a] != 1 for a in axes) \
            or any(updates.shape[batch + d] != x.shape[d] for d in rest):
        raise FormatError("Scatter with partial slices is not supported")
    updates = _bind("squeeze", updates, axes=tuple(batch + a for a in axes)) if axes else updates
    return [_bind(_choice(_SCATTERS, kind, "scatter kind"), x, updates, *indices, axes=tuple(axes))]


def _scatter_axis(ins, state, outs):
    """put_along_axis (ScatterAxis::ReduceType None) or its summing form (Sum): indices and updates have
    one shape, x's except along the axis."""
    from .indexing import _coordinates

    kind, axis = state
    x, indices, updates = ins
    name = _choice(("scatter_add", "scatter"), kind, "scatter kind")
    return [_bind(name, x, updates, *_coordinates(indices, axis), axes=tuple(range(x.ndim)))]


def _slice_params(x, start, stop, strides) -> dict:
    """MLX stores Python-style bounds (negative ones count from the end); kiln's slice takes them resolved
    as `slice.indices` does (a stop of -1 with a negative stride runs past index 0)."""
    if not len(start) == len(stop) == len(strides) == x.ndim or 0 in strides:
        raise FormatError(f"a slice of {x.ndim} axes with bounds {start}, {stop}, {strides}")
    bounds = [slice(a, b, s).indices(n) for a, b, s, n in zip(start, stop, strides, x.shape)]
    return {"start": tuple(b[0] for b in bounds), "stop": tuple(b[1] for b in bounds), "strides": tuple(strides)}


def _slice_update(ins, state, outs):
    kind, start, stop, strides = state
    x, update = ins
    params = _slice_params(x, start, stop, strides)
    combine = _choice(_SLICE_COMBINE, kind, "slice update kind")
    if combine is not None:
        update = _bind(combine, _bind("slice", x, **params), update)
    return [_bind("slice_update", x, update, **params)]


def _pad(ins, state, outs):
    x, value = ins
    axes, low, high = state
    if not len(axes) == len(low) == len(high) or any(not 0 <= a < x.ndim for a in axes):
        raise FormatError("Pad's axes and widths do not match")
    widths = [(0, 0)] * x.ndim
    for a, lo, hi in zip(axes, low, high):
        widths[a] = (lo, hi)
    return [_bind("pad", x, value, widths=tuple(widths))]


def _convolution(ins, state, outs):
    strides, pad_lo, pad_hi, kernel_dilation, input_dilation, groups, flip = state
    return [_ops().conv_general(ins[0], ins[1], stride=list(strides), padding=(list(pad_lo), list(pad_hi)),
                                kernel_dilation=list(kernel_dilation), input_dilation=list(input_dilation),
                                groups=groups, flip=flip)]


def _quantized_matmul(ins, state, outs):
    group_size, bits, mode, transpose = state
    if mode != 0:
        raise FormatError("QuantizedMatmul in a mode other than affine is not supported")
    x, w, scales = ins[:3]
    biases = ins[3] if len(ins) > 3 else None
    return [_ops().quantized_matmul(x, w, scales, biases, transpose=transpose, group_size=group_size, bits=bits)]


def _split(ins, state, outs):
    indices, axis = state
    return list(_ops().split(ins[0], list(indices), axis=axis))


def _fast(name):
    return getattr(_ops().fast, name)


def _rms_norm(ins, state, outs):
    """MLX passes a scalar 1 for a missing weight."""
    x, weight = ins
    if weight.ndim:
        return [_fast("rms_norm")(x, weight, state[0])]
    return [_bind("multiply", _fast("rms_norm")(x, None, state[0]), weight)]


def _layer_norm(ins, state, outs):
    """MLX passes a scalar 1 for a missing weight and a scalar 0 for a missing bias."""
    x, weight, bias = ins
    out = _fast("layer_norm")(x, weight if weight.ndim else None, bias if bias.ndim else None, state[0])
    out = out if weight.ndim else _bind("multiply", out, weight)
    return [out if bias.ndim else _bind("add", out, bias)]


def _rope(ins, state, outs):
    dims, traditional, base, scale, forward = state
    if not forward:
        raise FormatError("RoPE's inverse (a gradient) is not supported")
    x, offset = ins[:2]
    freqs = ins[2] if len(ins) > 2 else None
    return [_fast("rope")(x, dims, traditional=traditional, base=None if freqs is not None else base,
                          scale=scale, offset=offset, freqs=freqs)]


def _attention(ins, state, outs):
    scale, causal, has_sinks, with_logsumexp, _ = state
    if with_logsumexp:
        raise FormatError("ScaledDotProductAttention with a logsumexp output is not supported")
    q, k, v = ins[:3]
    rest = list(ins[3:])
    sinks = rest.pop() if has_sinks else None
    mask = "causal" if causal else (rest[0] if rest else None)
    return [_fast("scaled_dot_product_attention")(q, k, v, scale=scale, mask=mask, sinks=sinks)]


def _equal(ins, state, outs):
    out = _bind("equal", *ins)
    if state[0]:  # NaNEqual: NaNs compare equal
        out = _bind("logical_or", out, _bind("logical_and", _bind("isnan", ins[0]), _bind("isnan", ins[1])))
    return [out]


def _reduce(ins, state, outs):
    return [_bind(_choice(_REDUCES, state[0], "reduction"), ins[0], axes=tuple(state[1]), keepdims=True)]


def _scan(ins, state, outs):
    kind, axis, reverse, inclusive = state
    name = _choice(_SCANS, kind, "scan")
    if name == "logcumsumexp":
        return [_ops().logcumsumexp(ins[0], axis=axis, reverse=reverse, inclusive=inclusive)]
    return [_bind(name, ins[0], axis=axis, reverse=reverse, inclusive=inclusive)]


def _full(ins, state, outs):
    shape, dtype = outs[0]
    x = ins[0] if ins[0].dtype == dtype else _bind("astype", ins[0], dtype=dtype)
    return [_ops().broadcast_to(x, shape)]


_CONVERTERS = {
    "AddMM": lambda ins, s, o: [_ops().addmm(ins[2], ins[0], ins[1], alpha=s[0], beta=s[1])],
    "Arange": lambda ins, s, o: [_ops().arange(s[0], s[1], s[2], dtype=o[0][1])],
    "ArgPartition": lambda ins, s, o: [_bind("argpartition", ins[0], axis=s[1], kth=s[0])],
    "ArgReduce": lambda ins, s, o: [_ops().expand_dims(
        _bind(_choice(("argmin", "argmax"), s[0], "arg reduction"), ins[0], axes=(s[1],), keepdims=False), s[1])],
    "ArgSort": lambda ins, s, o: [_bind("argsort", ins[0], axis=s[0])],
    "AsStrided": lambda ins, s, o: [_bind("as_strided", ins[0], shape=tuple(s[0]), strides=tuple(s[1]),
                                          offset=s[2])],
    "AsType": lambda ins, s, o: [_bind("astype", ins[0], dtype=s[0])],
    "BitwiseBinary": lambda ins, s, o: [_bind(_choice(_BITWISE, s[0], "bitwise operation"), *ins)],
    "Broadcast": _broadcast,
    "BroadcastAxes": _broadcast_axes,
    "Concatenate": lambda ins, s, o: [_bind("concatenate", *ins, axis=s[0])],
    "Contiguous": lambda ins, s, o: [ins[0]],
    "Convolution": _convolution,
    "DivMod": lambda ins, s, o: [_bind("floor_divide", *ins), _bind("remainder", *ins)],
    "DynamicSlice": lambda ins, s, o: [_ops().slice(ins[0], ins[1], list(s[0]), list(s[1]))],
    "DynamicSliceUpdate": lambda ins, s, o: [_ops().slice_update(ins[0], ins[1], ins[2], list(s[0]))],
    "Equal": _equal,
    "ExpandDims": lambda ins, s, o: [_bind("expand_dims", ins[0], axes=tuple(s[0]))],
    "Flatten": lambda ins, s, o: [_bind("flatten", ins[0], start_axis=s[0], end_axis=s[1])],
    "Full": _full,
    "Gather": _gather,
    "GatherAxis": lambda ins, s, o: [_ops().take_along_axis(ins[0], ins[1], axis=s[0])],
    "Hadamard": lambda ins, s, o: [_ops().hadamard_transform(ins[0], scale=s[0])],
    "LayerNorm": _layer_norm,
    "Log": lambda ins, s, o: [_bind(_choice(_LOG_BASES, s[0], "logarithm base"), ins[0])],
    "LogSumExp": lambda ins, s, o: [_ops().logsumexp(ins[0], axis=-1, keepdims=True)],
    "Matmul": lambda ins, s, o: [_bind("matmul", *ins)],
    "NumberOfElements": lambda ins, s, o: [_bind("number_of_elements", ins[0], axes=tuple(s[0]), inverted=s[1],
                                                 dtype=s[2])],
    "Pad": _pad,
    "Partition": lambda ins, s, o: [_bind("partition", ins[0], axis=s[1], kth=s[0])],
    "QuantizedMatmul": _quantized_matmul,
    "RandomBits": lambda ins, s, o: [_bind("random_bits", ins[0], shape=tuple(s[0]), width=s[1])],
    "Reduce": _reduce,
    "Reshape": lambda ins, s, o: [_bind("reshape", ins[0], shape=tuple(s[0]))],
    "RMSNorm": _rms_norm,
    "RoPE": _rope,
    "ScaledDotProductAttention": _attention,
    "Scan": _scan,
    "Scatter": _scatter,
    "ScatterAxis": _scatter_axis,
    "Select": lambda ins, s, o: [_bind("select", *ins)],
    "Slice": lambda ins, s, o: [_bind("slice", ins[0], **_slice_params(ins[0], *s))],
    "SliceUpdate": _slice_update,
    "Softmax": lambda ins, s, o: [_ops().softmax(ins[0], axis=-1, precise=s[0])],
    "Sort": lambda ins, s, o: [_bind("sort", ins[0], axis=s[0])],
    "Split": _split,
    "Sqrt": lambda ins, s, o: [_bind("rsqrt" if s[0] else "sqrt", ins[0])],
    "Squeeze": lambda ins, s, o: [_bind("squeeze", ins[0], axes=tuple(s[0]))],
    "Transpose": lambda ins, s, o: [_bind("transpose", ins[0], axes=tuple(s[0]))],
    "Unflatten": lambda ins, s, o: [_ops().unflatten(ins[0], s[0], list(s[1]))],
    "View": lambda ins, s, o: [_bind("view", ins[0], dtype=s[0])],
    **{name: (lambda kiln_name: lambda ins, s, o: [_bind(kiln_name, *ins)])(k) for name, k in _UNARY.items()},
    **{name: (lambda kiln_name: lambda ins, s, o: [_bind(kiln_name, *ins)])(k) for name, k in _BINARY.items()},
}


# -- traces as kiln Graphs --------------------------------------------------------------------------------
def _replay(function: dict, shapeless: bool):
    """The trace as a kiln Graph: placeholders for the inputs, then each tape entry as kiln operations."""
    from .array import array, transform_scope
    from .tracing import graph_from_outputs, shapeless_scope

    placeholders = [array._make_placeholder(shape, dtype, "import_function") for shape, dtype in function["inputs"]]
    values = dict(zip(function["input_ids"], placeholders))
    with transform_scope(), (shapeless_scope() if shapeless else contextlib.nullcontext()):
        for node in function["tape"]:
            if node.value is not None:
                values[node.id] = array._from_numpy(*node.value)
            elif node.name is not None:
                for out_id, out in zip([o[0] for o in node.outputs], _run(node, values)):
                    values[out_id] = out
    missing = [i for i in function["output_ids"] if i not in values]
    if missing:
        raise FormatError(f"output {missing[0]} is not computed by the tape")
    outputs = [values[i] for i in function["output_ids"]]
    # kiln orders the keyword inputs by name after the positional ones.
    n_pos = len(placeholders) - len(function["kwargs"])
    by_name = sorted(range(len(function["kwargs"])), key=lambda i: function["kwargs"][i])
    ordered = placeholders[:n_pos] + [placeholders[n_pos + i] for i in by_name]
    return graph_from_outputs(outputs, ordered), sorted(function["kwargs"])


def _run(node: _Node, values: dict) -> list:
    missing = [i for i in node.input_ids if i not in values]
    if missing:
        raise FormatError(f"{node.name} reads value {missing[0]} before it is computed")
    ins = [values[i] for i in node.input_ids]
    declared = [(tuple(shape), dtype) for _, shape, dtype in node.outputs]
    try:
        outs = _CONVERTERS[node.name](ins, node.state, declared)
    except FormatError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as e:
        raise FormatError(f"MLX primitive {node.name} with state {str(node.state)[:80]} on inputs "
                          f"{[(x.shape, x.dtype.name) for x in ins][:4]} fails in kiln: {str(e)[:200]}") from None
    got = [(tuple(o.shape), o.dtype) for o in outs]
    if got != declared:
        raise FormatError(f"MLX primitive {node.name} gives {[(s, d.name) for s, d in got]} in kiln but the file "
                          f"declares {[(s, d.name) for s, d in declared]}")
    return outs


def read(data: bytes) -> tuple:
    """(traces, metadata) from an MLX function file, traces as `export._ImportedFunction` takes them."""
    _, shapeless, metadata, functions = decode(data)
    traces = []
    for function in functions:
        graph, kwargs = _replay(function, shapeless)
        traces.append({"graph": graph, "shapeless": shapeless, "kwargs": kwargs})
    return traces, metadata
