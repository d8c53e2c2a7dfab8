"""The IR: a flat, typed SSA list of equations with a canonical (jaxpr-like) text form.

A Graph is what `compile` traces, what the engine simplifies and fuses, and what the interpreter runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .dtypes import Dtype


class Var:
    """One SSA value: a graph input, a constant, or an equation's output."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple, dtype: Dtype):
        self.shape = tuple(shape)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"Var({type_string(self.shape, self.dtype)})"


class Lit:
    """A 0-d constant written inline (`1.0:f32[]`); its value is a Python scalar of `dtype`."""

    __slots__ = ("value", "dtype")
    shape = ()

    def __init__(self, value, dtype: Dtype):
        self.value = value
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"Lit({format_literal(self.value, self.dtype)})"


@dataclass
class Eqn:
    prim: str
    inputs: tuple
    params: dict
    out: Var


@dataclass
class Graph:
    """inputs and consts are Vars; const_values holds the constants' numpy buffers, in order."""

    inputs: list
    eqns: list
    outputs: list
    consts: list = field(default_factory=list)
    const_values: list = field(default_factory=list)

    def __str__(self) -> str:
        return format_graph(self)


def type_string(shape, dtype: Dtype) -> str:
    return f"{dtype.short}[{','.join(str(d) for d in shape)}]"


def format_literal(value, dtype: Dtype) -> str:
    if isinstance(value, float) or isinstance(value, np.floating):
        v = float(value)
        if math.isnan(v):
            text = "nan"
        elif math.isinf(v):
            text = "inf" if v > 0 else "-inf"
        else:
            text = repr(v)
    elif isinstance(value, (bool, np.bool_)):
        text = "True" if value else "False"
    else:
        text = repr(value)
    return f"{text}:{dtype.short}[]"


def _format_param(value) -> str:
    if isinstance(value, Graph):
        return "{...}"
    if isinstance(value, Dtype):
        return value.name
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _var_names():
    """a, b, ..., z, ba, bb, ... as in jaxprs."""
    n = 0
    while True:
        s, k = "", n
        while True:
            s = chr(ord("a") + k % 26) + s
            k //= 26
            if k == 0:
                break
        yield s
        n += 1


def format_graph(graph: Graph, indent: int = 0) -> str:
    names = {}
    gen = _var_names()

    def name(v) -> str:
        if isinstance(v, Lit):
            return format_literal(v.value, v.dtype)
        if id(v) not in names:
            names[id(v)] = next(gen)
        return names[id(v)]

    def decl(v) -> str:
        return f"{name(v)}:{type_string(v.shape, v.dtype)}"

    pad = " " * indent
    consts = " ".join(decl(v) for v in graph.consts)
    ins = " ".join(decl(v) for v in graph.inputs)
    lines = [f"{pad}{{ lambda {consts}{' ' if consts else ''}; {ins}. let"]
    for e in graph.eqns:
        params = ""
        if e.params:
            inner = " ".join(f"{k}={_format_param(v)}" for k, v in e.params.items() if k != "body")
            params = f"[{inner}]" if inner else ""
        args = " ".join(name(v) for v in e.inputs)
        lines.append(f"{pad}    {decl(e.out)} = {e.prim}{params} {args}".rstrip())
        if "body" in e.params and isinstance(e.params["body"], Graph):
            lines.append(format_graph(e.params["body"], indent + 6))
    outs = ", ".join(name(v) for v in graph.outputs)
    lines.append(f"{pad}  in ({outs}{',' if len(graph.outputs) == 1 else ''}) }}")
    return "\n".join(lines)
