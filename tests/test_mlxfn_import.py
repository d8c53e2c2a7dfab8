"""import_function on files written by real MLX (mx.export_function / mx.exporter): outputs against MLX's own
imported functions on fresh inputs, several traces, keywords, shapeless traces, metadata, MLX's errors, and
a reader that refuses truncated, corrupted and unsupported files with ValueError."""

from __future__ import annotations

import struct

import kiln.core as kx
import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")

RNG = np.random.default_rng(0)


def _normal(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _positive(*shape):
    return RNG.uniform(0.2, 0.9, shape).astype(np.float32)


def _check(tmp_path, fun, *args, kwargs=None, shapeless=False, fresh=None, rtol=1e-5, atol=1e-5):
    """Export `fun` with MLX on `args`, import the file with kiln and MLX, and compare both imports on
    `fresh` inputs (numpy arrays; new random values of the same shapes by default)."""
    kwargs = kwargs or {}
    path = str(tmp_path / "f.mlxfn")
    mx.export_function(path, fun, *[mx.array(a) for a in args], shapeless=shapeless,
                       **{k: mx.array(v) for k, v in kwargs.items()})
    theirs, ours = mx.import_function(path), kx.import_function(path)
    fresh = fresh or ([_like(a) for a in args], {k: _like(v) for k, v in kwargs.items()})
    expected = theirs(*[mx.array(a) for a in fresh[0]], **{k: mx.array(v) for k, v in fresh[1].items()})
    got = ours(*[kx.array(a) for a in fresh[0]], **{k: kx.array(v) for k, v in fresh[1].items()})
    assert isinstance(got, tuple) and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype.name == str(e.dtype).split(".")[-1]
        assert g.shape == tuple(e.shape)
        np.testing.assert_allclose(np.array(g).astype(np.float64), np.array(e).astype(np.float64), rtol=rtol,
                                   atol=atol)
    return ours


def _like(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return RNG.integers(0, 2, a.shape).astype(bool)
    if np.issubdtype(a.dtype, np.integer):
        return a.copy()  # indices and keys: keep them valid
    return (a + RNG.uniform(-0.1, 0.1, a.shape)).astype(a.dtype)


# -- primitives --------------------------------------------------------------------------------------------
def _unary_chain(x):
    y = mx.sin(x) + mx.cos(x) * mx.tan(x) - mx.tanh(x) + mx.sinh(x) / mx.cosh(x)
    y = y + mx.arcsin(x) + mx.arccos(x) + mx.arctan(x) + mx.arcsinh(x) + mx.arctanh(x) + mx.arccosh(x + 1)
    y = y + mx.exp(x) + mx.expm1(x) + mx.log(x) + mx.log2(x) + mx.log10(x) + mx.log1p(x) + mx.sqrt(x)
    y = y + mx.rsqrt(x) + mx.abs(-x) + mx.square(x) + mx.sigmoid(x) + mx.erf(x) + mx.erfinv(x - 0.5)
    y = y + mx.floor(x * 4) + mx.ceil(x * 4) + mx.round(x * 4) + mx.sign(x - 0.5) + mx.negative(x)
    return y + mx.stop_gradient(x) + mx.reciprocal(x)


def _binary_chain(x, y):
    z = x + y - x * y / (y + 1) + mx.maximum(x, y) + mx.minimum(x, y) + mx.power(x, y) + mx.arctan2(x, y)
    z = z + mx.logaddexp(x, y) + mx.remainder(x * 7, y) + (x // y)
    c = mx.logical_or(mx.logical_and(x > y, x >= 0.5), mx.logical_not(x <= y)) | (x == y) | (x != y * 2) | (x < 0.3)
    return mx.where(c, z, -z), c


def _integer_ops(a, b):
    return (a & b) | (a ^ 3), a << 1, b >> 1, a // b, a % b, mx.divmod(a, b)[0]


@pytest.mark.parametrize("name, fun, args", [
    ("unary", _unary_chain, [_positive(3, 4)]),
    ("binary", _binary_chain, [_positive(3, 4), _positive(3, 4)]),
    ("broadcast", lambda x, y: (x + y, x * 2.0 + 1), [_normal(3, 1, 4), _normal(5, 1)]),
    ("integer", _integer_ops, [np.array([[5, 7, 9], [12, 3, 6]], np.int32), np.array([2, 3, 4], np.int32)]),
    ("astype", lambda x: (x.astype(mx.int32), x.astype(mx.float16), (x > 0).astype(mx.float32)), [_normal(4) * 9]),
    ("reduce", lambda x: (x.sum(1), x.prod(0), x.max(), x.min(axis=(0, 2), keepdims=True), x.mean(-1),
                          x.var(0), (x > 0).all(1), (x > 0).any(), mx.logsumexp(x, axis=-1), mx.logsumexp(x, 0)),
     [_normal(3, 4, 5)]),
    ("argreduce", lambda x: (x.argmax(1), x.argmin(0, keepdims=True), mx.argmax(x)), [_normal(4, 6)]),
    ("scan", lambda x: (mx.cumsum(x, 1), mx.cumprod(x, 0, reverse=True), mx.cummax(x, 1, inclusive=False),
                        mx.cummin(x, 0)), [_normal(3, 5)]),
    ("shape", lambda x: (x.reshape(6, 4), x.T, mx.transpose(x, (1, 0, 2)), x[:, :1].squeeze(1),
                         mx.expand_dims(x, (0, 2)), x.flatten(1), mx.unflatten(x, 2, (2, 2)),
                         mx.swapaxes(x, 0, 2), mx.moveaxis(x, 0, -1)), [_normal(2, 3, 4)]),
    ("slice", lambda x: (x[1:3, ::2], x[-1], x[..., 1:-1:2], x[::-1], mx.slice(x, mx.array([1, 2]), [0, 1], [2, 3])),
     [_normal(4, 6)]),
    ("slice_update", lambda x, u: (x.at[1:3].add(u), x.at[0:2].multiply(u), mx.slice_update(x, u, mx.array([1]),
                                                                                            [0])), [_normal(4, 3),
                                                                                                    _normal(2, 3)]),
    ("gather", lambda x, i: (x[i], mx.take(x, i, axis=1), mx.take_along_axis(x, mx.argsort(x, 1), axis=1),
                             x[i, 1:3], x[:, i]), [_normal(5, 6), np.array([0, 3, 4, 1], np.int32)]),
    ("scatter", lambda x, i, u: (x.at[i].add(u), x.at[i].maximum(u), mx.put_along_axis(x, i[:, None] % 3, u[:, :1],
                                                                                   axis=0)),
     [_normal(5, 3), np.array([4, 0, 2], np.int32), _normal(3, 3)]),
    ("concatenate_split", lambda x, y: (mx.concatenate([x, y, x], axis=1), *mx.split(x, [1, 3], axis=1),
                                        *mx.split(y, 2), mx.stack([x, x])), [_normal(4, 5), _normal(4, 2)]),
    ("pad", lambda x: (mx.pad(x, [(1, 2), (0, 3)]), mx.pad(x, 1, constant_values=2.5)), [_normal(3, 4)]),
    ("sort", lambda x: (mx.sort(x, 1), mx.argsort(x, 0), mx.sort(mx.partition(x, 2, axis=1), 1),
                        mx.sort(mx.take_along_axis(x, mx.argpartition(x, 1, axis=0), 0), 0),
                        mx.topk(x, 2, axis=1)), [_normal(4, 6)]),
    ("creation", lambda x: (x + mx.arange(6), mx.arange(1.0, 4.0, 0.5), mx.full((2, 6), 3.5) * x,
                            mx.zeros_like(x), mx.ones((2, 3), mx.int32), mx.tri(3), mx.eye(3, 4)),
     [_normal(2, 6)]),
    ("matmul", lambda a, b, c: (a @ b, mx.addmm(c, a, b, alpha=0.5, beta=2.0), mx.matmul(a[None], b),
                                mx.einsum("ij,jk->ik", a, b), mx.outer(a[0], b[0]), mx.inner(a, b.T)),
     [_normal(3, 4), _normal(4, 5), _normal(3, 5)]),
    ("softmax", lambda x: (mx.softmax(x, axis=-1), mx.softmax(x, axis=0, precise=True), nn.log_softmax(x)),
     [_normal(3, 7)]),
    ("conv", lambda x, w, v: (mx.conv1d(x, w, stride=2, padding=1), mx.conv1d(x, w, dilation=2),
                              mx.conv2d(mx.repeat(x[:, :, None], 3, 2), v, padding=(1, 0), groups=2),
                              mx.conv_transpose1d(x, w.swapaxes(0, 2)[:, :, :4]),
                              mx.conv_general(x, w, flip=True, input_dilation=2)),
     [_normal(2, 9, 4), _normal(6, 3, 4), _normal(6, 3, 2, 2)]),
    ("random", lambda k: (mx.random.randint(0, 100, (3, 4), key=k), mx.random.uniform(shape=(5,), key=k),
                          mx.random.normal((2, 2), key=k), *mx.random.split(k)),
     [np.array([3, 7], np.uint32)]),
    ("quantized", lambda x, w, s, b: (mx.quantized_matmul(x, w, s, b, group_size=32, bits=4),),
     [_normal(3, 64)] + [np.array(a) for a in mx.quantize(mx.array(_normal(16, 64)), group_size=32, bits=4)]),
    ("misc", lambda x: (mx.isnan(x), mx.isinf(x), mx.nan_to_num(x), mx.clip(x, -0.5, 0.5), mx.array_equal(x, x),
                        mx.allclose(x, x + 1e-9), mx.diag(x), mx.trace(x), mx.tril(x), mx.repeat(x, 2, 1),
                        mx.tile(x, (2, 1)), mx.roll(x, 1, 0), mx.kron(x, x[:1, :1]), mx.std(x)), [_normal(3, 3)]),
])
def test_mlx_files_match_mlx(tmp_path, name, fun, args):
    _check(tmp_path, fun, *args, rtol=2e-5, atol=2e-5)


# -- nn layers and small models --------------------------------------------------------------------------------
def _eval_model(model):
    mx.eval(model.parameters())
    return model


def test_linear_and_mlp(tmp_path):
    mx.random.seed(1)
    mlp = _eval_model(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16, bias=False), nn.GELU(),
                                    nn.Linear(16, 4), nn.SiLU()))
    _check(tmp_path, mlp, _normal(5, 8))


def test_transformer_block(tmp_path):
    mx.random.seed(2)
    block = _eval_model(nn.TransformerEncoderLayer(16, 4, mlp_dims=32, norm_first=True))
    norm = _eval_model(nn.RMSNorm(16))
    mask = nn.MultiHeadAttention.create_additive_causal_mask(6)

    def forward(x):
        return norm(block(x, mask))

    _check(tmp_path, forward, _normal(2, 6, 16), rtol=1e-4, atol=1e-4)


def test_conv_net_and_rope(tmp_path):
    mx.random.seed(3)
    conv = _eval_model(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm(4), nn.ReLU(),
                                     nn.MaxPool2d(2), nn.Conv2d(4, 2, 1), nn.AvgPool2d(2)))
    conv.eval()
    rope = nn.RoPE(8, base=100.0)
    _check(tmp_path, lambda x, q: (conv(x), rope(q, offset=2)), _normal(2, 8, 8, 3), _normal(1, 5, 8),
           rtol=1e-4, atol=1e-4)


