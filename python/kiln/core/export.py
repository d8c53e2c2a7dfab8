"""Exporting computations: `export_to_dot` (the lazy graph as Graphviz DOT) and MLX's function export,
`export_function` / `exporter` / `import_function`: traces written in kiln's own file format
(core/function_file.py), imported without the original Python function and run through `compile`.
"""

from __future__ import annotations

import contextlib

from . import function_file, mlxfn
from .array import array, bind, transform_scope

__all__ = ["FunctionExporter", "export_function", "export_to_dot", "exporter", "import_function"]


def _label(node) -> str:
    from .graph import type_string

    what = node._prim if node._prim else ("placeholder" if node._placeholder else "array")
    return f"{what}\\n{type_string(node.shape, node.dtype)}"


def export_to_dot(file, *args, **kwargs) -> None:
    """Write the computation graph of the given arrays (positional or named) to `file` (path or stream).

    Args:
        file (str or file): Path or writable stream.
        *args (array): Arrays whose graphs to write.
        **kwargs (array): Named arrays whose graphs to write.

    Returns:
        None
    """
    outputs = [(str(i), a) for i, a in enumerate(args)] + list(kwargs.items())
    for name, a in outputs:
        if not isinstance(a, array):
            raise ValueError(f"[export_to_dot] Expected arrays, got {type(a).__name__} for output {name}.")
    ids, lines, stack = {}, ["digraph {"], [a for _, a in outputs]
    while stack:
        node = stack.pop()
        if id(node) in ids:
            continue
        ids[id(node)] = f"n{len(ids)}"
        stack.extend(node._inputs)
    seen = set()
    stack = [a for _, a in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        lines.append(f'  {ids[id(node)]} [label="{_label(node)}"];')
        for x in node._inputs:
            lines.append(f"  {ids[id(x)]} -> {ids[id(node)]};")
            stack.append(x)
    for name, a in outputs:
        lines.append(f'  out_{name} [label="{name}", shape=box];')
        lines.append(f"  {ids[id(a)]} -> out_{name};")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if hasattr(file, "write"):
        file.write(text)
    else:
        with open(file, "w") as f:
            f.write(text)


# -- export_function / exporter / import_function ------------------------------------------------------------
def _split_inputs(op: str, args: tuple, kwargs: dict) -> tuple:
    """MLX's two calling forms: `f(*arrays, **arrays)`, or `f(tuple_or_list_of_arrays, dict_of_arrays)`."""
    if args and isinstance(args[0], (list, tuple)) and not kwargs and len(args) <= 2:
        rest = args[1] if len(args) == 2 else {}
        if not isinstance(rest, dict):  # MLX raises ValueError for every malformed input here
            raise ValueError(f"[{op}] After a sequence of positional inputs only a dict of keyword inputs may "
                             f"follow, got {type(rest).__name__}.")
        args, kwargs = tuple(args[0]), dict(rest)
    elif len(args) == 1 and isinstance(args[0], dict) and not kwargs:
        args, kwargs = (), dict(args[0])
    for where, value in [(f"positional input {i}", a) for i, a in enumerate(args)] + [
            (f"keyword input '{k}'", v) for k, v in kwargs.items()]:
        if not isinstance(value, array):
            raise ValueError(f"[{op}] Inputs must be arrays; {where} is a {type(value).__name__}.")  # noqa: TRY004
    return tuple(args), dict(kwargs)


def _flat_outputs(result) -> list:
    outs = list(result) if isinstance(result, (list, tuple)) else [result]
    for o in outs:
        if not isinstance(o, array):
            message = f"a flat tuple or list of arrays, got a {type(o).__name__} among its outputs"
            raise ValueError(f"[export_function] The function must return an array or {message}.")  # noqa: TRY004
    return outs


def _trace(fun, args: tuple, kwargs: dict, shapeless: bool) -> dict:
    """Trace `fun` on placeholders like the example inputs (positional ones first, then sorted keywords)."""
    from .tracing import graph_from_outputs, placeholders_like, shapeless_scope

    names = sorted(kwargs)
    inputs = list(args) + [kwargs[k] for k in names]
    placeholders = placeholders_like(inputs, "export_function")
    # The function sees copies, so an in-place update of an argument (`x += y`) leaves the graph's inputs
    # intact (the tracer elides copies), as in compile.
    seen = [bind("copy", p) for p in placeholders]
    ph_args = seen[:len(args)]
    ph_kwargs = dict(zip(names, seen[len(args):]))
    with transform_scope(), (shapeless_scope() if shapeless else contextlib.nullcontext()):
        outputs = _flat_outputs(fun(*ph_args, **ph_kwargs))
    return {"graph": graph_from_outputs(outputs, placeholders), "shapeless": shapeless, "kwargs": names}


def _write(path, traces: list, metadata) -> None:
    if metadata is not None and not isinstance(metadata, str):
        raise ValueError(f"[export_function] metadata must be a string, got {type(metadata).__name__}.")
    data = function_file.encode(traces, metadata)
    with open(path, "wb") as f:
        f.write(data)


def export_function(file, fun, *args, shapeless: bool = False, metadata: str | None = None, **kwargs) -> None:
    """Export a function, traced on example inputs, to a file that :func:`import_function` reads.

    The file is kiln's own format (not MLX's ``.mlxfn`` layout); see ``kiln/core/function_file.py``.

    Args:
        file (str or Callable): The file path to write, or a callback that receives the traced graph as a
          sequence of dicts (see :func:`_send_to_callback`: MLX's ``inputs``, ``keyword_inputs``, ``outputs``,
          ``constants`` and one ``primitive`` per operation).
        fun (Callable): A function of zero or more arrays returning an array or a flat tuple/list of arrays.
        *args (array): Example positional inputs, or one tuple/list of them (then optionally a dict of keyword
          inputs).
        shapeless (bool, optional): Whether the imported function accepts inputs of other shapes (same
          dtypes and numbers of dimensions). Default: ``False``.
        metadata (str, optional): A string saved alongside, read back by ``import_function(...,
          return_metadata=True)``. Default: ``None``.
        **kwargs (array): Example keyword inputs.

    Returns:
        None
    """
    args, kwargs = _split_inputs("export_function", args, kwargs)
    if callable(file):
        if metadata is not None:
            raise ValueError("[export_function] The metadata argument is only supported when exporting to a file, "
                             "not when using a callback.")
        _send_to_callback(file, _trace(fun, args, kwargs, shapeless))
        return
    _write(file, [_trace(fun, args, kwargs, shapeless)], metadata)


# MLX's primitive class names where they differ from the CamelCase of kiln's primitive name. MLX folds some
# operations into one primitive with a state field (every reduction is `Reduce`, every cumulative op `Scan`);
# a callback tells them apart by the `kiln_primitive` and `parameters` fields that kiln adds.
_MLX_PRIMITIVE_NAMES = {
    "arccos": "ArcCos", "arccosh": "ArcCosh", "arcsin": "ArcSin", "arcsinh": "ArcSinh", "arctan": "ArcTan",
    "arctan2": "ArcTan2", "arctanh": "ArcTanh", "argmax": "ArgReduce", "argmin": "ArgReduce",
    "argpartition": "ArgPartition", "argsort": "ArgSort", "as_strided": "AsStrided", "astype": "AsType",
    "bitwise_and": "BitwiseBinary", "bitwise_or": "BitwiseBinary", "bitwise_xor": "BitwiseBinary",
    "left_shift": "BitwiseBinary", "right_shift": "BitwiseBinary", "broadcast_to": "Broadcast",
    "conv_general": "Convolution", "cummax": "Scan", "cummin": "Scan", "cumprod": "Scan", "cumsum": "Scan",
    "custom": "CustomTransforms", "erfinv": "ErfInv", "fft": "FFT", "fill": "Full", "gather_qmm": "GatherQMM",
    "inv": "Inverse", "log10": "Log", "log2": "Log", "logaddexp": "LogAddExp", "lu_factor": "LUF",
    "all": "Reduce", "any": "Reduce", "max": "Reduce", "min": "Reduce", "prod": "Reduce", "sum": "Reduce",
    "qr": "QRF", "searchsorted": "SearchSorted",
    "scatter_add": "Scatter", "scatter_maximum": "Scatter", "scatter_minimum": "Scatter",
    "scatter_multiply": "Scatter", "svd": "SVD", "all_sum": "AllReduce", "all_max": "AllReduce",
    "all_min": "AllReduce", "sum_scatter": "ReduceScatter",
}


def _mlx_primitive_name(prim: str) -> str:
    return _MLX_PRIMITIVE_NAMES.get(prim) or "".join(part.capitalize() for part in prim.split("_"))


def _value_names():
    """MLX's names for the graph's values: A, B, ..., Z, AA, AB, ..."""
    n = 0
    while True:
        name, k = "", n
        while True:
            name = chr(ord("A") + k % 26) + name
            k = k // 26 - 1
            if k < 0:
                break
        yield name
        n += 1


def _send_to_callback(callback, trace: dict) -> None:
    """Describe a trace to `callback` as MLX does: one dict each for the inputs, keyword inputs, outputs and
    constants, then one `primitive` dict per operation in execution order. Values are `(name, shape, dtype)`
    tuples and constants `(name, array)` pairs; a primitive's `arguments` are kiln's parameter values (MLX
    passes its own primitive state there, which kiln does not have), with `kiln_primitive` and `parameters`
    (a dict) added so that no information is lost."""
    from .graph import Lit

    graph, names, fresh = trace["graph"], {}, _value_names()
    n_positional = len(graph.inputs) - len(trace["kwargs"])

    def name_of(v) -> str:
        if id(v) not in names:
            names[id(v)] = next(fresh)
        return names[id(v)]

    def described(v) -> tuple:
        return name_of(v), tuple(v.shape), v.dtype

    inputs = [described(v) for v in graph.inputs]
    outputs = [described(v) for v in graph.outputs]
    constants = [(name_of(v), array(value)) for v, value in zip(graph.consts, graph.const_values)]
    literals = [v for e in graph.eqns for v in e.inputs if isinstance(v, Lit)]
    literals += [v for v in graph.outputs if isinstance(v, Lit)]
    for lit in dict.fromkeys(literals):  # a literal is a constant in MLX's graphs
        constants.append((name_of(lit), array(lit.value, dtype=lit.dtype)))
    callback({"type": "inputs", "inputs": inputs[:n_positional]})
    callback({"type": "keyword_inputs",
              "keywords": [(k, name_of(v)) for k, v in zip(trace["kwargs"], graph.inputs[n_positional:])]})
    callback({"type": "outputs", "outputs": outputs})
    callback({"type": "constants", "constants": constants})
    for e in graph.eqns:
        callback({"type": "primitive", "name": _mlx_primitive_name(e.prim), "kiln_primitive": e.prim,
                  "inputs": [described(v) for v in e.inputs], "outputs": [described(e.out)],
                  "arguments": list(e.params.values()), "parameters": dict(e.params)})


class FunctionExporter:
    """Collects several traces of one function (different input counts, keywords or shapes) into one file,
    written when closed; returned by :func:`exporter`."""

    def __init__(self, file, fun, shapeless: bool = False, metadata: str | None = None):
        self._file, self._fun, self._shapeless, self._metadata = file, fun, shapeless, metadata
        self._traces = []
        self._closed = False

    def __call__(self, *args, **kwargs) -> None:
        if self._closed:
            raise RuntimeError("[FunctionExporter::call] The exporter is closed: no more traces can be added.")
        args, kwargs = _split_inputs("FunctionExporter::call", args, kwargs)
        self._traces.append(_trace(self._fun, args, kwargs, self._shapeless))

    def close(self) -> None:
        """Write the collected traces to the file (once)."""
        if not self._closed:
            self._closed = True
            _write(self._file, self._traces, self._metadata)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def exporter(file: str, fun, *, shapeless: bool = False, metadata: str | None = None) -> FunctionExporter:
    """Make a callable object that exports several traces of a function to one file.

    Args:
        file (str): File path to export the function to.
        fun (Callable): The function to trace.
        shapeless (bool, optional): Whether the traces accept inputs of other shapes. Default: ``False``.
        metadata (str, optional): A string to save alongside the function. Default: ``None``.

    Returns:
        FunctionExporter: Call it with example inputs to add a trace; the file is written on ``close()`` or
        at the end of a ``with`` block.
    """
    return FunctionExporter(file, fun, shapeless=shapeless, metadata=metadata)


def _signature(graph, kwargs) -> str:
    n_pos = len(graph.inputs) - len(kwargs)
    names = [str(i + 1) for i in range(n_pos)] + [f'"{k}"' for k in kwargs]
    return "\n".join(f"   {n}: {tuple(v.shape)} {v.dtype.name}" for n, v in zip(names, graph.inputs))


class _Replay:
    """An imported trace as a function of its inputs. A callable object, not a closure: `compile` would warn
    about one code object compiled again and again when many functions are imported."""

    __name__ = "imported_function"

    def __init__(self, graph):
        self.graph = graph

    def __call__(self, *inputs):
        from .compile import replay_graph

        return tuple(replay_graph(self.graph, list(inputs)))


class _ImportedFunction:
    """The imported traces: a call picks the trace whose signature matches and runs it compiled."""

    def __init__(self, traces: list, path):
        from .compile import compile as compile_function

        self._traces = traces
        self._path = path
        self._compiled = [compile_function(_Replay(t["graph"]), shapeless=t["shapeless"]) for t in traces]

    def _matches(self, trace, args, kwargs) -> bool:
        graph = trace["graph"]
        if sorted(kwargs) != trace["kwargs"] or len(args) + len(kwargs) != len(graph.inputs):
            return False
        inputs = list(args) + [kwargs[k] for k in trace["kwargs"]]
        for x, v in zip(inputs, graph.inputs):
            if x.dtype != v.dtype or x.ndim != len(v.shape) or (not trace["shapeless"] and x.shape != v.shape):
                return False
        return True

    def __call__(self, *args, **kwargs) -> tuple:
        args, kwargs = _split_inputs("import_function::call", args, kwargs)
        for trace, compiled in zip(self._traces, self._compiled):
            if self._matches(trace, args, kwargs):
                return compiled(*args, *[kwargs[k] for k in trace["kwargs"]])
        known = "\n".join(f" {i + 1}. Function with {len(t['graph'].inputs) - len(t['kwargs'])} positional inputs "
                          f"and {len(t['kwargs'])} keyword inputs{' (shapeless)' if t['shapeless'] else ''}:\n"
                          f"{_signature(t['graph'], t['kwargs'])}" for i, t in enumerate(self._traces))
        called = "\n".join([f"   {i + 1}: {tuple(a.shape)} {a.dtype.name}" for i, a in enumerate(args)] +
                           [f'   "{k}": {tuple(v.shape)} {v.dtype.name}' for k, v in kwargs.items()])
        raise ValueError("[import_function::call] No imported function found which matches the given positional "
                         f"and keyword arguments. Possible functions include:\n{known}\n\nCalled with {len(args)} "
                         f"positional inputs and {len(kwargs)} keyword inputs:\n{called}")


def import_function(file: str, return_metadata: bool = False):
    """Import a function written by :func:`export_function` or :func:`exporter`, or by real MLX's
    ``mx.export_function`` / ``mx.exporter`` (an ``.mlxfn`` file, read by ``kiln/core/mlxfn.py``).

    The imported function takes ``*args`` and ``**kwargs`` (or a tuple of arrays and a dict of keyword
    arrays) and always returns a tuple of arrays. It runs compiled (on the C++ engine when available, else on
    the reference interpreter) and composes with ``grad``, ``vmap`` and ``compile``.

    Args:
        file (str): The file path to import the function from.
        return_metadata (bool, optional): Also return the metadata string saved with the function.
          Default: ``False``.

    Returns:
        Callable or tuple: The imported function, and the metadata string (or ``None``) if asked for.
    """
    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RuntimeError(f"[import_function] Failed to open {file}: {e.strerror}.") from None
    try:
        if mlxfn.looks_like_mlx(data):
            traces, metadata = mlxfn.read(data)
        else:
            traces, metadata = function_file.decode(data)
    except mlxfn.FormatError as e:
        raise ValueError(f"[import_function] Cannot read the MLX function file {file}: {e}") from None
    except function_file.FormatError as e:
        raise ValueError(f"[import_function] {file} is not a valid kiln function file: {e}") from None
    imported = _ImportedFunction(traces, file)
    return (imported, metadata) if return_metadata else imported
