"""Elementwise primitives: unary, binary and ternary records.

Elementwise primitives take inputs of one dtype (ops promotes first) and broadcast them numpy-style
(right-aligned, size-1 dimensions stretch; 1 against 0 gives 0). Keeping broadcasting inside the
primitive keeps traced graphs valid at every shape (`shapeless=True`) and lets kernels read broadcast
inputs through zero strides. float16/bfloat16 compute in float32 and round once, as kernels do.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import BINARY, TERNARY, UNARY, Primitive, register
from .float32_math import erfinv32

_HALF = (dt.float16.np, dt.bfloat16.np)


def broadcast_shapes(*shapes, op="broadcast_shapes") -> tuple:
    # The common cases (equal shapes, or a shape against a scalar's) need no per-dimension work.
    if len(shapes) == 2:
        a, b = shapes
        if a == b or not len(b):
            return tuple(a)
        if not len(a):
            return tuple(b)
        # Two shapes, right-aligned: the longer one's dimensions, each stretched where it is 1.
        long, short = (a, b) if len(a) >= len(b) else (b, a)
        out = list(long)
        skip = len(long) - len(short)
        for i, d in enumerate(short, skip):
            e = out[i]
            if d != e:
                if e == 1:
                    out[i] = d
                elif d != 1:
                    raise ValueError(f"[{op}] Shapes {tuple(a)} and {tuple(b)} cannot be broadcast.")
        return tuple(out)
    else:
        first = ()
        for s in shapes:
            if len(s):
                if not first:
                    first = s
                elif s != first:
                    break
        else:
            return tuple(first)  # every shape is `first` or a scalar's ()
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"[{op}] Shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast.")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _in_float32(fn):
    """Run fn in float32 for half-precision inputs and round the result back."""

    def impl(*xs, **params):
        d = xs[0].dtype
        if d.itemsize == 2 and d in _HALF:  # the size test first: a float32 input skips two dtype compares
            return np.asarray(fn(*(x.astype(np.float32) for x in xs), **params)).astype(d)
        return fn(*xs, **params)

    return impl


# -- shape rules -------------------------------------------------------------------------------
def _same_rule(name):
    def rule(*xs, **params):
        first = xs[0]
        d = first.dtype
        if len(xs) == 1:
            return tuple(first.shape), d
        if len(xs) == 2:  # binary ops: the same checks as below, unrolled (this runs once per op)
            second = xs[1]
            if second.dtype != d:
                raise ValueError(f"[{name}] internal: operands must share a dtype, got {d} and {second.dtype}")
            return broadcast_shapes(first.shape, second.shape, op=name), d
        for x in xs[1:]:
            if x.dtype != d:
                raise ValueError(f"[{name}] internal: operands must share a dtype, got {d} and {x.dtype}")
        return broadcast_shapes(*[x.shape for x in xs], op=name), d

    return rule


def _bool_rule(name):
    same = _same_rule(name)

    def rule(*xs, **params):
        return same(*xs)[0], dt.bool_

    return rule


# -- generic transform rules ---------------------------------------------------------------------
_OPS = []


def _ops():
    # ops imports this module, so it is looked up on first use; then kept (rules call this per node).
    if not _OPS:
        from .. import ops

        _OPS.append(ops)
    return _OPS[0]


def unbroadcast(ct, shape):
    """Sum a cotangent back to `shape` (the inverse of numpy broadcasting)."""
    from ..tracing import tracing_shapeless

    ops = _ops()
    if tuple(ct.shape) == tuple(shape):
        return ct
    lead = ct.ndim - len(shape)
    ones = tuple(lead + i for i, s in enumerate(shape) if s == 1 and ct.shape[lead + i] != 1)
    if tracing_shapeless():
        # Sizes change when the trace replays: sum the leading axes away rather than reshape to `shape`.
        out = ops.sum(ct, axis=ones, keepdims=True) if ones else ct
        return ops.sum(out, axis=tuple(range(lead))) if lead else out
    axes = tuple(range(lead)) + ones
    out = ops.sum(ct, axis=axes, keepdims=True) if axes else ct
    return ops.reshape(out, shape) if tuple(out.shape) != tuple(shape) else out


def broadcast_like(value, like):
    """`value` broadcast to the shape of `like`; in a shapeless trace, to the shape `like` has at run time
    (a multiplication by ones, which broadcasts at any size, where broadcast_to would hold the traced one)."""
    from ..tracing import tracing_shapeless

    ops = _ops()
    if tracing_shapeless():
        return ops.multiply(value, ops.ones_like(like, dtype=value.dtype))
    return ops.broadcast_to(value, like.shape)


def elementwise_vmap(name):
    """Move batch dimensions to the front and align ranks; the primitive broadcasts the rest."""

    def rule(inputs, bdims, params):
        ops = _ops()
        from ..array import bind

        size = next(x.shape[b] for x, b in zip(inputs, bdims) if b is not None)
        rank = max(x.ndim - (b is not None) for x, b in zip(inputs, bdims))
        moved = []
        for x, b in zip(inputs, bdims):
            if b is None:
                moved.append(x)
                continue
            x = ops.moveaxis(x, b, 0)
            missing = rank - (x.ndim - 1)
            if missing:
                x = ops.reshape(x, (size,) + (1,) * missing + tuple(x.shape[1:]))
            moved.append(x)
        return bind(name, *moved, **params), 0

    return rule


def _conj(d):
    """Cotangents of complex values flow through the conjugate derivative (as MLX's rules do)."""
    if hasattr(d, "dtype") and d.dtype == dt.complex64:
        from ..ops_extra import conjugate

        return conjugate(d)
    return d


def _scale(ct, d):
    """ct * d, without a node when the derivative is the constant 1 or -1 (keeps backward graphs small)."""
    if isinstance(d, int) and not isinstance(d, bool):
        if d == 1:
            return ct
        if d == -1:
            return -ct
    return ct * d


def unary(name, fn, deriv=None, c_expr=None, float_only=True, differentiable=True, rule=None):
    """deriv(x, out) -> d out / d x, built from ops."""
    impl = _in_float32(fn) if float_only else fn

    def vjp(ct, out, inputs, params):
        return (_scale(ct, _conj(deriv(inputs[0], out))),)

    def jvp(tangents, out, inputs, params):
        t = _scale(tangents[0], deriv(inputs[0], out))
        if t.dtype == dt.complex64 and out.dtype != dt.complex64:
            # a real function of a complex input (abs): its tangent is the real part
            from ..ops_extra import real

            t = real(t)
        return t

    has_rule = deriv is not None
    return register(Primitive(
        name=name, kind=UNARY, impl=impl, shape_rule=rule or _same_rule(name),
        vjp=vjp if has_rule else None, jvp=jvp if has_rule else None,
        vmap=elementwise_vmap(name), c_expr=c_expr, differentiable=differentiable,
    ))


def binary(name, fn, partials=None, c_expr=None, rule=None, half=True, differentiable=True):
    """partials(x, y, out) -> (d out/dx, d out/dy), built from ops."""
    impl = _in_float32(fn) if half else fn

    def vjp(ct, out, inputs, params):
        x, y = inputs
        dx, dy = partials(x, y, out)
        return (
            None if dx is None else unbroadcast(_scale(ct, _conj(dx)), x.shape),
            None if dy is None else unbroadcast(_scale(ct, _conj(dy)), y.shape),
        )

    def jvp(tangents, out, inputs, params):
        x, y = inputs
        dx, dy = partials(x, y, out)
        parts = [_scale(t, d) for t, d in zip(tangents, (dx, dy)) if t is not None and d is not None]
        ops = _ops()
        if not parts:
            return ops.zeros_like(out)
        total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return ops.broadcast_to(total, out.shape) if total.shape != out.shape else total

    has_rule = partials is not None
    return register(Primitive(
        name=name, kind=BINARY, impl=impl, shape_rule=rule or _same_rule(name),
        vjp=vjp if has_rule else None, jvp=jvp if has_rule else None,
        vmap=elementwise_vmap(name), c_expr=c_expr, differentiable=differentiable,
    ))


def _o():
    return _ops()


# -- unary -----------------------------------------------------------------------------------------
def _sign(x):
    if np.iscomplexobj(x):
        return x / np.where(x == 0, 1, np.abs(x))
    return np.sign(x)


def _round_half_even(x):
    # numpy rounds a complex number's real and imaginary parts, as MLX does
    return np.round(x) if np.issubdtype(x.dtype, np.inexact) or x.dtype in _HALF else x


def _special():
    """scipy.special, imported on first use: it costs a third of a second, more than all of kiln."""
    import scipy.special

    return scipy.special


def _erfinv(x):
    # float32 (and the half types, computed in float32): MLX's own algorithm, bit for bit. float64 stays
    # scipy's, accurate in double (MLX computes float64 erfinv in float32 precision).
    if x.dtype == np.float32:
        return erfinv32(x)
    return _special().erfinv(x)


# |z| is not holomorphic: its cotangent is ct * z/|z| (MLX's convention), so the rule's "derivative" is
# written pre-conjugated to cancel the conjugation every vjp applies.
def _abs_rule(a):
    # |z| of a complex number is real, as in MLX
    return tuple(a.shape), dt.float32 if a.dtype == dt.complex64 else a.dtype


unary("abs", np.abs, lambda x, y: _conj(_o().sign(x)), "kiln_abs({0})", float_only=False, rule=_abs_rule)
unary("negative", np.negative, lambda x, y: -1, "(-{0})", float_only=False)
unary("sign", _sign, lambda x, y: _o().zeros_like(x), "kiln_sign({0})", float_only=False)
unary("exp", np.exp, lambda x, y: y, "kiln_exp({0})")
unary("expm1", np.expm1, lambda x, y: y + 1, "kiln_expm1({0})")
unary("log", np.log, lambda x, y: _o().reciprocal(x), "kiln_log({0})")
unary("log1p", np.log1p, lambda x, y: _o().reciprocal(x + 1), "kiln_log1p({0})")
unary("log2", np.log2, lambda x, y: _o().reciprocal(x * float(np.log(2))), "kiln_log2({0})")
unary("log10", np.log10, lambda x, y: _o().reciprocal(x * float(np.log(10))), "kiln_log10({0})")
unary("sqrt", np.sqrt, lambda x, y: 0.5 / y, "kiln_sqrt({0})")
unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda x, y: -0.5 * y / x, "kiln_rsqrt({0})")
unary("square", np.square, lambda x, y: 2 * x, "({0} * {0})", float_only=False)
unary("reciprocal", np.reciprocal, lambda x, y: -(y * y), "(1 / {0})")
unary("sin", np.sin, lambda x, y: _o().cos(x), "kiln_sin({0})")
unary("cos", np.cos, lambda x, y: -_o().sin(x), "kiln_cos({0})")
unary("tan", np.tan, lambda x, y: 1 + y * y, "kiln_tan({0})")
unary("arcsin", np.arcsin, lambda x, y: _o().rsqrt(1 - x * x), "kiln_arcsin({0})")
unary("arccos", np.arccos, lambda x, y: -_o().rsqrt(1 - x * x), "kiln_arccos({0})")
unary("arctan", np.arctan, lambda x, y: _o().reciprocal(1 + x * x), "kiln_arctan({0})")
unary("sinh", np.sinh, lambda x, y: _o().cosh(x), "kiln_sinh({0})")
unary("cosh", np.cosh, lambda x, y: _o().sinh(x), "kiln_cosh({0})")
unary("tanh", np.tanh, lambda x, y: 1 - y * y, "kiln_tanh({0})")
unary("arcsinh", np.arcsinh, lambda x, y: _o().rsqrt(x * x + 1), "kiln_arcsinh({0})")
unary("arccosh", np.arccosh, lambda x, y: _o().rsqrt(x * x - 1), "kiln_arccosh({0})")
unary("arctanh", np.arctanh, lambda x, y: _o().reciprocal(1 - x * x), "kiln_arctanh({0})")
def _sigmoid(x):
    # scipy's float32 expit flushes results below ~1e-38 to zero; float64 then one rounding gives the correctly
    # rounded float32, subnormals included (sigmoid(-92.4) = 7.4335e-41).
    if x.dtype == np.float32:
        return _special().expit(x.astype(np.float64)).astype(np.float32)
    return _special().expit(x)


