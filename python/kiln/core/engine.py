"""The only importer of `kiln._engine`: converts Graphs and buffers across the Python/C++ boundary.

Interface (what `core/compile.py` calls):

    available() -> bool
        The extension imports, KILN_ENGINE is not "0", and a C++ compiler ($CXX or c++) is on PATH.
    compile_graph(graph, shapeless=False) -> Program
        Simplify and fuse `graph` (a traced Graph), render one C++ kernel per elementwise region, JIT-compile
        (or load from the memory and disk caches) and return a runnable Program. `shapeless=True` forbids
        rewrites that only hold at the traced shapes (dropping a same-shape broadcast or reshape).
    Program.run(inputs: list[np.ndarray]) -> list[np.ndarray]
        Inputs in graph.inputs order, contiguous or not; outputs are fresh arrays the caller owns.
    Program.graph
        The simplified and fused Graph: each region is one Eqn with prim "fused" and params
        {"body": Graph, "kernel": name}; `interpret.interpret` runs it, so it is the oracle.
    Program.kernel_sources
        dict kernel name -> C++ source (without the shared prelude; `_engine.full_source` adds it).
    render_metal(graph, shapeless=False) -> dict[str, str]
        The same regions rendered as Metal Shading Language (kernel name -> source without the Metal
        preamble; `metal_full_source` adds it). Golden-tested; on Linux `compile_graph_metal_shim` runs them.

Non-elementwise equations run in the C++ dispatch loop too: shape ops (transpose, reshape, flatten,
expand_dims, squeeze, broadcast_to, slice) as numpy views built there, sum/prod/max/min as the ufunc
reduce their implementation calls, matmul as np.matmul; everything else calls the registry's numpy
implementation. numpy's floating-point warnings are off while a program runs, as in the interpreter.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from . import dtypes as dt
from . import env
from .graph import Eqn, Graph, Lit, Var
from .interpret import run_eqn
from .primitives import ELEMENTWISE_KINDS, REGISTRY

try:
    from kiln import _engine
except ImportError as error:  # pure-Python install or source tree: everything runs on the interpreter
    _engine = None
    if env.engine_enabled():  # KILN_ENGINE=0 asked for exactly this: no warning then
        warnings.warn(f"kiln: the C++ engine (kiln._engine) did not load ({error}); compiled functions run on the "
                      "reference interpreter, which is much slower. Install kiln with `pip install .` and run "
                      "outside the source tree, or set KILN_ENGINE=0 to choose the interpreter.",
                      RuntimeWarning, stacklevel=2)
else:
    env.check_num_threads()


def _quiet_fp_state():
    """numpy's floating-point error state as (context variable, its value under errstate(all="ignore")).

    Programs run with it set, so numpy calls inside a program never warn, as the interpreter does not;
    (None, None) where this numpy keeps its error state elsewhere (the program then may warn).
    """
    try:
        from numpy._core import umath
    except ImportError:
        return None, None
    var = getattr(umath, "_extobj_contextvar", None)
    if var is None:
        return None, None
    with np.errstate(all="ignore"):
        return var, var.get()


if _engine is not None:
    _engine.set_fp_quiet(*_quiet_fp_state())

# The base class of `array`: a C type that exports the array's data through the buffer protocol
# (memoryview(a), bytes(a)). Without the extension it is `object`, and memoryview(a) is a TypeError
# before Python 3.12 (there `array.__buffer__` serves).
ArrayBuffer = getattr(_engine, "ArrayBuffer", object)

# Order of dtype codes shared with csrc/graph.h (enum Dtype).
_DTYPE_CODE = {d: i for i, d in enumerate(dt.ALL)}
_VALUE_INPUT, _VALUE_CONST, _VALUE_LITERAL, _VALUE_NODE = 0, 1, 2, 3
# Primitives whose output is their input converted to the output's type: a no-op when the types agree.
_COERCE = ("astype", "broadcast_to", "reshape", "flatten", "squeeze")
# Primitives that keep the elements in C order under a new shape: chains of them compose.
_RESHAPES = ("reshape", "flatten", "squeeze", "expand_dims")
# Elementwise primitives reach at most this many distinct array inputs per kernel.
MAX_KERNEL_INPUTS = 24
_NAMED_PARAM = re.compile(r"\{([A-Za-z_]\w*)\}")

_warned: set = set()
_kernels: dict = {}  # kernel name -> address of the loaded function


def _warn_once(message: str) -> None:
    if message and message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def available() -> bool:
    """True when compiled graphs can run on the C++ engine."""
    if _engine is None or not env.engine_enabled():
        return False
    if not _engine.compiler_path():
        _warn_once("kiln: no C++ compiler found ($CXX or c++ on PATH); compiled functions run on the "
                   "reference interpreter, which is much slower.")
        return False
    return True


def build_info() -> dict:
    """The extension's version and build flags, or {} without the extension."""
    return dict(_engine.build_info()) if _engine is not None else {}