def test_engine_and_interpreter_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_ENGINE", "0")
    _check(tmp_path, _binary_chain, _positive(3, 4), _positive(3, 4))
    _check(tmp_path, lambda x: (mx.softmax(x @ x.T, axis=-1).sum(0),), _normal(4, 5), rtol=1e-5)


# -- fast primitives: MLX on a CPU writes their fallbacks, so these files are written here, in MLX's layout -----
def _u64(n):
    return struct.pack("<Q", n)


def _string(text):
    return _u64(len(text)) + text.encode()


def _shape(shape):
    return _u64(len(shape)) + struct.pack(f"<{len(shape)}i", *shape)


_CODES = {np.dtype(np.float32): (10, 4), np.dtype(np.int32): (7, 4)}


def _typed(a):
    return _shape(a.shape) + struct.pack("<iB", *_CODES[a.dtype])


def _one_primitive_file(inputs, constants, name, state: bytes, out_shape) -> bytes:
    """An MLX function file of one primitive applied to the inputs then the constants (a float32 result)."""
    input_ids = list(range(1, len(inputs) + 1))
    const_ids = list(range(50, 50 + len(constants)))
    body = _string("0.32.4") + struct.pack("<i?", 1, False) + _string("") + _u64(0)
    body += _u64(len(inputs)) + b"".join(_u64(i) for i in input_ids) + _u64(len(inputs))
    body += b"".join(_typed(a) for a in inputs) + _u64(1) + _u64(99) + _u64(len(inputs) + len(constants) + 1)
    body += b"".join(_u64(i) + b"\0\0" for i in input_ids)
    body += b"".join(_u64(i) + b"\0\1" + _typed(c) + c.tobytes() for i, c in zip(const_ids, constants))
    operands = input_ids + const_ids
    body += _u64(99) + b"\1" + _u64(len(operands)) + b"".join(_u64(i) for i in operands) + b"\0" * 12
    return body + _string(name) + state + _u64(0) + _shape(out_shape) + struct.pack("<iB", 10, 4)