unary("sigmoid", _sigmoid, lambda x, y: y * (1 - y), "kiln_sigmoid({0})")
unary("erf", lambda x: _special().erf(x), lambda x, y: float(2 / np.sqrt(np.pi)) * _o().exp(-(x * x)), "kiln_erf({0})")
unary("erfinv", _erfinv, lambda x, y: float(np.sqrt(np.pi) / 2) * _o().exp(y * y), "kiln_erfinv({0})")
unary("floor", np.floor, lambda x, y: _o().zeros_like(x), "kiln_floor({0})", float_only=False)
unary("ceil", np.ceil, lambda x, y: _o().zeros_like(x), "kiln_ceil({0})", float_only=False)
unary("round", _round_half_even, lambda x, y: _o().zeros_like(x), "kiln_round({0})", float_only=False)
unary("isnan", np.isnan, None, "kiln_isnan({0})", float_only=False, differentiable=False, rule=_bool_rule("isnan"))
unary("isinf", np.isinf, None, "kiln_isinf({0})", float_only=False, differentiable=False, rule=_bool_rule("isinf"))
unary("isfinite", np.isfinite, None, "kiln_isfinite({0})", float_only=False, differentiable=False,
      rule=_bool_rule("isfinite"))
unary("logical_not", np.logical_not, None, "(!{0})", float_only=False, differentiable=False,
      rule=_bool_rule("logical_not"))