class Program:
    """A compiled graph: `run(inputs)` executes it; `graph` and `kernel_sources` show what it runs."""

    __slots__ = ("graph", "kernel_sources", "run", "_native")

    def __init__(self, graph: Graph, kernel_sources: dict, native):
        self.graph = graph
        self.kernel_sources = kernel_sources
        self._native = native
        # The native bound method: a call goes straight into the C++ dispatch loop.
        self.run = native.run


# -- the compact form -------------------------------------------------------------------------------
def _literal_bits(value, dtype: dt.Dtype) -> int:
    arr = np.array(value, dtype=dtype.np)
    return int(arr.reshape(1).view(f"u{dtype.size}")[0])


def _param_key(params: dict) -> str:
    """Equal text means equal params; anything we cannot spell exactly gets a key of its own."""
    parts = []
    for name in sorted(params):
        parts.append(f"{name}={_param_text(params[name])}")
    return ";".join(parts)


def _param_text(v) -> str:
    if v is None or isinstance(v, (bool, int, float, str, dt.Dtype)):
        return f"{type(v).__name__}:{v!r}"
    if isinstance(v, (tuple, list)):
        return f"{type(v).__name__}({','.join(_param_text(x) for x in v)})"
    return f"object:{id(v)}"


def _c_value(value, dtype: dt.Dtype) -> str:
    """A C++ literal for a param value (fill's value) that round-trips exactly."""
    if dtype == dt.bool_:
        return "true" if bool(value) else "false"
    if dt.is_integer(dtype):
        v = int(np.array(value).astype(dtype.np))
        if v == -(2**63):
            return "(-9223372036854775807ll - 1)"
        return f"{v}ull" if v >= 2**63 else f"{v}ll"
    v = float(np.array(value).astype(dtype.np).astype(np.float64))
    if np.isnan(v):
        return "(__builtin_nan(\"\"))"
    if np.isinf(v):
        return "(__builtin_inf())" if v > 0 else "(-__builtin_inf())"
    return f"({v.hex()})"


def _expr(eqn: Eqn) -> str:
    """The registry's c_expr with named params filled in; "" if the equation cannot be fused."""
    prim = REGISTRY[eqn.prim]
    if eqn.prim == "broadcast_to":
        return "{0}"
    if prim.kind not in ELEMENTWISE_KINDS or prim.c_expr is None:
        return ""
    if any(isinstance(v, Lit) and v.dtype == dt.complex64 for v in eqn.inputs):
        return ""
    expr = prim.c_expr
    for name, value in eqn.params.items():
        key = "{" + name + "}"
        if key not in expr:
            continue
        if isinstance(value, dt.Dtype):
            text = f"kiln_{value.short}"
        elif name == "value":
            text = _c_value(value, eqn.out.dtype)
        else:
            return ""
        expr = expr.replace(key, text)
    return "" if _NAMED_PARAM.search(expr) else expr


class _Values:
    """Numbers every Var and (interned) literal; `objs[i]` is the Var or Lit behind value i."""

    def __init__(self):
        self.objs = []
        self.specs = []
        self.ids = {}
        self.literals = {}

    def add_var(self, var: Var, kind: int) -> int:
        index = len(self.objs)
        self.ids[id(var)] = index
        self.objs.append(var)
        self.specs.append((kind, _DTYPE_CODE[var.dtype], tuple(var.shape), 0))
        return index

    def of(self, v) -> int:
        if not isinstance(v, Lit):
            return self.ids[id(v)]
        bits = _literal_bits(v.value, v.dtype)
        key = (v.dtype.name, bits)
        if key not in self.literals:
            self.literals[key] = len(self.objs)
            self.objs.append(v)
            self.specs.append((_VALUE_LITERAL, _DTYPE_CODE[v.dtype], (), bits))
        return self.literals[key]


