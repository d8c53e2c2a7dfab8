"""Bad input raises a Python exception whose message starts with `[opname]`, never a crash or a wrong answer.

Each row: a call that must fail, the exception type kiln raises, and the op name its message starts with.
Where real MLX is installed, the same call must fail there too, and with a compatible exception type: a bad
axis is an IndexError in MLX, so kiln's axis errors are both ValueError and IndexError.
"""

import kiln.core as mx
import numpy as np
import pytest

A = "mx.zeros((2, 3))"

ROWS = [
    # elementwise: shapes and dtypes
    (f"mx.add({A}, mx.zeros((4,)))", ValueError, "add"),
    (f"mx.multiply({A}, mx.zeros((2, 2)))", ValueError, "multiply"),
    (f"mx.where({A} > 0, {A}, mx.zeros((4,)))", ValueError, "where"),
    ("mx.maximum(mx.zeros((2,)), mx.zeros((3,)))", ValueError, "maximum"),
    (f"mx.equal({A}, mx.zeros((4,)))", ValueError, "equal"),
    ("mx.logical_and(mx.zeros((2,)), mx.zeros((3,)))", ValueError, "logical_and"),
    ("mx.bitwise_and(mx.zeros((2,)), mx.zeros((2,)))", ValueError, "bitwise_and"),
    ("mx.bitwise_or(mx.zeros((2,), mx.uint64), mx.zeros((2,), mx.int64))", ValueError, "bitwise_or"),
    ("mx.left_shift(mx.zeros((2,)), 1)", ValueError, "left_shift"),
    ("mx.bitwise_invert(mx.zeros((2,)))", ValueError, "bitwise_invert"),
    ("mx.negative(mx.array([True]))", ValueError, "negative"),
    ("mx.zeros((2,), mx.uint8) + 300", ValueError, "add"),
    ("mx.zeros((2,), mx.int8) - 200", ValueError, "subtract"),
    ("mx.zeros((2,), mx.uint8) + -1", ValueError, "add"),
    ("mx.zeros((2,), mx.int32) + 2**31", ValueError, "add"),
    ("mx.full((2,), 300, mx.uint8)", ValueError, "full"),
    ("mx.add(mx.zeros((2,)), 'a')", ValueError, "add"),
    ("mx.exp(None)", TypeError, "exp"),
    ("mx.sum(None)", TypeError, "sum"),
    ("mx.clip(mx.zeros((2,)), None, None)", ValueError, "clip"),
    # reductions
    (f"mx.sum({A}, axis=2)", IndexError, "sum"),
    (f"mx.sum({A}, axis=-3)", IndexError, "sum"),
    (f"mx.sum({A}, axis=(0, 0))", ValueError, "sum"),
    (f"mx.sum({A}, axis=(0, -2))", ValueError, "sum"),
    (f"mx.mean({A}, axis=5)", IndexError, "mean"),
    (f"mx.max({A}, axis=2)", IndexError, "max"),
    (f"mx.all({A}, axis=2)", IndexError, "all"),
    (f"mx.var({A}, axis=3)", IndexError, "var"),
    (f"mx.argmax({A}, axis=2)", IndexError, "argmax"),
    (f"mx.argmin({A}, axis=-3)", IndexError, "argmin"),
    (f"mx.argmax({A}, axis=(0, 1))", TypeError, "argmax"),
    (f"mx.cumsum({A}, axis=2)", IndexError, "cumsum"),
    (f"mx.cumprod({A}, axis=-3)", IndexError, "cumprod"),
    (f"mx.logsumexp({A}, axis=2)", IndexError, "logsumexp"),
    (f"mx.softmax({A}, axis=2)", IndexError, "softmax"),
    ("mx.max(mx.zeros((0,)))", ValueError, "max"),
    ("mx.min(mx.zeros((2, 0)), axis=1)", ValueError, "min"),
    ("mx.argmax(mx.zeros((0,)))", ValueError, "argmax"),
    ("mx.logsumexp(mx.zeros((0,)))", ValueError, "logsumexp"),
    # shapes
    (f"mx.reshape({A}, (4,))", ValueError, "reshape"),
    (f"mx.reshape({A}, (-1, -1))", ValueError, "reshape"),
    (f"mx.reshape({A}, (-1, 4))", ValueError, "reshape"),
    (f"mx.reshape({A}, (-2, 3))", ValueError, "reshape"),
    (f"mx.flatten({A}, 1, 0)", ValueError, "flatten"),
    (f"mx.unflatten({A}, 1, (2, 2))", ValueError, "reshape"),
    (f"mx.unflatten({A}, 2, (3,))", IndexError, "unflatten"),
    (f"mx.unflatten({A}, 1, ())", ValueError, "unflatten"),
    (f"mx.squeeze({A}, 0)", ValueError, "squeeze"),
    (f"mx.squeeze({A}, 2)", IndexError, "squeeze"),
    (f"mx.expand_dims({A}, 3)", IndexError, "expand_dims"),
    (f"mx.expand_dims({A}, -4)", IndexError, "expand_dims"),
    (f"mx.expand_dims({A}, (0, 0))", ValueError, "expand_dims"),
    (f"mx.transpose({A}, (0,))", ValueError, "transpose"),
    (f"mx.transpose({A}, (0, 0))", ValueError, "transpose"),
    (f"mx.transpose({A}, (0, 2))", IndexError, "transpose"),
    (f"mx.swapaxes({A}, 0, 2)", IndexError, "swapaxes"),
    (f"mx.moveaxis({A}, 0, 2)", IndexError, "moveaxis"),
    (f"mx.moveaxis({A}, 3, 0)", IndexError, "moveaxis"),
    (f"mx.broadcast_to({A}, (3, 3))", ValueError, "broadcast_to"),
    (f"mx.broadcast_to({A}, (3,))", ValueError, "broadcast_to"),
    (f"mx.broadcast_arrays({A}, mx.zeros((4,)))", ValueError, "broadcast_arrays"),
    ("mx.broadcast_shapes((2, 3), (4,))", ValueError, "broadcast_shapes"),
    (f"mx.concatenate([{A}, mx.zeros((2, 4))])", ValueError, "concatenate"),
    (f"mx.concatenate([{A}, mx.zeros((3,))])", ValueError, "concatenate"),
    (f"mx.concatenate([{A}, {A}], axis=2)", IndexError, "concatenate"),
    ("mx.concatenate([])", ValueError, "concatenate"),
    ("mx.concatenate([mx.array(1), mx.array(2)])", IndexError, "concatenate"),
    (f"mx.stack([{A}, mx.zeros((3, 2))])", ValueError, "stack"),
    (f"mx.stack([{A}, {A}], axis=4)", IndexError, "stack"),
    ("mx.stack([])", ValueError, "stack"),
    (f"mx.split({A}, 4, axis=1)", ValueError, "split"),
    (f"mx.split({A}, 2, axis=2)", IndexError, "split"),
    (f"mx.split({A}, 0)", ValueError, "split"),
    ("mx.split(mx.array(1), 1)", IndexError, "split"),
    (f"mx.pad({A}, -1)", ValueError, "pad"),
    (f"mx.pad({A}, ((1, 1), (1, 1), (1, 1)))", ValueError, "pad"),
    (f"mx.pad({A}, 1, mode='wrap')", ValueError, "pad"),
    (f"mx.pad({A}, [(1, 2, 3)])", ValueError, "pad"),
    (f"mx.repeat({A}, -1)", ValueError, "repeat"),
    (f"mx.repeat({A}, 2, axis=2)", IndexError, "repeat"),
    (f"mx.tile({A}, -1)", ValueError, "tile"),
    (f"mx.roll({A}, 1, axis=2)", IndexError, "roll"),
    (f"mx.roll({A}, (1, 2, 3), axis=(0, 1))", ValueError, "roll"),
    ("mx.meshgrid(mx.zeros((2,)), indexing='xx')", ValueError, "meshgrid"),
    ("mx.tril(mx.zeros((3,)))", ValueError, "tril"),
    ("mx.triu(mx.zeros((3,)))", ValueError, "triu"),
    # creation
    ("mx.zeros((-1, 2))", ValueError, "zeros"),
    ("mx.ones(-2)", ValueError, "ones"),
    ("mx.full((-1,), 1)", ValueError, "full"),
    ("mx.zeros('a')", TypeError, "zeros"),
    ("mx.zeros((2,), 7)", TypeError, "zeros"),
    ("mx.arange(0, 10, 0)", ValueError, "arange"),
    ("mx.arange(0, 10, dtype=mx.bool_)", ValueError, "arange"),
    ("mx.linspace(0, 1, -1)", ValueError, "linspace"),
    ("mx.eye(-1)", ValueError, "eye"),
    ("mx.eye(2, -1)", ValueError, "eye"),
    ("mx.array('abc')", ValueError, "array"),
    ("mx.array(None)", TypeError, "array"),
    ("mx.array([1, 'a'])", ValueError, "array"),
    ("mx.array({1: 2})", ValueError, "array"),
    ("mx.array(np.array(['a']))", ValueError, "array"),
    ("mx.zeros((2,)).astype('bad')", TypeError, "astype"),
    ("mx.astype(mx.zeros((2,)), None)", TypeError, "astype"),
    # dtype arguments are Dtypes: MLX refuses names, numpy types and Python types (None means the default
    # only where MLX has one); can_cast's source and issubdtype's inputs are ValueErrors there
    ("mx.random.uniform(shape=(2,), dtype='float32')", TypeError, "uniform"),
    ("mx.random.normal((2,), dtype='float32')", TypeError, "normal"),
    ("mx.random.normal((2,), np.float16)", TypeError, "normal"),
    ("mx.random.randint(0, 5, (2,), dtype='int32')", TypeError, "randint"),
    ("mx.random.randint(0, 5, (2,), dtype=float)", TypeError, "randint"),
    ("mx.random.truncated_normal(-1, 1, (2,), dtype='float32')", TypeError, "truncated_normal"),
    ("mx.random.gumbel((2,), dtype='float16')", TypeError, "gumbel"),
    ("mx.random.laplace((2,), dtype='float32')", TypeError, "laplace"),
    ("mx.random.multivariate_normal(mx.zeros((2,)), mx.eye(2), dtype='float32')", TypeError, "multivariate_normal"),
    ("mx.zeros((2,)).view('int32')", TypeError, "view"),
    ("mx.view(mx.zeros((2,)), np.int32)", TypeError, "view"),
    ("mx.view(mx.zeros((2,)), None)", TypeError, "view"),
    ("mx.finfo('float32')", TypeError, "finfo"),
    ("mx.finfo(float)", TypeError, "finfo"),
    ("mx.finfo(None)", TypeError, "finfo"),
    ("mx.iinfo('int32')", TypeError, "iinfo"),
    ("mx.iinfo(np.int8)", TypeError, "iinfo"),
    ("mx.can_cast('int32', mx.float32)", ValueError, "can_cast"),
    ("mx.can_cast(np.int32, mx.float32)", ValueError, "can_cast"),
    ("mx.can_cast(1, mx.float32)", ValueError, "can_cast"),
    ("mx.can_cast(mx.int32, 'float32')", TypeError, "can_cast"),
    ("mx.can_cast(mx.int32, None)", TypeError, "can_cast"),
    ("mx.issubdtype('float32', mx.floating)", ValueError, "issubdtype"),
    ("mx.issubdtype(np.float32, mx.floating)", ValueError, "issubdtype"),
    ("mx.issubdtype(mx.zeros((2,)), mx.floating)", ValueError, "issubdtype"),
    ("mx.issubdtype(mx.float32, 'floating')", ValueError, "issubdtype"),
    ("mx.issubdtype(mx.float32, None)", TypeError, "issubdtype"),
    ("mx.isdtype('float32', 'real floating')", TypeError, "isdtype"),
    ("mx.from_fp8(mx.zeros((2,), mx.uint8), dtype='float16')", TypeError, "from_fp8"),
    ("mx.dequantize(*mx.quantize(mx.ones((4, 64))), dtype='float16')", TypeError, "dequantize"),
    ("mx.dequantize(*mx.quantize(mx.ones((4, 64))), dtype=np.float16)", TypeError, "dequantize"),
    ("mx.distributed.recv((2,), 'float32', 0)", TypeError, "recv"),
    # comparison helpers and conversions
    ("mx.allclose(mx.zeros((2,)), mx.zeros((3,)))", ValueError, "isclose"),
    ("mx.isclose(mx.zeros((2,)), mx.zeros((3,)))", ValueError, "isclose"),
    ("mx.zeros((2, 3)).item()", ValueError, "item"),
    ("mx.array([1, 2]).reshape(3)", ValueError, "reshape"),
    ("mx.matmul(mx.array(1.0), mx.zeros((2,)))", ValueError, "matmul"),
    ("mx.zeros((2,)) @ mx.zeros((3,))", ValueError, "matmul"),
]