unary("bitwise_invert", np.invert, None, "(~{0})", float_only=False, differentiable=False)
unary("copy", lambda x: x, lambda x, y: 1, "{0}", float_only=False)


def _stop_gradient_rules():
    return register(Primitive(
        name="stop_gradient", kind=UNARY, impl=lambda x: x, shape_rule=_same_rule("stop_gradient"),
        vjp=lambda ct, out, inputs, params: (None,),
        jvp=lambda tangents, out, inputs, params: _o().zeros_like(out),
        vmap=elementwise_vmap("stop_gradient"), c_expr="{0}",
    ))


_stop_gradient_rules()


# astype: the one unary whose output dtype differs from its input's.
def _astype_impl(x, dtype):
    if np.iscomplexobj(x) and not dt.issubdtype(dtype, dt.complexfloating):
        x = x.real
    with np.errstate(all="ignore"):
        if dtype == dt.bool_:
            return x != 0
        if dt.is_integer(dtype) and x.dtype.kind == "f" or x.dtype in _HALF and dt.is_integer(dtype):
            # float -> int truncates toward zero; NaN/Inf/out of range are implementation-defined (as in C).
            x = np.trunc(x.astype(np.float64))
            info = np.iinfo(dtype.np)
            x = np.where(np.isfinite(x), np.clip(x, info.min, info.max), 0)
        return x.astype(dtype.np)