# Last-axis keepdims reductions the engine may fuse with their producers and consumers (a row region).
# max/min are exact in any float dtype. A fused sum accumulates in float64 and rounds once, so it differs
# from numpy's pairwise float32 sum by at most numpy's own rounding error (see tests/test_engine_reduce.py);
# it is fused for float32 only (numpy's float64 sum has no wider accumulator to hide behind).
_ROW_REDUCE_DTYPES = {"max": (dt.float16, dt.bfloat16, dt.float32, dt.float64),
                      "min": (dt.float16, dt.bfloat16, dt.float32, dt.float64), "sum": (dt.float32,)}


def _row_reduction(eqn: Eqn) -> bool:
    dtypes = _ROW_REDUCE_DTYPES.get(eqn.prim)
    if dtypes is None or eqn.inputs[0].dtype not in dtypes or eqn.out.dtype != eqn.inputs[0].dtype:
        return False
    ndim = len(eqn.inputs[0].shape)
    axes = tuple(int(a) for a in eqn.params["axes"])
    return ndim >= 1 and axes == (ndim - 1,) and bool(eqn.params["keepdims"]) and eqn.inputs[0].shape[-1] > 0


def _compact(graph: Graph, shapeless: bool, fuse: bool = True, unfused=()):
    values = _Values()
    for var in graph.inputs:
        values.add_var(var, _VALUE_INPUT)
    for var in graph.consts:
        values.add_var(var, _VALUE_CONST)
    op_index, ops, nodes = {}, [], []
    for eqn in graph.eqns:
        if eqn.prim not in op_index:
            prim = REGISTRY[eqn.prim]
            fusible = (prim.kind in ELEMENTWISE_KINDS and prim.c_expr is not None) or eqn.prim == "broadcast_to"
            fusible = fusible and eqn.prim not in unfused
            op_index[eqn.prim] = len(ops)
            identity = prim.kind == "unary" and prim.c_expr == "{0}"
            ops.append((eqn.prim, prim.kind, identity, eqn.prim in _COERCE, fusible, eqn.prim == "transpose",
                        eqn.prim in _RESHAPES))
        ins = [values.of(v) for v in eqn.inputs]
        out = values.add_var(eqn.out, _VALUE_NODE)
        ints = [int(a) for a in eqn.params["axes"]] if eqn.prim == "transpose" else []
        if _row_reduction(eqn):
            ints = [1]
        nodes.append((op_index[eqn.prim], _param_key(eqn.params), _expr(eqn), ins, out, ints))
    outputs = [values.of(v) for v in graph.outputs]
    spec = {
        "ops": ops, "values": values.specs, "nodes": nodes, "outputs": outputs,
        "num_inputs": len(graph.inputs), "num_consts": len(graph.consts), "shapeless": shapeless,
        "max_inputs": MAX_KERNEL_INPUTS, "fuse": fuse,
    }
    return spec, values


# -- compile ------------------------------------------------------------------------------------------
def _load(name: str, source: str) -> int:
    address = _kernels.get(name)
    if address is None:
        address, _from_disk, _compiled, warning = _engine.load_kernel(name, source)
        _warn_once(f"kiln: {warning}" if warning else "")
        _kernels[name] = address
    return address