@pytest.mark.parametrize("case", ["rms_norm", "rms_norm_no_weight", "layer_norm", "layer_norm_no_affine", "rope",
                                  "rope_freqs", "attention_causal", "attention_mask"])
def test_fast_primitives(tmp_path, case):
    x, w, b = _normal(2, 5, 8), _normal(8), _normal(8)
    q, k, v, mask = _normal(1, 2, 5, 8), _normal(1, 2, 7, 8), _normal(1, 2, 7, 8), _normal(1, 2, 5, 7)
    one, zero, offset, freqs = np.float32(1), np.float32(0), np.array(3, np.int32), _positive(4) * 10
    f32 = struct.Struct("<f").pack
    if case.startswith("rms_norm"):
        weight = w if case == "rms_norm" else one
        data = _one_primitive_file([x], [weight], "RMSNorm", f32(1e-5), x.shape)
        expected = mx.fast.rms_norm(mx.array(x), mx.array(w) if case == "rms_norm" else None, 1e-5)
        args = [x]
    elif case.startswith("layer_norm"):
        affine = case == "layer_norm"
        data = _one_primitive_file([x, w, b] if affine else [x], [] if affine else [one, zero], "LayerNorm",
                                   f32(1e-4), x.shape)
        expected = mx.fast.layer_norm(mx.array(x), mx.array(w) if affine else None, mx.array(b) if affine else None,
                                      1e-4)
        args = [x, w, b] if affine else [x]
    elif case.startswith("rope"):
        with_freqs = case == "rope_freqs"
        state = struct.pack("<i?ff?", 6, True, 10000.0, 0.5, True)
        data = _one_primitive_file([x[None], offset], [freqs[:3]] if with_freqs else [], "RoPE", state, (1, 2, 5, 8))
        expected = mx.fast.rope(mx.array(x[None]), 6, traditional=True, base=None if with_freqs else 10000.0,
                                scale=0.5, offset=3, freqs=mx.array(freqs[:3]) if with_freqs else None)
        args = [x[None], offset]
    else:
        causal = case == "attention_causal"
        state = struct.pack("<f????", 0.3, causal, False, False, False)
        data = _one_primitive_file([q, k, v] + ([] if causal else [mask]), [], "ScaledDotProductAttention", state,
                                   q.shape)
        expected = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=0.3,
                                                        mask="causal" if causal else mx.array(mask))
        args = [q, k, v] + ([] if causal else [mask])
    got = _import_bytes(tmp_path, data)(*[kx.array(a) for a in args])
    np.testing.assert_allclose(np.array(got[0]), np.array(expected), rtol=1e-5, atol=1e-5)