# As MLX, a cast passes derivatives straight through (cast to the other side's dtype), even to and from
# integers: `x.astype(int32).astype(float32)` has gradient 1 (it truncates the cotangent on the way).
def _astype_vjp(ct, out, inputs, params):
    return (_o().astype(ct, inputs[0].dtype),)


def _astype_jvp(tangents, out, inputs, params):
    return _o().astype(tangents[0], out.dtype)


register(Primitive(
    name="astype", kind=UNARY, impl=_astype_impl,
    shape_rule=lambda x, dtype: (tuple(x.shape), dtype),
    vjp=_astype_vjp, jvp=_astype_jvp, vmap=elementwise_vmap("astype"),
    c_expr="kiln_cast<{dtype}>({0})",
))

# fill: an array shaped like its input, every element `value` (zeros_like/ones_like at any shape).
register(Primitive(
    name="fill", kind=UNARY,
    impl=lambda x, value, dtype: np.full(x.shape, value, dtype=dtype.np),
    shape_rule=lambda x, value, dtype: (tuple(x.shape), dtype),
    vjp=lambda ct, out, inputs, params: (None,),
    jvp=lambda tangents, out, inputs, params: _o().zeros_like(out),
    vmap=elementwise_vmap("fill"), c_expr="{value}", differentiable=False,
))