# Where MLX's own tests assert MLX's exact message, and that message names no op, kiln uses it word for word.
MLX_WORDED = [
    ("mx.array([[1, 2], [3]])", ValueError, "Initialization encountered non-uniform length."),
    ("mx.array([mx.zeros((2,)), mx.zeros((3,))])", ValueError, "Initialization encountered non-uniform length."),
    ("mx.array([1.0, mx.zeros((1,))])", ValueError, "Initialization encountered non-uniform length."),
    ("mx.arange(3)[2**32]", ValueError, "Slice indices must be 32-bit integers."),
    ("mx.arange(3)[:2**32]", ValueError, "Slice indices must be 32-bit integers."),
    ("float(mx.zeros((2,)))", ValueError, "[convert] Only length-1 arrays can be converted to Python scalars."),
    ("mx.array(1).at.add(1)", ValueError, "Must give indices to array.at (e.g. `x.at[0].add(4)`)."),
]


def call(module, source):
    return eval("lambda mx, np: " + source)(module, np)


@pytest.mark.parametrize("source, error, message", MLX_WORDED, ids=[r[0] for r in MLX_WORDED])
def test_mlx_worded_errors(source, error, message):
    with pytest.raises(error) as info:
        mx.eval(call(mx, source))
    assert str(info.value) == message