def _fused_graph(graph: Graph, result: dict, values: _Values) -> tuple:
    """Rebuild a Python Graph from the engine's answer; returns (graph, steps) with steps in run order."""
    objs = values.objs
    new_inputs = {orig: [objs[v] for v in ins] for orig, ins in result["nodes"]}
    eqns, steps = [], []
    for region_index, node_index in result["steps"]:
        if region_index < 0:
            old = graph.eqns[node_index]
            eqn = Eqn(old.prim, tuple(new_inputs[node_index]), old.params, old.out)
            eqns.append(eqn)
            steps.append(("node", eqn, None))
            continue
        region = result["regions"][region_index]
        body_eqns = []
        for orig in region["nodes"]:
            old = graph.eqns[orig]
            body_eqns.append(Eqn(old.prim, tuple(new_inputs[orig]), old.params, old.out))
        ins = [objs[v] for v in region["inputs"]]
        out = objs[region["out"]]
        body = Graph(inputs=list(ins), eqns=body_eqns, outputs=[out])
        eqn = Eqn("fused", tuple(ins), {"body": body, "kernel": region["name"]}, out)
        eqns.append(eqn)
        steps.append(("kernel", eqn, region))
    fused = Graph(inputs=list(graph.inputs), eqns=eqns, outputs=list(graph.outputs),
                  consts=list(graph.consts), const_values=list(graph.const_values))
    return fused, steps


def _python_step(eqn: Eqn):
    """A non-fused equation as a call on numpy buffers (the registry's implementation)."""
    prim = REGISTRY.get(eqn.prim)
    if prim is None or prim.kind in ("unary", "binary", "ternary"):  # "fused" regions, elementwise ops
        def call(*args):  # numerics that may warn: run_eqn silences numpy's floating-point warnings
            return run_eqn(eqn, list(args))

        return call
    impl, params, out_dtype = prim.impl, eqn.params, eqn.out.dtype.np

    def fast_call(*args):  # shape ops, reductions, matmul...: call the implementation directly
        out = np.asarray(impl(*args, **params))
        return out if out.dtype == out_dtype else out.astype(out_dtype)

    return fast_call


# Shape primitives the dispatch loop runs natively as numpy views, and the param it needs (as ints).
_VIEW_STEPS = {"transpose": "axes", "reshape": "shape", "expand_dims": "axes", "squeeze": "axes",
               "broadcast_to": "shape"}
# Reductions whose implementation is exactly a ufunc's reduce (np.sum is np.add.reduce after its checks).
_REDUCE_UFUNCS = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}
_HALF_DTYPES = (dt.float16, dt.bfloat16)


# Native kernels for non-elementwise primitives (kernel families under csrc/: half-precision matmul,
# quantized matmul, ...). Each entry: prim name -> chooser(params, in_dtypes, out_dtype) returning a callable
# on numpy arrays with the registry implementation's meaning, or None where the family has no kernel.
# Compiled Programs reach them through _native_step; eager evaluation through native_impl.
_NATIVE_FAMILIES: dict = {}