# -- binary ----------------------------------------------------------------------------------------
def _divide(x, y):
    return np.true_divide(x, y)


def _as_bool_via_uint8(fn):
    """Run an integer rule on bools as 0/1 (numpy has no bool loops for it), as MLX's kernels do."""

    def impl(x, y):
        if x.dtype == np.bool_:
            return fn(x.astype(np.uint8), y.astype(np.uint8)).astype(np.bool_)
        return fn(x, y)

    return impl


def _subtract(x, y):
    # bool - bool is exclusive or (C's `a - b` turned back into a bool)
    return np.not_equal(x, y) if x.dtype == np.bool_ else np.subtract(x, y)


def _logaddexp(x, y):
    if not np.iscomplexobj(x):
        return np.logaddexp(x, y)
    # numpy has none for complex: hi + log1p(exp(lo - hi)), hi the larger in MLX's order (real part, then
    # imaginary). The imaginary part is not wrapped into (-pi, pi], as in MLX.
    x_is_hi = (x.real > y.real) | ((x.real == y.real) & (x.imag >= y.imag))
    hi, lo = np.where(x_is_hi, x, y), np.where(x_is_hi, y, x)
    with np.errstate(all="ignore"):
        out = hi + np.log1p(np.exp(lo - hi))
    out = np.where(np.isneginf(lo.real), hi, out)  # e^lo is 0 (and -inf - -inf would be NaN)
    out = np.where(np.isnan(x) | np.isnan(y), complex(np.nan, np.nan), out)
    return out.astype(x.dtype)


@_as_bool_via_uint8
def _floor_divide(x, y):
    if np.issubdtype(x.dtype, np.integer):
        # integer x // 0 is 0 (MLX's result; C leaves it undefined)
        with np.errstate(all="ignore"):
            return np.floor_divide(x, np.where(y == 0, 1, y)) * (y != 0)
    return np.floor(x / y)


@_as_bool_via_uint8
def _remainder(x, y):
    if np.issubdtype(x.dtype, np.integer):
        # integer x % 0 is x, so that x == (x // y) * y + x % y holds for y == 0 too (MLX's result)
        with np.errstate(all="ignore"):
            return np.where(y == 0, x, np.remainder(x, np.where(y == 0, 1, y)))
    return np.remainder(x, y)


@_as_bool_via_uint8
def _power(x, y):
    if np.issubdtype(x.dtype, np.integer):
        # Integer powers wrap like repeated multiplication. A negative exponent gives 0, whatever the base
        # (even 1 and -1), as in MLX.
        with np.errstate(all="ignore"):
            positive = np.power(x, np.maximum(y, 0))
        return np.where(y >= 0, positive, 0).astype(x.dtype)
    return np.power(x, y)


def _zeros(x, y, out):
    return None, None


def _shift_rule(name):
    return _same_rule(name)


def _safe_shift(fn):
    def impl(x, y):
        bits = x.dtype.itemsize * 8
        ok = (y >= 0) & (y < bits)
        shifted = fn(x, np.where(ok, y, 0).astype(x.dtype))
        fallback = 0 if fn is np.left_shift else np.where(x < 0, -1, 0).astype(x.dtype)
        return np.where(ok, shifted, fallback)

    return impl


