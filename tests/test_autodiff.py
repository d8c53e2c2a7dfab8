"""grad, value_and_grad, vjp, jvp, custom_function, checkpoint and stop_gradient through the public API.

Expectations are hand-written derivatives in numpy, or real MLX's gradients where it is installed.
"""

from __future__ import annotations

import kiln.core as mx
import numpy as np
import pytest

RNG = np.random.default_rng(0)


def _np(a):
    return np.array(a)


def _f32(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(_np(a), np.asarray(b), rtol=rtol, atol=atol)


# -- the headline ---------------------------------------------------------------------------------------------
def test_grad_of_exp_prints_like_mlx():
    assert repr(mx.grad(mx.exp)(mx.array(1.0))) == "array(2.71828, dtype=float32)"


# -- compositions ---------------------------------------------------------------------------------------------
def test_grad_of_grad():
    x = _f32(5)
    d2 = mx.grad(lambda v: mx.grad(lambda u: mx.sum(mx.sin(u) * u))(v).sum())(mx.array(x))
    # d/dx sum(sin x * x) = cos x * x + sin x; its derivative: -sin x * x + 2 cos x
    close(d2, -np.sin(x) * x + 2 * np.cos(x))


def test_third_derivative_of_a_scalar_function():
    f = lambda x: x ** 4
    third = mx.grad(mx.grad(mx.grad(f)))(mx.array(1.5))
    close(third, 24 * 1.5)


def test_jvp_of_vjp_is_a_hessian_vector_product():
    x, v = _f32(4), _f32(4)
    f = lambda u: mx.sum(mx.exp(u) * u * u)

    def grad_f(u):
        return mx.vjp(f, [u], [mx.array(1.0)])[1][0]

    _, (hv,) = mx.jvp(grad_f, [mx.array(x)], [mx.array(v)])
    # Hessian is diagonal: d2/dx2 (e^x x^2) = e^x (x^2 + 4x + 2)
    close(hv, np.exp(x) * (x * x + 4 * x + 2) * v, rtol=1e-4)


def test_vjp_is_linear_in_the_cotangent_under_jvp():
    x, c, t = _f32(3), _f32(3), _f32(3)
    vjp_of_c = lambda ct: mx.vjp(mx.tanh, [mx.array(x)], [ct])[1][0]
    _, (out,) = mx.jvp(vjp_of_c, [mx.array(c)], [mx.array(t)])
    close(out, (1 - np.tanh(x) ** 2) * t)


# -- rules reached through ordinary code -------------------------------------------------------------------------
def test_reductions():
    x = _f32(3, 4)
    close(mx.grad(lambda u: mx.mean(u))(mx.array(x)), np.full((3, 4), 1 / 12))
    close(mx.grad(lambda u: mx.sum(mx.max(u, axis=1)))(mx.array(x)),
          (x == x.max(axis=1, keepdims=True)).astype(np.float32))
    lse = mx.grad(lambda u: mx.sum(mx.logsumexp(u, axis=0)))(mx.array(x))
    close(lse, np.exp(x) / np.exp(x).sum(axis=0, keepdims=True))
    var = mx.grad(lambda u: mx.var(u))(mx.array(x))
    close(var, 2 * (x - x.mean()) / x.size)
    prod = mx.grad(lambda u: mx.prod(u))(mx.array(x[0]))
    close(prod, np.prod(x[0]) / x[0], rtol=1e-4)


def test_max_splits_the_gradient_between_ties_as_mlx():
    close(mx.grad(lambda u: mx.max(u))(mx.array([3.0, 1.0, 3.0])), [0.5, 0.0, 0.5])


def test_matmul():
    a, b, w = _f32(2, 3), _f32(3, 4), _f32(2, 4)
    ga, gb = mx.grad(lambda p, q: mx.sum((p @ q) * mx.array(w)), argnums=(0, 1))(mx.array(a), mx.array(b))
    close(ga, w @ b.T)
    close(gb, a.T @ w)


def test_batched_matmul_broadcast_sums_back_to_the_operand_shape():
    a, b = _f32(5, 2, 3), _f32(3, 4)
    gb = mx.grad(lambda q: mx.sum(mx.array(a) @ q))(mx.array(b))
    close(gb, a.sum(axis=(0, 1))[:, None] * np.ones((1, 4)))


def test_where():
    x = _f32(6)
    g = mx.grad(lambda u: mx.sum(mx.where(u > 0, u * u, -u)))(mx.array(x))
    close(g, np.where(x > 0, 2 * x, -1))


def test_broadcasting_sums_cotangents_back_to_input_shapes():
    x, y = _f32(3, 1), _f32(4)
    gx, gy = mx.grad(lambda a, b: mx.sum(a * b), argnums=(0, 1))(mx.array(x), mx.array(y))
    assert gx.shape == (3, 1) and gy.shape == (4,)
    close(gx, np.full((3, 1), y.sum()))
    close(gy, np.full(4, x.sum()))
    gs = mx.grad(lambda s: mx.sum(s + mx.array(_f32(2, 3))))(mx.array(1.0))
    assert gs.shape == () and gs.item() == pytest.approx(6.0)


def test_integer_and_boolean_outputs_have_zero_gradients():
    x = mx.array([0.5, -1.5, 2.0])
    assert _np(mx.grad(lambda u: mx.sum(u * (u > 0)))(x)).tolist() == [1.0, 0.0, 1.0]
    assert _np(mx.grad(lambda u: mx.sum(u * mx.argmax(u).astype(mx.float32)))(x)).tolist() == [2.0, 2.0, 2.0]
    assert not np.any(_np(mx.grad(lambda u: mx.sum(mx.floor(u) + mx.sign(u)))(x)))
    _, (g,) = mx.vjp(lambda u: u > 0, [x], [mx.array([True, False, True])])
    assert g.dtype == mx.float32 and not np.any(_np(g))


def test_casts_pass_gradients_straight_through_as_mlx():
    x = mx.array([1.5, 2.5])
    close(mx.grad(lambda u: mx.sum(u.astype(mx.int32).astype(mx.float32)))(x), [1.0, 1.0])
    close(mx.grad(lambda u: mx.sum(u.astype(mx.float16)))(x), [1.0, 1.0])


def test_cummax_gradient_goes_to_the_element_that_set_the_running_max():
    x = mx.array([1.0, 3.0, 3.0, 2.0, 5.0])
    close(mx.grad(lambda u: mx.sum(mx.cummax(u)))(x), [1, 1, 2, 0, 1])
    close(mx.grad(lambda u: mx.sum(mx.cummax(u, reverse=True)))(x), [0, 0, 0, 0, 5])
    close(mx.grad(lambda u: mx.sum(mx.cummax(u, inclusive=False)))(x), [1, 1, 2, 0, 0])
    close(mx.grad(lambda u: mx.sum(mx.cummin(u) * mx.arange(5)))(mx.array([3.0, 1.0, 1.0, 2.0, 0.0])),
          [0, 1, 5, 0, 4])


def _cumprod_grad_np(x, weights, reverse, inclusive):
    """d/dx of sum(weights * cumprod(x)) for 1-d x: output j is a product of the elements scanned up to j,
    so element i receives weights[j] times the product of the other factors of each output that holds it."""
    order = list(range(len(x)))[::-1] if reverse else list(range(len(x)))
    grad = np.zeros(len(x))
    for pos, j in enumerate(order):
        factors = order[:pos + 1] if inclusive else order[:pos]
        for i in factors:
            grad[i] += weights[j] * np.prod([x[k] for k in factors if k != i])
    return grad


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("values", [
    [2.0, 1.0, 2.0, 2.0, 3.0], [2.0, 0.0, 2.0, 2.0, 3.0], [2.0, 0.0, 2.0, 0.0, 3.0], [0.0, 0.0, 1.5, -2.0, 0.0],
])
def test_cumprod_gradient_with_zeros_matches_the_product_rule(values, inclusive, reverse):
    x = np.array(values)
    weights = np.arange(1.0, 6.0)
    got = mx.grad(lambda u: mx.sum(mx.array(weights.astype(np.float32)) * mx.cumprod(
        u, reverse=reverse, inclusive=inclusive)))(mx.array(x.astype(np.float32)))
    close(got, _cumprod_grad_np(x, weights, reverse, inclusive), rtol=1e-6, atol=1e-6)


def test_cumprod_gradient_along_an_inner_axis():
    x = np.array([[1.0, 0.0, 3.0], [0.5, 2.0, 0.0]])
    expected = np.stack([_cumprod_grad_np(row, np.ones(3), False, True) for row in x])
    close(mx.grad(lambda u: mx.sum(mx.cumprod(u, axis=1)))(mx.array(x.astype(np.float32))), expected)


@pytest.mark.parametrize("mode", ["maximum", "minimum"])
def test_at_maximum_and_minimum_send_the_gradient_to_both_sides_of_a_tie_as_mlx_scatter(mode):
    def fun(src, updates):
        return getattr(src.at[1], mode)(updates)

    ct = mx.array([[4.0], [5.0], [6.0]])
    _, (g_src, g_upd) = mx.vjp(fun, [mx.array([[1.0], [2.0], [3.0]]), mx.array([[[2.0]]])], [ct])
    close(g_src, [[4.0], [5.0], [6.0]])  # a tie: the array keeps its cotangent ...
    close(g_upd, [[[5.0]]])  # ... and so does the update
    winner = 3.0 if mode == "maximum" else 1.0  # strictly better than the array's 2.0
    _, (g_src, g_upd) = mx.vjp(fun, [mx.array([1.0, 2.0, 3.0]), mx.array([[winner]])], [mx.array([4.0, 5.0, 6.0])])
    close(g_src, [4.0, 0.0, 6.0])
    close(g_upd, [[5.0]])
    close(fun(mx.array([[1.0], [2.0], [3.0]]), mx.array([[[winner]]])), [[1.0], [winner], [3.0]])


def _indexing_available():
    try:
        mx.array([1.0, 2.0])[0]
    except (ImportError, AttributeError, NotImplementedError):
        return False
    return True


@pytest.mark.skipif(not _indexing_available(), reason="indexing (__getitem__) has not landed")
def test_gradient_through_getitem():
    x = _f32(4, 5)
    g = mx.grad(lambda u: mx.sum(u[1:, ::2] * 2))(mx.array(x))
    want = np.zeros((4, 5), np.float32)
    want[1:, ::2] = 2
    close(g, want)
    g = mx.grad(lambda u: mx.sum(u[mx.array([0, 2, 0])]))(mx.array(x))
    close(g, np.array([2, 0, 1, 0], np.float32)[:, None] * np.ones((1, 5)))


@pytest.mark.skipif(not _indexing_available(), reason="indexing (__setitem__) has not landed")
def test_gradient_through_setitem():
    x, v = _f32(3, 4), _f32(4)

    def f(u, w):
        y = u * 1
        y[1] = w * 3
        return mx.sum(y * y)

    gx, gv = mx.grad(f, argnums=(0, 1))(mx.array(x), mx.array(v))
    want = 2 * x
    want[1] = 0
    close(gx, want)
    close(gv, 2 * (3 * v) * 3)


# -- argnums / argnames / trees ------------------------------------------------------------------------------------
def test_argnums_with_trees():
    params = {"w": mx.array([1.0, 2.0]), "b": [mx.array(3.0), (mx.array(4.0),)]}
    x = mx.array([5.0, 6.0])

    def loss(p, u, scale):
        return mx.sum(p["w"] * u) * p["b"][0] * p["b"][1][0] * scale

    gp, gx = mx.grad(loss, argnums=(0, 1))(params, x, 2.0)
    assert isinstance(gp, dict) and isinstance(gp["b"], list) and isinstance(gp["b"][1], tuple)
    close(gp["w"], [5 * 12 * 2, 6 * 12 * 2])
    close(gp["b"][0], 17 * 4 * 2)
    close(gp["b"][1][0], 17 * 3 * 2)
    close(gx, [1 * 24, 2 * 24])
    single = mx.grad(loss)(params, x, 2.0)
    assert isinstance(single, dict)


def test_argnames_return_positional_and_keyword_gradients_as_mlx():
    f = lambda x, y=None: mx.sum(x * y)
    x, y = mx.array([1.0, 2.0]), mx.array([3.0, 4.0])
    pos, kw = mx.grad(f, argnames=["y"])(x, y=y)
    assert pos is None and list(kw) == ["y"]
    close(kw["y"], [1.0, 2.0])
    pos, kw = mx.grad(f, argnums=0, argnames="y")(x, y=y)
    close(pos, [3.0, 4.0])
    close(kw["y"], [1.0, 2.0])


def test_negative_argnums_are_refused_as_in_mlx():
    with pytest.raises(ValueError, match=r"\[grad\] Can't compute the gradient of negative argument index -1"):
        mx.grad(lambda a, b: mx.sum(a * b * b), argnums=-1)(mx.array(2.0), mx.array(3.0))


def test_value_and_grad_with_aux_outputs():
    x = mx.array([1.0, 2.0])
    (loss, aux), g = mx.value_and_grad(lambda u: (mx.sum(u * u), u + 1))(x)
    close(loss, 5.0)
    close(aux, [2.0, 3.0])
    close(g, [2.0, 4.0])
    (loss, a, b), g = mx.value_and_grad(lambda u: [mx.sum(u), {"k": u}, 3])(x)
    assert b == 3 and isinstance(a, dict)
    close(g, [1.0, 1.0])


@pytest.mark.parametrize("fn,argnums,args,message", [
    (lambda x: x * 2, None, (mx.array([1.0, 2.0]),), r"^\[grad\].*scalar"),
    (lambda x: mx.sum(x), 3, (mx.array([1.0]),), r"^\[grad\] Can't compute the gradient of argument index 3"),
    (lambda x: mx.sum(x), (0, 0), (mx.array([1.0]),), r"^\[grad\].*[Dd]uplicate"),
    (lambda x: "loss", None, (mx.array([1.0]),), r"^\[grad\]"),
])
def test_grad_errors(fn, argnums, args, message):
    with pytest.raises(ValueError, match=message):
        mx.grad(fn, argnums=argnums)(*args)


def test_grad_refuses_auxiliary_outputs_that_value_and_grad_accepts():
    def fun(x, y):
        loss = mx.sum(x * y)
        return loss, {"loss": loss, "bar": [1, 2, y]}

    x, y = mx.array([1.0, 2.0]), mx.array([3.0, 4.0])
    (loss, aux), g = mx.value_and_grad(fun)(x, y)
    close(loss, 11.0)
    assert aux["bar"][:2] == [1, 2]
    close(g, [3.0, 4.0])
    with pytest.raises(ValueError, match=r"^\[grad\] The return value .* should be a scalar array; but tuple"):
        mx.grad(fun)(x, y)


@pytest.mark.parametrize("make,args,error,message", [
    # Every leaf of a differentiated argument must be an array (MLX's tree_flatten rule).
    (lambda: mx.value_and_grad(lambda p: p["x"] * p["y"]), ({"x": 0.5, "y": mx.array(2.0)},), ValueError,
     r"only arrays"),
    (lambda: mx.grad(lambda p: p[0].sum()), ([mx.array([1.0]), None],), ValueError, r"only arrays"),
    (lambda: mx.value_and_grad(lambda x: x, ()), None, ValueError, r"^\[value_and_grad\] Gradient wrt no argument"),
    (lambda: mx.grad(lambda x: x, argnums=[]), None, ValueError, r"^\[grad\] Gradient wrt no argument"),
    (lambda: mx.value_and_grad(lambda x: x, (None, None)), None, TypeError, r"^\[value_and_grad\] argnums"),
])
def test_argument_validation_as_mlx(make, args, error, message):
    with pytest.raises(error, match=message):
        fn = make()
        fn(*args)


def test_argument_validation_agrees_with_mlx():
    real = pytest.importorskip("mlx.core")
    for lib in (mx, real):
        with pytest.raises(ValueError):
            lib.value_and_grad(lambda p: p["x"] * p["y"])({"x": 0.5, "y": lib.array(2.0)})
        with pytest.raises(ValueError):
            lib.value_and_grad(lambda x: x, tuple())
        with pytest.raises(ValueError):
            lib.grad(lambda x: (x.sum(), 1))(lib.array([1.0]))


def test_argnums_of_the_wrong_type_raise_type_error():
    with pytest.raises(TypeError, match=r"^\[grad\]"):
        mx.grad(lambda x: mx.sum(x), argnums=1.5)(mx.array([1.0]))


def test_one_argnum_in_a_sequence_gives_an_unwrapped_gradient_as_mlx():
    g = mx.grad(lambda u: mx.sum(u * u), argnums=(0,))(mx.array([1.0, 2.0]))
    assert isinstance(g, mx.array)
    close(g, [2.0, 4.0])


def test_grad_error_for_missing_keyword():
    with pytest.raises(ValueError, match=r"^\[grad\]"):
        mx.grad(lambda x, y=None: mx.sum(x), argnames=["y"])(mx.array(1.0))


def test_vjp_and_jvp_errors():
    with pytest.raises(ValueError, match=r"^\[vjp\]"):
        mx.vjp(lambda x: x * 2, [mx.array([1.0, 2.0])], [mx.array(1.0)])
    with pytest.raises(ValueError, match=r"^\[jvp\]"):
        mx.jvp(lambda x: x * 2, [mx.array([1.0, 2.0])], [mx.array([1.0])])
    with pytest.raises(ValueError, match=r"^\[vjp\]"):
        mx.vjp(lambda x: x * 2, [mx.array(1.0)], [mx.array(1.0), mx.array(2.0)])


def test_vjp_and_jvp_return_lists_for_several_outputs():
    x, y = mx.array(2.0), mx.array(3.0)
    outs, cts = mx.vjp(lambda a, b: (a * b, a + b), [x, y], [mx.array(1.0), mx.array(10.0)])
    assert len(outs) == 2 and len(cts) == 2
    close(cts[0], 3 + 10)
    close(cts[1], 2 + 10)
    outs, tans = mx.jvp(lambda a, b: [a * b, a - b], [x, y], [mx.array(1.0), mx.array(0.0)])
    close(tans[0], 3.0)
    close(tans[1], 1.0)


def test_unused_input_gets_zero_gradient():
    g = mx.grad(lambda a, b: mx.sum(a), argnums=1)(mx.array([1.0]), mx.array([[2.0, 3.0]]))
    assert g.shape == (1, 2) and not np.any(_np(g))


# -- stop_gradient, custom_function, checkpoint ---------------------------------------------------------------------
def test_stop_gradient():
    x = _f32(3)
    g = mx.grad(lambda u: mx.sum(mx.stop_gradient(u) * u))(mx.array(x))
    close(g, x)
    _, (t,) = mx.jvp(lambda u: mx.stop_gradient(u) * 2, [mx.array(x)], [mx.ones((3,))])
    assert not np.any(_np(t))


def test_custom_function_vjp_override_uses_mlx_calling_convention():
    seen = {}

    @mx.custom_function
    def f(x):
        return mx.sin(x)

    @f.vjp
    def f_vjp(primals, cotangent, output):
        seen["types"] = (type(primals), type(cotangent), type(output))
        return cotangent * 2

    x = mx.array([1.0, 2.0])
    close(f(x), np.sin([1.0, 2.0]))
    close(mx.grad(lambda u: mx.sum(f(u)))(x), [2.0, 2.0])
    # one primal, one output: all three passed unwrapped, as MLX does
    assert seen["types"] == (mx.array, mx.array, mx.array)


def test_custom_function_with_several_inputs_and_outputs():
    @mx.custom_function
    def f(x, y):
        return x * y, x + y

    @f.vjp
    def f_vjp(primals, cotangents, outputs):
        assert isinstance(primals, tuple) and isinstance(cotangents, tuple) and isinstance(outputs, tuple)
        return cotangents[0] * 10, cotangents[1] * 100

    @f.jvp
    def f_jvp(primals, tangents):
        return tangents[0] * 7, tangents[1] * 9

    x, y = mx.array([1.0, 2.0]), mx.array([3.0, 4.0])
    gx, gy = mx.grad(lambda a, b: mx.sum(f(a, b)[0]), argnums=(0, 1))(x, y)
    close(gx, [10.0, 10.0])
    assert not np.any(_np(gy))
    _, tans = mx.jvp(f, [x, y], [mx.ones((2,)), mx.ones((2,))])
    close(tans[0], [7.0, 7.0])
    close(tans[1], [9.0, 9.0])


def test_custom_function_list_output_keeps_its_container():
    @mx.custom_function
    def f(x):
        return [x * 2]

    @f.vjp
    def f_vjp(primal, cotangents, outputs):
        assert isinstance(cotangents, list) and isinstance(outputs, list)
        return cotangents[0] * 5

    out = f(mx.array([1.0]))
    assert isinstance(out, list)
    close(mx.grad(lambda u: mx.sum(f(u)[0]))(mx.array([1.0, 2.0])), [5.0, 5.0])


def _tree_double(lib):
    @lib.custom_function
    def double(params, scale=1.0):
        return {"out": 2 * scale * params["x"] * params["y"], "aux": [params["x"] + 1]}

    return double


def test_custom_function_with_dict_arguments_and_results():
    double = _tree_double(mx)
    x, y = _f32(3), _f32(3)
    p = {"x": mx.array(x), "y": mx.array(y)}
    out = double(p)
    assert set(out) == {"out", "aux"} and isinstance(out["aux"], list)
    g = mx.grad(lambda q: mx.sum(double(q)["out"]) + mx.sum(double(q)["aux"][0]))(p)
    close(g["x"], 2 * y + 1)
    close(g["y"], 2 * x)
    seen = {}

    @double.vjp
    def double_vjp(primals, cotangents, outputs, scale=1.0):
        seen.update(primals=set(primals), cotangents=set(cotangents), outputs=set(outputs), scale=scale)
        return {"x": mx.zeros_like(primals["x"]), "y": scale * mx.ones_like(primals["y"])}

    g = mx.grad(lambda q: mx.sum(double(q, scale=3.0)["out"]))(p)
    close(g["x"], np.zeros(3))
    close(g["y"], np.full(3, 3.0))
    assert seen == {"primals": {"x", "y"}, "cotangents": {"out", "aux"}, "outputs": {"out", "aux"}, "scale": 3.0}

    @double.jvp
    def double_jvp(primals, tangents, scale=1.0):
        return {"out": 2 * primals["x"] * tangents["y"] + 2 * primals["y"] * tangents["x"] + 1,
                "aux": [tangents["x"]]}

    _, (t,) = mx.jvp(lambda a, b: double({"x": a, "y": b})["out"], [p["x"], p["y"]],
                     [mx.ones((3,)), mx.ones((3,))])
    close(t, 2 * x + 2 * y + 1)


def test_custom_function_trees_match_mlx():
    real = pytest.importorskip("mlx.core")
    x, y = _f32(3), _f32(3)
    grads = []
    for lib in (mx, real):
        double = _tree_double(lib)
        p = {"x": lib.array(x), "y": lib.array(y)}
        grads.append(lib.grad(lambda q, lib=lib, double=double: lib.sum(double(q)["out"] * double(q)["aux"][0]))(p))
    close(grads[0]["x"], np.array(grads[1]["x"]))
    close(grads[0]["y"], np.array(grads[1]["y"]))


def test_custom_function_vmap_override():
    calls = []

    @mx.custom_function
    def f(x):
        return mx.sin(x)

    @f.vmap
    def f_vmap(inputs, axes):
        calls.append(axes)
        return mx.sin(inputs) + 1, axes

    got = mx.vmap(f)(mx.array([[1.0, 2.0]]))
    close(got, np.sin([[1.0, 2.0]]) + 1)
    assert calls == [0]


def test_custom_function_without_overrides_differentiates_fun():
    f = mx.custom_function(lambda x: mx.exp(x) * x)
    x = _f32(3)
    close(mx.grad(lambda u: mx.sum(f(u)))(mx.array(x)), np.exp(x) * (x + 1))
    _, (t,) = mx.jvp(f, [mx.array(x)], [mx.ones((3,))])
    close(t, np.exp(x) * (x + 1))
    close(mx.vmap(f)(mx.array(x)), np.exp(x) * x)


def test_custom_vjp_rule_returning_the_wrong_count_raises():
    f = mx.custom_function(lambda x, y: x * y)
    f.vjp(lambda primals, ct, out: ct)
    with pytest.raises(ValueError, match=r"^\[custom_function\]"):
        mx.grad(lambda a, b: mx.sum(f(a, b)))(mx.array([1.0]), mx.array([2.0]))


def test_checkpoint_gives_the_same_gradient():
    def block(w, x):
        return mx.sum(mx.tanh(x @ w) ** 2)

    w, x = _f32(3, 3), _f32(2, 3)
    plain = mx.grad(block, argnums=(0, 1))(mx.array(w), mx.array(x))
    ck = mx.grad(mx.checkpoint(block), argnums=(0, 1))(mx.array(w), mx.array(x))
    for a, b in zip(plain, ck):
        close(a, _np(b))
    close(mx.checkpoint(block)(mx.array(w), mx.array(x)), _np(block(mx.array(w), mx.array(x))))


# -- agreement with real MLX ---------------------------------------------------------------------------------------
def _softmax_ce(mod, logits, labels):
    logp = logits - mod.logsumexp(logits, axis=-1, keepdims=True)
    return -mod.mean(mod.sum(logp * labels, axis=-1))


def _mlp(mod, w1, b1, w2, x):
    h = mod.maximum(x @ w1 + b1, 0.0)
    return mod.mean(mod.tanh(h @ w2) ** 2)


def _norms(mod, x):
    return mod.sqrt(mod.sum(x * x)) + mod.sum(mod.abs(x)) + mod.max(mod.abs(x))


def _trig(mod, x, y):
    return mod.sum(mod.sin(x) * mod.cos(y) + mod.arctan2(x, y) + mod.tanh(x * y) + mod.sigmoid(x) ** 2)


def _softmax_attention(mod, q, k):
    s = q @ k.T / 2.0
    p = mod.softmax(s, axis=-1)
    return mod.sum(p * mod.cumsum(p, axis=1)) + mod.sum(mod.var(q, axis=0)) + mod.sum(mod.erf(k))


def _reshapes(mod, x):
    y = mod.transpose(mod.reshape(x, (3, 4)), (1, 0))
    z = mod.concatenate([y, mod.expand_dims(mod.sum(y, axis=1), 1)], axis=1)
    return mod.sum(mod.pad(z, ((1, 0), (0, 2))) ** 2) + mod.sum(mod.cumprod(mod.exp(x * 0.1)))


def _labels():
    lab = np.zeros((4, 5), np.float32)
    lab[np.arange(4), [0, 3, 1, 4]] = 1
    return lab


COMPOSITES = [
    ("softmax_cross_entropy", _softmax_ce, lambda: [_f32(4, 5, lo=-3, hi=3), _labels()], (0,)),
    ("mlp", _mlp, lambda: [_f32(3, 8), _f32(8), _f32(8, 2), _f32(5, 3)], (0, 1, 2)),
    ("logsumexp", lambda mod, x: mod.logsumexp(x * 3.0), lambda: [_f32(6)], (0,)),
    ("norms", _norms, lambda: [_f32(7)], (0,)),
    ("trig", _trig, lambda: [_f32(5), _f32(5, lo=0.2, hi=1.0)], (0, 1)),
    ("attention", _softmax_attention, lambda: [_f32(3, 4), _f32(3, 4)], (0, 1)),
    ("shapes", _reshapes, lambda: [_f32(12)], (0,)),
]


@pytest.mark.parametrize("name,fn,make,argnums", COMPOSITES, ids=[c[0] for c in COMPOSITES])
def test_composite_gradients_match_mlx(name, fn, make, argnums):
    real = pytest.importorskip("mlx.core")
    args = make()
    ours = mx.value_and_grad(lambda *xs: fn(mx, *xs), argnums=argnums)(*[mx.array(a) for a in args])
    theirs = real.value_and_grad(lambda *xs: fn(real, *xs), argnums=argnums)(*[real.array(a) for a in args])
    close(ours[0], np.array(theirs[0]), rtol=1e-4, atol=1e-5)
    ours_g, theirs_g = (ours[1], theirs[1]) if len(argnums) > 1 else ((ours[1],), (theirs[1],))
    for g, h in zip(ours_g, theirs_g):
        close(g, np.array(h), rtol=1e-4, atol=1e-5)


def test_hessian_vector_product_matches_mlx():
    real = pytest.importorskip("mlx.core")
    x, v = _f32(4), _f32(4)

    def hvp(mod):
        f = lambda u: mod.sum(mod.exp(u) * mod.sin(u)) + mod.logsumexp(u * u)
        return mod.jvp(mod.grad(f), [mod.array(x)], [mod.array(v)])[1][0]

    close(hvp(mx), np.array(hvp(real)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["abs", "abs_of_square", "real_of_square", "x_times_conj"])
def test_complex_gradients_match_mlx(name):
    real = pytest.importorskip("mlx.core")
    funcs = {
        "abs": lambda m, x: m.abs(x).sum(),
        "abs_of_square": lambda m, x: m.abs(x * x).sum(),
        "real_of_square": lambda m, x: m.real(x * x).sum(),
        "x_times_conj": lambda m, x: m.real(x * m.conj(x)).sum(),
    }
    z = [1 + 1j, 2 - 0.5j]
    ours = mx.grad(lambda x: funcs[name](mx, x))(mx.array(z))
    theirs = real.grad(lambda x: funcs[name](real, x))(real.array(z))
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-5, atol=1e-6)


def test_grad_keeps_the_argument_structure_when_the_function_mutates_it():
    def f(xs):
        xs[0] = xs[0] * 2
        xs.append(mx.array(5.0))
        return xs[0] + xs[1]

    params = [mx.array(1.0), mx.array(3.0)]
    second = params[1]
    g = mx.grad(f)(params)
    assert len(g) == 2 and [v.item() for v in g] == [2.0, 1.0]
    # The function updated the caller's own list (MLX's in-place semantics): the assigned slot keeps its new
    # value, the appended array stays, and the untouched slot holds the caller's array again.
    assert [v.item() for v in params] == [2.0, 3.0, 5.0] and params[1] is second

    def h(p):
        p["a"] = p["a"] * 3
        p["b"] = mx.array(1.0)
        return p["a"]

    d = {"a": mx.array(1.0)}
    assert {k: v.item() for k, v in mx.grad(h)(d).items()} == {"a": 3.0}
    assert {k: v.item() for k, v in d.items()} == {"a": 3.0, "b": 1.0}


def test_grad_with_an_in_place_update_of_the_argument_as_mlx():
    def loss_fn(model):
        model[1] = mx.array(2.0)
        return model[0] * model[0]

    model = [mx.array(3.0), mx.array(1.0)]
    first = model[0]
    g = mx.grad(loss_fn)(model)
    close(g[0], 6.0)
    close(g[1], 0.0)
    assert model[1].item() == 2.0 and model[0] is first
    w = mx.array(1.0)
    nested = ({"w": [w]},)  # tuples are rebuilt, the list inside is the caller's own
    close(mx.grad(lambda t: t[0]["w"][0] * 2)(nested)[0]["w"][0], 2.0)
    assert nested[0]["w"][0] is w


def test_in_place_update_agrees_with_mlx():
    real = pytest.importorskip("mlx.core")
    for lib in (mx, real):
        def loss_fn(model, lib=lib):
            model[0] = model[0] * 2
            return model[0] + model[1]

        model = [lib.array(1.0), lib.array(3.0)]
        g = lib.grad(loss_fn)(model)
        assert [v.item() for v in g] == [2.0, 1.0]
        assert [v.item() for v in model] == [2.0, 3.0]
