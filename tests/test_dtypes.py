"""Dtype objects, categories and MLX's promotion table (hand-written, and against real MLX where installed)."""

import pickle

import kiln.core as mx
import numpy as np
import pytest
from kiln.core import dtypes as dt

ALL_DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
              "float16", "bfloat16", "float32", "float64", "complex64"]
SIZES = {"bool_": 1, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "int8": 1, "int16": 2, "int32": 4,
         "int64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8}


@pytest.mark.parametrize("name", ALL_DTYPES)
def test_dtype_objects(name):
    d = getattr(mx, name)
    assert d.size == SIZES[name]
    assert d == getattr(mx, name) and hash(d) == hash(getattr(mx, name))
    assert d != (mx.int32 if name != "int32" else mx.float32)
    assert repr(d) == str(d) == f"mlx.core.{d.name}"  # MLX's repr (checked against MLX below)
    assert pickle.loads(pickle.dumps(d)) == d
    assert mx.zeros((1,), d).itemsize == SIZES[name]


# Hand-written from MLX's documented promotion lattice.
PROMOTIONS = [
    ("bool_", "int8", "int8"), ("bool_", "float16", "float16"), ("uint8", "int8", "int16"),
    ("uint8", "uint16", "uint16"), ("uint16", "int16", "int32"), ("uint32", "int32", "int64"),
    ("uint32", "int64", "int64"), ("uint64", "int64", "float32"), ("uint64", "int8", "float32"),
    ("uint8", "int64", "int64"), ("int8", "int64", "int64"), ("int64", "float16", "float16"),
    ("uint64", "bfloat16", "bfloat16"), ("float16", "bfloat16", "float32"), ("float16", "float32", "float32"),
    ("bfloat16", "float64", "float64"), ("float32", "float64", "float64"), ("int32", "complex64", "complex64"),
    ("float64", "complex64", "complex64"), ("int32", "int32", "int32"),
]


@pytest.mark.parametrize("a, b, expected", PROMOTIONS)
def test_promotion_table(a, b, expected):
    da, db = getattr(mx, a), getattr(mx, b)
    assert dt.promote_types(da, db) == getattr(mx, expected)
    assert dt.promote_types(db, da) == getattr(mx, expected)
    assert (mx.zeros((1,), da) + mx.zeros((1,), db)).dtype == getattr(mx, expected)


def test_promotion_matches_mlx_for_every_pair(mlx):
    for a in ALL_DTYPES:
        for b in ALL_DTYPES:
            theirs = (mlx.zeros((1,), getattr(mlx, a)) + mlx.zeros((1,), getattr(mlx, b))).dtype
            assert dt.promote_types(getattr(mx, a), getattr(mx, b)).name == str(theirs).split(".")[-1], (a, b)


def test_result_type_with_weak_scalars():
    assert dt.result_type(mx.zeros((1,), mx.float16), 2.0) == mx.float16
    assert dt.result_type(mx.zeros((1,), mx.uint8), 1) == mx.uint8
    assert dt.result_type(mx.zeros((1,), mx.bool_), 1) == mx.int32
    assert dt.result_type(mx.zeros((1,), mx.int8), 1.5) == mx.float32
    assert dt.result_type(1, 2.0) == mx.float32
    assert dt.result_type(2**40) == mx.int64
    assert dt.result_type(mx.float16, mx.int8) == mx.float16


@pytest.mark.parametrize("a, b, expected", [
    (mx.float32, mx.floating, True), (mx.float16, mx.inexact, True), (mx.complex64, mx.inexact, True),
    (mx.int8, mx.integer, True), (mx.int8, mx.signedinteger, True), (mx.uint8, mx.signedinteger, False),
    (mx.uint8, mx.unsignedinteger, True), (mx.bool_, mx.number, False), (mx.bool_, mx.generic, True),
    (mx.floating, mx.inexact, True), (mx.integer, mx.number, True), (mx.floating, mx.integer, False),
    (mx.float32, mx.float32, True), (mx.float32, mx.float16, False), (mx.int32, mx.floating, False),
    (mx.bfloat16, mx.floating, True), (mx.complex64, mx.floating, False),
])
def test_issubdtype(a, b, expected):
    assert mx.issubdtype(a, b) is expected


def test_issubdtype_matches_mlx(mlx):
    kinds = ["floating", "inexact", "integer", "signedinteger", "unsignedinteger", "number", "generic",
             "complexfloating"]
    for name in ALL_DTYPES:
        for kind in kinds:
            assert mx.issubdtype(getattr(mx, name), getattr(mx, kind)) == mlx.issubdtype(
                getattr(mlx, name), getattr(mlx, kind)), (name, kind)


def test_numpy_dtypes_of_kiln_dtypes():
    assert mx.bfloat16.np.name == "bfloat16"
    assert mx.float16.np == np.float16 and mx.bool_.np == np.bool_


def test_dtype_none_is_the_default_where_mlx_has_one(mlx):
    """MLX's random ops and dequantize read dtype=None as their default dtype; names are refused
    (tests/test_errors.py)."""
    calls = [
        "m.random.uniform(shape=(2,), dtype=None)", "m.random.normal((2,), dtype=None)",
        "m.random.randint(0, 5, (2,), dtype=None)", "m.random.truncated_normal(-1, 1, (2,), dtype=None)",
        "m.random.gumbel((2,), dtype=None)", "m.random.laplace((2,), dtype=None)",
        "m.random.multivariate_normal(m.zeros((2,)), m.eye(2), (3,), dtype=None)",
        "m.dequantize(*m.quantize(m.ones((4, 64), dtype=m.float16)), dtype=None)",
    ]
    for call in calls:
        ours = eval(call, {"m": mx})
        theirs = eval(call, {"m": mlx})
        assert ours.dtype.name == str(theirs.dtype).split(".")[-1], call


def test_dtype_queries_take_dtypes_as_mlx_does(mlx):
    for name in ("float32", "float16", "bfloat16", "complex64"):
        ours, theirs = mx.finfo(getattr(mx, name)), mlx.finfo(getattr(mlx, name))
        assert (ours.min, ours.max, ours.eps) == (theirs.min, theirs.max, theirs.eps)
    assert mx.iinfo(mx.int8).min == mlx.iinfo(mlx.int8).min == -128
    arrays = (mx.zeros((2,), mx.int16), mlx.zeros((2,), mlx.int16))
    assert mx.can_cast(arrays[0], mx.float32) == mlx.can_cast(arrays[1], mlx.float32)
    assert mx.can_cast(mx.float32, mx.int32) == mlx.can_cast(mlx.float32, mlx.int32)
    assert mx.issubdtype(mx.floating, mx.float32) == mlx.issubdtype(mlx.floating, mlx.float32)
    assert mx.view(mx.ones((2,)), mx.int32).tolist() == mlx.view(mlx.ones((2,)), mlx.int32).tolist()


def test_dtype_str_and_repr_match_mlx(mlx):
    for name in ALL_DTYPES:
        assert (str(getattr(mx, name)), repr(getattr(mx, name))) == (str(getattr(mlx, name)),
                                                                     repr(getattr(mlx, name))), name
    assert str(mx.floating) == str(mlx.floating)