binary("add", np.add, lambda x, y, o: (1, 1), "({0} + {1})", half=True)
binary("subtract", _subtract, lambda x, y, o: (1, -1), "({0} - {1})")
binary("multiply", np.multiply, lambda x, y, o: (y, x), "({0} * {1})")
binary("divide", _divide, lambda x, y, o: (_o().reciprocal(y), -o / y), "({0} / {1})")
binary("floor_divide", _floor_divide, _zeros, "kiln_floor_divide({0}, {1})", differentiable=False)
binary("remainder", _remainder, lambda x, y, o: (1, -_o().floor_divide(x, y)), "kiln_remainder({0}, {1})")
binary("power", _power,
       lambda x, y, o: (y * _o().power(x, y - 1), o * _o().log(_o().where(x > 0, x, _o().ones_like(x)))),
       "kiln_power({0}, {1})")
binary("maximum", np.maximum,
       lambda x, y, o: (_o().astype(x >= y, x.dtype), _o().astype(x < y, x.dtype)), "kiln_maximum({0}, {1})")
binary("minimum", np.minimum,
       lambda x, y, o: (_o().astype(x <= y, x.dtype), _o().astype(x > y, x.dtype)), "kiln_minimum({0}, {1})")
binary("arctan2", np.arctan2,
       lambda x, y, o: (y / (x * x + y * y), -x / (x * x + y * y)), "kiln_arctan2({0}, {1})")
binary("logaddexp", _logaddexp,
       lambda x, y, o: (_o().exp(x - o), _o().exp(y - o)), "kiln_logaddexp({0}, {1})")
for _name, _fn, _c in [
    ("equal", np.equal, "({0} == {1})"),
    ("not_equal", np.not_equal, "({0} != {1})"),
    ("less", np.less, "({0} < {1})"),
    ("less_equal", np.less_equal, "({0} <= {1})"),
    ("greater", np.greater, "({0} > {1})"),
    ("greater_equal", np.greater_equal, "({0} >= {1})"),
]:
    binary(_name, _fn, None, _c, rule=_bool_rule(_name), half=False, differentiable=False)
binary("logical_and", np.logical_and, None, "({0} && {1})", rule=_bool_rule("logical_and"), half=False,
       differentiable=False)
binary("logical_or", np.logical_or, None, "({0} || {1})", rule=_bool_rule("logical_or"), half=False,
       differentiable=False)
binary("bitwise_and", np.bitwise_and, None, "({0} & {1})", half=False, differentiable=False)
binary("bitwise_or", np.bitwise_or, None, "({0} | {1})", half=False, differentiable=False)
binary("bitwise_xor", np.bitwise_xor, None, "({0} ^ {1})", half=False, differentiable=False)
binary("left_shift", _safe_shift(np.left_shift), None, "kiln_shl({0}, {1})", half=False, differentiable=False)
binary("right_shift", _safe_shift(np.right_shift), None, "kiln_shr({0}, {1})", half=False,
       differentiable=False)


# -- ternary: select(cond, x, y) ----------------------------------------------------------------
def _select_rule(c, x, y):
    if c.dtype != dt.bool_ or x.dtype != y.dtype:
        raise ValueError("[where] internal: condition must be bool and branches must share a dtype")
    return broadcast_shapes(c.shape, x.shape, y.shape, op="where"), x.dtype


def _select_vjp(ct, out, inputs, params):
    c, x, y = inputs
    ops = _o()
    zero = ops.zeros_like(ct)
    return (None, unbroadcast(ops.where(c, ct, zero), x.shape), unbroadcast(ops.where(c, zero, ct), y.shape))


def _select_jvp(tangents, out, inputs, params):
    c, x, y = inputs
    ops = _o()
    tx = tangents[1] if tangents[1] is not None else ops.zeros_like(x)
    ty = tangents[2] if tangents[2] is not None else ops.zeros_like(y)
    return ops.broadcast_to(ops.where(c, tx, ty), out.shape)


register(Primitive(
    name="select", kind=TERNARY, impl=lambda c, x, y: np.where(c, x, y), shape_rule=_select_rule,
    vjp=_select_vjp, jvp=_select_jvp, vmap=elementwise_vmap("select"), c_expr="({0} ? {1} : {2})",
))