@pytest.mark.parametrize("source, error, message", MLX_WORDED, ids=[r[0] for r in MLX_WORDED])
def test_mlx_worded_errors_are_mlx_words(mlx, source, error, message):
    with pytest.raises(error) as info:
        mlx.eval(call(mlx, source))
    assert str(info.value) == message


@pytest.mark.parametrize("source, error, op", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_raises_with_the_op_name(source, error, op):
    with pytest.raises(error) as info:
        result = call(mx, source)
        mx.eval(result)
    assert str(info.value).startswith(f"[{op}]"), str(info.value)


def test_axis_errors_are_both_value_and_index_errors():
    with pytest.raises(ValueError):
        mx.sum(mx.zeros((2,)), axis=1)
    with pytest.raises(IndexError):
        mx.sum(mx.zeros((2,)), axis=1)


# MLX 0.32 raises RuntimeError for these (kiln: ValueError), or accepts them where kiln refuses (noted in
# the report): ints that do not fit wrap there for bool/uint64 arrays, bitwise dtype errors are RuntimeErrors.
MLX_DIFFERS = {
    "mx.bitwise_and(mx.zeros((2,)), mx.zeros((2,)))", "mx.left_shift(mx.zeros((2,)), 1)",
    "mx.bitwise_or(mx.zeros((2,), mx.uint64), mx.zeros((2,), mx.int64))", "mx.zeros('a')",
    "mx.array(np.array(['a']))", f"mx.pad({A}, [(1, 2, 3)])", "mx.zeros((2,), 7)", "mx.sum(None)",
    "mx.exp(None)", "mx.astype(mx.zeros((2,)), None)", "mx.zeros((2,)).astype('bad')",
    f"mx.roll({A}, (1, 2, 3), axis=(0, 1))",
}


@pytest.mark.parametrize("source, error, op", ROWS, ids=[r[0] for r in ROWS])
def test_mlx_refuses_the_same_input_with_a_compatible_type(mlx, source, error, op):
    try:
        result = call(mlx, source)
        mlx.eval(result)
    except Exception as e:  # noqa: BLE001 (any exception MLX raises is what we compare with)
        if source not in MLX_DIFFERS:
            assert isinstance(e, error) or issubclass(error, type(e)), (type(e), error)
        return
    assert source in MLX_DIFFERS, "MLX accepts this input"