# -- traces, keywords, shapeless, metadata --------------------------------------------------------------
def test_keyword_inputs_in_both_calling_forms(tmp_path):
    ours = _check(tmp_path, lambda x, *, b, a: (x * b + a, a), _normal(2, 3), kwargs={"b": _normal(2, 3),
                                                                                    "a": _normal(3)})
    x, a, b = kx.ones((2, 3)), kx.ones((3,)), kx.full((2, 3), 2.0)
    (first, second), (third, _) = ours(x, a=a, b=b), ours((x,), {"b": b, "a": a})
    assert np.array(first).tolist() == np.array(third).tolist() == [[3.0] * 3] * 2
    assert np.array(second).tolist() == [1.0] * 3


def test_several_traces_shapeless_and_metadata(tmp_path):
    path = str(tmp_path / "multi.mlxfn")

    def fun(x, y=None):
        return (mx.exp(x) * 2 if y is None else x @ y,)

    with mx.exporter(path, fun, shapeless=True, metadata="{'model': 'demo'}") as export:
        export(mx.zeros((2, 3)))
        export(mx.zeros((2, 3)), mx.zeros((3, 4)))
        export(mx.zeros((2, 3), mx.int32))
    ours, metadata = kx.import_function(path, return_metadata=True)
    theirs, their_metadata = mx.import_function(path, return_metadata=True)
    assert metadata == their_metadata == "{'model': 'demo'}"
    a, b = _normal(5, 7), _normal(7, 2)
    for args in [(a,), (a, b), (np.arange(6, dtype=np.int32).reshape(3, 2),)]:
        got = ours(*[kx.array(v) for v in args])
        expected = theirs(*[mx.array(v) for v in args])
        np.testing.assert_allclose(np.array(got[0]), np.array(expected[0]), rtol=1e-5)
        assert got[0].dtype.name == str(expected[0].dtype).split(".")[-1]


