"""mx.vmap: axes, trees, nesting, errors, and its compositions with grad; checked against Python loops and MLX."""

from __future__ import annotations

import kiln.core as mx
import numpy as np
import pytest

RNG = np.random.default_rng(0)


def _np(a):
    return np.array(a)


def _f32(*shape):
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(_np(a), np.asarray(b), rtol=rtol, atol=atol)


def test_in_axes_positions_and_unbatched_operands():
    x, y = _f32(3, 4), _f32(4, 5)
    close(mx.vmap(lambda a, b: a @ b, in_axes=(0, None))(mx.array(x), mx.array(y)), x @ y)
    close(mx.vmap(lambda a, b: a * b, in_axes=(1, 0))(mx.array(x), mx.array(x.T)), (x * x).T)
    close(mx.vmap(lambda a: mx.sum(a), in_axes=-1)(mx.array(x)), x.sum(axis=0))


def test_out_axes():
    x = _f32(3, 4)
    close(mx.vmap(lambda a: a * 2, in_axes=0, out_axes=1)(mx.array(x)), (2 * x).T)
    out, same = mx.vmap(lambda a, b: (a + 1, b), in_axes=(0, None), out_axes=(0, None))(mx.array(x), mx.array(1.0))
    close(out, x + 1)
    close(same, 1.0)


def test_unbatched_output_is_broadcast():
    close(mx.vmap(lambda a, b: b * 2, in_axes=(0, None))(mx.array(_f32(3)), mx.array(5.0)), [10.0] * 3)


def test_trees_of_inputs_and_outputs():
    params = {"w": mx.array(_f32(4)), "b": mx.array(2.0)}
    xs = _f32(3, 4)

    def f(p, x):
        return {"y": mx.sum(p["w"] * x) + p["b"], "pair": (x, p["b"])}

    out = mx.vmap(f, in_axes=({"w": None, "b": None}, 0))(params, mx.array(xs))
    close(out["y"], xs @ _np(params["w"]) + 2)
    assert isinstance(out["pair"], tuple)
    close(out["pair"][0], xs)
    close(out["pair"][1], [2.0] * 3)


def test_nested_vmap_builds_an_outer_product():
    a, b = _f32(3), _f32(4)
    outer = mx.vmap(lambda u: mx.vmap(lambda v: u * v)(mx.array(b)))(mx.array(a))
    close(outer, np.outer(a, b))


@pytest.mark.parametrize("call,message", [
    (lambda: mx.vmap(lambda a, b: a + b)(mx.array(_f32(3)), mx.array(_f32(4))), "Inconsistent sizes"),
    (lambda: mx.vmap(lambda a: a, in_axes=2)(mx.array(_f32(3))), "in_axes"),
    (lambda: mx.vmap(lambda a: a, in_axes=None)(mx.array(_f32(3))), "mapped"),
    (lambda: mx.vmap(lambda a, b: a, in_axes=(0,))(mx.array(_f32(3)), mx.array(_f32(3))), "in_axes"),
    (lambda: mx.vmap(lambda a: a, out_axes=None)(mx.array(_f32(3))), "out_axes"),
])
def test_vmap_errors(call, message):
    with pytest.raises(ValueError, match=r"^\[vmap\].*" + message):
        call()


def _tree_fun(tree):
    return (tree["a"] + tree["b"][0]) * tree["b"][1]


@pytest.mark.parametrize("in_axes", [
    {"a": 0, "b": ((0, 0), 0)},  # a tuple of axes for one array
    ({"a": 0, "b": 0},),  # the lone argument is the tree itself, not a 1-tuple
    [{"a": 0, "b": 0}],
    {"a": 0},  # keys must match
    {"a": 0, "b": 0, "c": 0},
    {"a": 0, "b": (0, 0, 0)},  # lengths must match
    {"a": 0, "b": [0, 0]},  # a list does not stand for a tuple
    "hello",
])
def test_in_axes_must_be_a_prefix_of_the_arguments_as_mlx(in_axes):
    tree = {"a": mx.array(_f32(2, 4)), "b": (mx.array(_f32(2, 4)), mx.array(_f32(2, 4)))}
    with pytest.raises(ValueError, match=r"^\[vmap\]"):
        mx.vmap(_tree_fun, in_axes=in_axes)(tree)


@pytest.mark.parametrize("out_axes", [(0, 1), {"a": 0, "c": 1}, {"a": 0}, [0], "hello", ((0,), 1)])
def test_out_axes_must_be_a_prefix_of_the_outputs_as_mlx(out_axes):
    x, y = mx.array(_f32(2, 4)), mx.array(_f32(2, 4))
    with pytest.raises(ValueError, match=r"^\[vmap\]"):
        mx.vmap(lambda a, b: {"a": a + b, "b": a * b}, out_axes=out_axes)(x, y)