def native_impl(prim: str, params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    """A native implementation of one primitive application, or None (then the registry's numpy one runs).

    Args:
        prim (str): the primitive's name.
        params (dict): the equation's params.
        in_dtypes (tuple): the inputs' Dtypes.
        out_dtype (Dtype): the output's Dtype.

    Returns:
        callable | None: ``fn(*numpy_inputs) -> numpy array`` computing what the registry's implementation
        computes (within the family's stated error bound), or None.
    """
    if _engine is None or not env.engine_enabled():
        return None
    chooser = _NATIVE_FAMILIES.get(prim)
    return chooser(params, in_dtypes, out_dtype) if chooser is not None else None


def _native_step(eqn: Eqn) -> dict:
    """How the dispatch loop runs a non-fused equation without calling back into Python ({} = it cannot).

    Each native form computes exactly what the registry's implementation computes; anything unusual at run
    time (a layout or shape the native form does not handle) falls back to the Python call.
    """
    prim, params = eqn.prim, eqn.params
    native = native_impl(prim, params, tuple(v.dtype for v in eqn.inputs), eqn.out.dtype)
    if native is not None:
        return {"kind": "call", "func": native, "out_dtype": eqn.out.dtype.np}
    if prim in _VIEW_STEPS:
        return {"kind": prim, "ints": [int(v) for v in params[_VIEW_STEPS[prim]]]}
    if prim == "flatten":
        return {"kind": "flatten", "ints": [int(params["start_axis"]), int(params["end_axis"])]}
    if prim == "slice":
        return {"kind": "slice", "ints": [int(v) for k in ("start", "stop", "strides") for v in params[k]]}
    if prim in _REDUCE_UFUNCS:
        if prim in ("sum", "prod") and eqn.inputs[0].dtype in _HALF_DTYPES:
            return {}  # the implementation accumulates halves in float32
        return {"kind": "reduce", "func": _REDUCE_UFUNCS[prim].reduce, "axis": tuple(params["axes"]),
                "keepdims": bool(params["keepdims"]), "out_dtype": eqn.out.dtype.np}
    if prim == "matmul" and eqn.inputs[0].dtype not in _HALF_DTYPES:
        return {"kind": "call", "func": np.matmul, "out_dtype": eqn.out.dtype.np}
    return {}


def _load_metal_shim(name: str, source: str) -> int:
    key = name + "_shim"
    address = _kernels.get(key)
    if address is None:
        address, _from_disk, _compiled, warning = _engine.load_metal_shim(name, source)
        _warn_once(f"kiln: {warning}" if warning else "")
        _kernels[key] = address
    return address


def _native_program(graph: Graph, steps: list, values: _Values, load=_load):
    index = {id(obj): i for i, obj in enumerate(values.objs)}

    def slot(v) -> int:
        return values.of(v) if isinstance(v, Lit) else index[id(v)]

    n_in = len(graph.inputs)
    output_slots = [slot(v) for v in graph.outputs]
    last_use = {}
    for i, (_, eqn, _) in enumerate(steps):
        for v in eqn.inputs:
            last_use[slot(v)] = i
    # Which values may share memory with an input or constant (numpy views): outputs of those are copied.
    may_alias = set(range(n_in + len(graph.consts)))
    may_alias.update(i for i, o in enumerate(values.objs) if isinstance(o, Lit))
    native_steps, sources, used_literals = [], {}, set()
    for i, (kind, eqn, region) in enumerate(steps):
        ins = [slot(v) for v in eqn.inputs]
        out = slot(eqn.out)
        release = sorted(s for s in set(ins) if last_use.get(s) == i and s not in output_slots)
        step = {"kind": "python", "inputs": ins, "out": out, "release": release, "call": _python_step(eqn)}
        if kind == "kernel" and region["rows"]:
            step["kind"] = "rows"
            sources[region["name"]] = region["source"]
            step["fn"] = load(region["name"], region["source"])
            step["in_types"] = [v.dtype.np.num for v in eqn.inputs]
            step["in_sizes"] = [v.dtype.size for v in eqn.inputs]
            step["out_dtype"] = eqn.out.dtype.np
            body = eqn.params["body"]
            row = next(e.inputs[0].shape for e in body.eqns if REGISTRY[e.prim].kind == "reduction")
            step["shapes"] = [list(row), list(eqn.out.shape)] + [list(v.shape) for v in eqn.inputs]
        elif kind == "kernel":
            step["kind"] = "kernel"
            sources[region["name"]] = region["source"]
            step["fn"] = load(region["name"], region["source"])
            step["in_types"] = [v.dtype.np.num for v in eqn.inputs]
            step["in_sizes"] = [v.dtype.size for v in eqn.inputs]
            step["out_dtype"] = eqn.out.dtype.np
            body = eqn.params["body"]
            step["shapes"] = [list(e.out.shape) for e in body.eqns if e.prim == "broadcast_to"]
        else:
            step.update(_native_step(eqn))
            used_literals.update(s for s, v in zip(ins, eqn.inputs) if isinstance(v, Lit))
            fresh = REGISTRY[eqn.prim].kind in ("binary", "ternary", "reduction", "random")  # never a view
            if not fresh and any(s in may_alias for s in ins):
                may_alias.add(out)
        native_steps.append(step)
    fixed = [(n_in + i, value) for i, value in enumerate(graph.const_values)]
    for s, v in zip(output_slots, graph.outputs):
        if isinstance(v, Lit):
            used_literals.add(s)
    for s in sorted(used_literals):
        lit = values.objs[s]
        fixed.append((s, np.array(lit.value, dtype=lit.dtype.np)))
    copies, seen = [], set()
    for s in output_slots:
        copies.append(s in may_alias or s in seen)
        seen.add(s)
    native = _engine.Program(n_in, len(values.objs), fixed, native_steps, output_slots, copies)
    return native, sources


def simplify_graph(graph: Graph, shapeless: bool = False) -> Graph:
    """The graph after the engine's simplification alone (no fusion): for tests and KILN_DEBUG."""
    if _engine is None:
        raise RuntimeError("[compile] the C++ engine (kiln._engine) is not built")
    spec, values = _compact(graph, shapeless, fuse=False)
    simplified, _ = _fused_graph(graph, _engine.optimize(spec), values)
    return simplified


def compile_graph(graph: Graph, shapeless: bool = False, unfused=()) -> Program:
    """Simplify, fuse, render and JIT-compile `graph`.

    Args:
        graph (Graph): a traced graph (`kiln.core.tracing.make_graph`).
        shapeless (bool): keep the program valid at other input shapes. Default: ``False``.
        unfused (tuple): names of primitives to run as single steps, never inside a fused kernel (eager
          evaluation keeps approximate math out of graphs that draw random numbers). Default: ``()``.

    Returns:
        Program: with ``run(inputs)``, ``graph`` (the fused Graph) and ``kernel_sources``.
    """
    if _engine is None:
        raise RuntimeError("[compile] the C++ engine (kiln._engine) is not built")
    spec, values = _compact(graph, shapeless, unfused=unfused)
    result = _engine.optimize(spec)
    fused, steps = _fused_graph(graph, result, values)
    native, sources = _native_program(fused, steps, values)
    env.debug(2, f"graph after simplify and fuse ({result['rewrites']} rewrites):\n{fused}")
    for name, source in sources.items():
        env.debug(3, f"kernel {name}:\n{source}")
    return Program(fused, sources, native)


def render_metal(graph: Graph, shapeless: bool = False) -> dict:
    """Render every fused region of ``graph`` as a Metal Shading Language kernel.

    The regions are the ones ``compile_graph`` finds; only the language differs. Real Metal dispatch
    belongs to the macOS backend (see the TODO in csrc/render_metal.cpp); on Linux the sources run
    through metal/metal_shim.h (``compile_graph_metal_shim``).

    Args:
        graph (Graph): a traced graph (`kiln.core.tracing.make_graph`).
        shapeless (bool): keep the kernels valid at other input shapes. Default: ``False``.

    Returns:
        dict: kernel name -> Metal source, without the Metal preamble (``metal_full_source`` adds it).
    """
    if _engine is None:
        raise RuntimeError("[compile] the C++ engine (kiln._engine) is not built")
    spec, _ = _compact(graph, shapeless)
    spec["language"] = "metal"
    result = _engine.optimize(spec)
    return {region["name"]: region["source"] for region in result["regions"]}


def metal_full_source(kernel: str) -> str:
    """A rendered Metal kernel with the Metal preamble (metal/kiln_metal.h) it is built with."""
    if _engine is None:
        raise RuntimeError("[compile] the C++ engine (kiln._engine) is not built")
    return _engine.metal_full_source(kernel)


def compile_graph_metal_shim(graph: Graph, shapeless: bool = False) -> Program:
    """Like ``compile_graph``, but every region runs its Metal kernel, compiled as C++ through the shim.

    A test aid for Linux: the Metal source is what a Mac would build, the shim (metal/metal_shim.h) maps
    Metal's qualifiers, types and math to C++ and runs the grid as a loop, and the runtime's variant
    choice (flat or strided) reaches the kernel through the same launch arguments.

    Args:
        graph (Graph): a traced graph (`kiln.core.tracing.make_graph`).
        shapeless (bool): keep the program valid at other input shapes. Default: ``False``.

    Returns:
        Program: ``kernel_sources`` holds the Metal sources.
    """
    if _engine is None:
        raise RuntimeError("[compile] the C++ engine (kiln._engine) is not built")
    spec, values = _compact(graph, shapeless)
    spec["language"] = "metal"
    result = _engine.optimize(spec)
    fused, steps = _fused_graph(graph, result, values)
    native, sources = _native_program(fused, steps, values, load=_load_metal_shim)
    return Program(fused, sources, native)


if _engine is not None:
    from . import kernels  # noqa: E402,F401  (registers the native kernel families in _NATIVE_FAMILIES)