def test_shapeless_reductions_broadcasts_and_means(tmp_path):
    def fun(x, y):
        return (mx.mean(x * y + 1, axis=1), mx.softmax(x, axis=-1) * y.sum(), mx.maximum(x, 0).astype(mx.float16))

    ours = _check(tmp_path, fun, _normal(2, 3), _normal(2, 3), shapeless=True,
                  fresh=([_normal(5, 8), _normal(5, 8)], {}), rtol=1e-3, atol=1e-3)
    assert ours(kx.ones((1, 2)), kx.ones((1, 2)))[0].shape == (1,)


def test_shapeless_batched_matmul(tmp_path):
    # MLX writes BroadcastAxes here: the batch axes broadcast, the matrix axes are each operand's own.
    _check(tmp_path, lambda a, b, c: (a @ b, c @ a.swapaxes(-1, -2)), _normal(2, 3, 4), _normal(4, 5),
           _normal(1, 6, 4), shapeless=True, fresh=([_normal(3, 2, 4), _normal(4, 7), _normal(1, 5, 4)], {}))


def test_metadata_defaults_to_an_empty_string(tmp_path):
    path = str(tmp_path / "plain.mlxfn")
    mx.export_function(path, lambda x: x + 1, mx.zeros(2))
    assert kx.import_function(path, return_metadata=True)[1] == mx.import_function(path, return_metadata=True)[1]