def test_axes_trees_that_match_map_the_named_axes():
    a, b0, b1 = _f32(2, 4), _f32(4, 2), _f32(4, 2)
    tree = {"a": mx.array(a), "b": (mx.array(b0), mx.array(b1))}
    close(mx.vmap(_tree_fun, in_axes={"a": 0, "b": (1, 1)})(tree), (a + b0.T) * b1.T)
    close(mx.vmap(_tree_fun, in_axes={"a": 0, "b": 1})(tree), (a + b0.T) * b1.T)
    out = mx.vmap(lambda u, v: {"s": u + v, "p": u * v}, out_axes={"s": 0, "p": 1})(mx.array(a), mx.array(a))
    close(out["s"], a + a)
    close(out["p"], (a * a).T)
    close(mx.vmap(lambda u: u * 2, out_axes=(1,))(mx.array(a)), (2 * a).T)  # a 1-tuple for a lone output


# -- compositions with grad ----------------------------------------------------------------------------------------
def _loss(w, x):
    return mx.sum(mx.tanh(x @ w) ** 2)


def test_vmap_of_grad_gives_per_example_gradients():
    w, xs = _f32(4, 2), _f32(5, 1, 4)
    per_example = mx.vmap(mx.grad(_loss), in_axes=(None, 0))(mx.array(w), mx.array(xs))
    want = np.stack([_np(mx.grad(_loss)(mx.array(w), mx.array(x))) for x in xs])
    close(per_example, want)


def test_grad_of_vmap():
    w, xs = _f32(4, 2), _f32(5, 1, 4)
    batched = lambda p: mx.sum(mx.vmap(_loss, in_axes=(None, 0))(p, mx.array(xs)))
    want = sum(_np(mx.grad(_loss)(mx.array(w), mx.array(x))) for x in xs)
    close(mx.grad(batched)(mx.array(w)), want)


def test_vmap_of_jvp_and_of_vjp():
    xs, ts = _f32(3, 4), _f32(3, 4)
    jv = mx.vmap(lambda x, t: mx.jvp(mx.sin, [x], [t])[1][0])(mx.array(xs), mx.array(ts))
    close(jv, np.cos(xs) * ts)
    vj = mx.vmap(lambda x, c: mx.vjp(mx.exp, [x], [c])[1][0], in_axes=(0, None))(mx.array(xs), mx.array(ts[0]))
    close(vj, np.exp(xs) * ts[0])


def test_vmap_of_custom_function_falls_back_to_its_function():
    f = mx.custom_function(lambda x: x * x)
    close(mx.vmap(f)(mx.array([1.0, 2.0, 3.0])), [1.0, 4.0, 9.0])


# -- agreement with real MLX ---------------------------------------------------------------------------------------
def _batched_fns(mod):
    return [
        (lambda x, y: mod.softmax(x @ y, axis=-1), (0, None)),
        (lambda x, y: mod.cumsum(x, axis=0) * mod.max(y), (1, 0)),
        (lambda x, y: mod.concatenate([x, y.T], axis=0), (2, None)),
        (lambda x, y: mod.sort(x, axis=-1) + mod.sum(y, axis=0, keepdims=True), (0, 1)),
    ]


@pytest.mark.parametrize("index", range(4))
def test_vmap_matches_mlx(index):
    real = pytest.importorskip("mlx.core")
    x, y = _f32(4, 4, 4), _f32(4, 4)
    f, axes = _batched_fns(mx)[index]
    g, _ = _batched_fns(real)[index]
    ours = mx.vmap(f, in_axes=axes)(mx.array(x), mx.array(y))
    theirs = real.vmap(g, in_axes=axes)(real.array(x), real.array(y))
    close(ours, np.array(theirs))


def test_vmap_of_grad_matches_mlx():
    real = pytest.importorskip("mlx.core")
    w, xs = _f32(4, 2), _f32(5, 1, 4)

    def per_example(mod):
        loss = lambda p, x: mod.sum(mod.tanh(x @ p) ** 2)
        return mod.vmap(mod.grad(loss), in_axes=(None, 0))(mod.array(w), mod.array(xs))

    close(per_example(mx), np.array(per_example(real)))


def test_keyword_arguments_are_refused():
    with pytest.raises(TypeError, match=r"^\[vmap\] Keyword arguments"):
        mx.vmap(lambda x: x)(x=mx.ones((2,)))


def test_evaluating_inside_vmap_names_vmap():
    with pytest.raises(ValueError, match=r"^\[vmap\] Attempted to evaluate"):
        mx.vmap(lambda x: x.item())(mx.ones((2,)))
