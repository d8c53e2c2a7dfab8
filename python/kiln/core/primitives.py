"""THE registry: one record per primitive.

A record holds everything any pass needs to know about a primitive: its kind (passes test kinds, never
names), shape/dtype rule, numpy reference implementation (the definition of its meaning), vjp, jvp and
vmap rules, and the scalar C expression the kernel generators emit. Adding a primitive = one record.
Families of records live in `core/prims/*.py`; each calls `register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

# kinds
UNARY = "unary"
BINARY = "binary"
TERNARY = "ternary"
REDUCTION = "reduction"
SHAPE = "shape"
INDEX = "index"
RANDOM = "random"
OTHER = "other"
ELEMENTWISE_KINDS = (UNARY, BINARY, TERNARY)


@dataclass(frozen=True)
class Primitive:
    """One primitive.

    impl(*np_inputs, **params) -> np.ndarray   the reference meaning (numpy)
    shape_rule(*avals, **params) -> (shape, dtype)   avals have .shape and .dtype; raise ValueError("[op] ...")
    vjp(ct, out, inputs, params) -> tuple of input cotangents (None means zero)
    jvp(tangents, out, inputs, params) -> output tangent (tangents hold None for zero)
    vmap(inputs, bdims, params) -> (out, out_bdim)   bdims hold None for unbatched inputs
    c_expr: the scalar expression for fused kernels, `{0}`, `{1}`.. are the operands
    """

    name: str
    kind: str
    impl: Callable
    shape_rule: Callable
    vjp: Optional[Callable] = None
    jvp: Optional[Callable] = None
    vmap: Optional[Callable] = None
    c_expr: Optional[str] = None
    differentiable: bool = True
    # Params normalised against the traced input shape (slice bounds): shapeless replay at another
    # input shape must be refused, as the rule would answer for the old shape.
    fixed_at_trace: bool = False
    # Valid at every input rank: no param encodes the rank (axes, permutations, target shapes), so a
    # shapeless trace made only of such equations serves inputs of another rank. None: elementwise kinds.
    rank_agnostic: Optional[bool] = None
    # Communicates with other processes (mx.distributed): runs on every evaluation, so tracing never turns
    # it into a trace-time constant, even when none of its inputs depends on the traced function's inputs.
    effects: bool = False
    doc: str = field(default="", compare=False)

    def __post_init__(self):
        if self.rank_agnostic is None:
            object.__setattr__(self, "rank_agnostic", self.kind in ELEMENTWISE_KINDS)


REGISTRY: dict[str, Primitive] = {}


def register(prim: Primitive) -> Primitive:
    if prim.name in REGISTRY:
        raise ValueError(f"primitive {prim.name!r} registered twice")
    REGISTRY[prim.name] = prim
    return prim


def get(name: str) -> Primitive:
    return REGISTRY[name]


def is_elementwise(name: str) -> bool:
    return REGISTRY[name].kind in ELEMENTWISE_KINDS


def _load_families():
    # Importing a family module registers its records.
    from .prims import elementwise, reduce, shape  # noqa: F401
    for optional in ("index", "linalg", "random", "conv", "sort", "quantized", "distributed", "fft", "float_formats"):
        try:
            __import__(f"{__package__}.prims.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.prims.{optional}":
                raise


_load_families()