def test_mismatched_calls_raise_mlx_errors(tmp_path):
    path = str(tmp_path / "f.mlxfn")
    mx.export_function(path, lambda x, *, y: x + y, (mx.zeros((2, 3)),), {"y": mx.zeros((2, 3))})
    ours = kx.import_function(path)
    for args, kwargs in [((kx.zeros((2, 3)),), {}), ((kx.zeros((3, 3)),), {"y": kx.zeros((3, 3))}),
                         ((kx.zeros((2, 3), kx.int32),), {"y": kx.zeros((2, 3), kx.int32)})]:
        with pytest.raises(ValueError, match=r"^\[import_function::call\] No imported function found which matches"):
            ours(*args, **kwargs)
        with pytest.raises(ValueError, match=r"^\[import_function::call\] No imported function found which matches"):
            mx.import_function(path)(*[mx.array(np.array(a)) for a in args],
                                     **{k: mx.array(np.array(v)) for k, v in kwargs.items()})


# -- the reader refuses what it cannot read -------------------------------------------------------------------
def test_unsupported_primitives_are_named(tmp_path):
    path = str(tmp_path / "inv.mlxfn")
    mx.export_function(path, lambda a: mx.linalg.inv(a, stream=mx.cpu), mx.eye(3))
    with pytest.raises(ValueError, match=r"\[import_function\] .* MLX primitive 'Inverse' is not supported by "
                                         r"kiln's .mlxfn reader"):
        kx.import_function(path)


def _mlx_bytes(tmp_path) -> bytes:
    path = str(tmp_path / "model.mlxfn")
    w = mx.array(_normal(4, 6))

    def fun(x, idx):
        h = mx.maximum(x @ w, 0.0)
        return mx.softmax(h, axis=-1)[idx].sum(0), mx.concatenate([h[:, :2], mx.sort(h, 1)], axis=1)

    with mx.exporter(path, fun, metadata="m") as export:
        export(mx.zeros((3, 4)), mx.array([0, 2]))
        export(mx.zeros((5, 4)), mx.array([1, 4, 0]))
    with open(path, "rb") as f:
        return f.read()


def _import_bytes(tmp_path, data: bytes):
    path = tmp_path / "damaged.mlxfn"
    path.write_bytes(data)
    return kx.import_function(str(path))


def test_truncated_files_raise_value_errors(tmp_path):
    data = _mlx_bytes(tmp_path)
    for cut in sorted(set(RNG.integers(0, len(data), 150).tolist()) | {0, 8, 9, 14, 19, len(data) - 1}):
        with pytest.raises(ValueError, match=r"^\[import_function\]"):
            _import_bytes(tmp_path, data[:cut])


def test_corrupted_files_never_crash(tmp_path):
    # MLX's files carry no checksum, so a damaged one may still be a valid file (a changed constant): the
    # reader must then either import it or refuse it with ValueError, and a call either runs or raises one.
    data = _mlx_bytes(tmp_path)
    rng = np.random.default_rng(3)
    outcomes = {"refused": 0, "imported": 0}
    for _ in range(300):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            damaged[pos] ^= int(rng.integers(1, 256))
        try:
            fun = _import_bytes(tmp_path, bytes(damaged))
        except ValueError as e:
            assert str(e).startswith("[import_function]")
            outcomes["refused"] += 1
            continue
        outcomes["imported"] += 1
        try:
            fun(kx.ones((3, 4)), kx.array([0, 2]))
        except ValueError:
            pass
    assert outcomes["refused"] > 100 and outcomes["imported"] > 0


def test_kiln_files_and_foreign_files_are_told_apart(tmp_path):
    path = str(tmp_path / "kiln.fn")
    kx.export_function(path, lambda x: x * 2, kx.ones(3))
    assert np.array(kx.import_function(path)(kx.ones(3))[0]).tolist() == [2.0] * 3
    for blob in [b"", b"\x06" + b"\0" * 7 + b"0.32.", b"\x06" + b"\0" * 7 + b"banana", b"PK\x03\x04" * 8]:
        with pytest.raises(ValueError, match=r"^\[import_function\]"):
            _import_bytes(tmp_path, blob)
