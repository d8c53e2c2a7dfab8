"""Dense factorisation primitives backed by numpy's LAPACK: inv, solve, cholesky, qr, svd, eigh, eig, lu, det,
slogdet. Each batches over leading axes.

A factorisation with several results is one record with an `output` parameter choosing which result the
node holds (the registry's nodes have one output); numpy is deterministic, so siblings agree.
Failures (singular) raise `ValueError("[linalg::op] ...")` when evaluated; cholesky of a matrix that is not
positive definite returns LAPACK's partial factor, as MLX does.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register
from .elementwise import _HALF


def _ops():
    from .. import ops

    return ops


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


def _checked(op, fn, *args):
    try:
        with np.errstate(all="ignore"):
            return fn(*args)
    except np.linalg.LinAlgError as e:
        raise ValueError(f"[linalg::{op}] {e}.") from None


def _square(op, a):
    if len(a.shape) < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"[linalg::{op}] internal: expected a batch of square matrices, got {tuple(a.shape)}.")


def _mT(x):
    return _ops().swapaxes(x, -1, -2)


def _mm(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = _ops().matmul(out, x)
    return out


def _unsupported(op, what, integer_outputs=()):
    """A vjp/jvp rule that refuses, as MLX does, except for integer outputs (whose derivative is zero)."""
    def rule(first, out, inputs, params):
        if params.get("output") in integer_outputs:
            return (None,) * len(inputs) if what == "vjp" else _ops().zeros_like(out)
        raise ValueError(f"[linalg::{op}] The {what} is not implemented.")

    return rule


def _vmap_front(name):
    """Batch by moving every batched input's axis to the front (the primitives batch over leading axes)."""
    def rule(inputs, bdims, params):
        ops = _ops()
        size = next(x.shape[d] for x, d in zip(inputs, bdims) if d is not None)
        moved = []
        for x, d in zip(inputs, bdims):
            if d is None:
                x = ops.broadcast_to(ops.expand_dims(x, 0), (size,) + tuple(x.shape))
            else:
                x = ops.moveaxis(x, d, 0)
            moved.append(x)
        return _bind(name, *moved, **params), 0

    return rule


# -- inv --------------------------------------------------------------------------------------------
def _inv_rule(a):
    _square("inv", a)
    return tuple(a.shape), a.dtype


def _inv_vjp(ct, out, inputs, params):
    # d(A^-1) = -A^-1 dA A^-1, so the cotangent is -A^-T ct A^-T.
    return (-_mm(_mT(out), ct, _mT(out)),)


def _inv_jvp(tangents, out, inputs, params):
    return -_mm(out, tangents[0], out)


register(Primitive("inv", OTHER, lambda a: _checked("inv", np.linalg.inv, a), _inv_rule, _inv_vjp, _inv_jvp,
                   _vmap_front("inv"), doc="matrix inverse"))


# -- solve -----------------------------------------------------------------------------------------
def _solve_rule(a, b):
    _square("solve", a)
    if len(b.shape) != len(a.shape) or tuple(b.shape[:-2]) != tuple(a.shape[:-2]) or b.shape[-2] != a.shape[-1]:
        raise ValueError(f"[linalg::solve] internal: right-hand side {tuple(b.shape)} does not match {tuple(a.shape)}.")
    return tuple(b.shape), a.dtype


def _solve_vjp(ct, out, inputs, params):
    a, _ = inputs
    gb = _bind("solve", _mT(a), ct)
    return -_mm(gb, _mT(out)), gb


def _solve_jvp(tangents, out, inputs, params):
    a, _ = inputs
    ta, tb = tangents
    rhs = tb if tb is not None else _ops().zeros_like(out)
    if ta is not None:
        rhs = rhs - _mm(ta, out)
    return _bind("solve", a, rhs)


register(Primitive("solve", OTHER, lambda a, b: _checked("solve", np.linalg.solve, a, b), _solve_rule, _solve_vjp,
                   _solve_jvp, _vmap_front("solve"), doc="x with a @ x = b (b is a batch of matrices)"))


# -- cholesky ----------------------------------------------------------------------------------------
def _partial_cholesky(m):
    """The lower triangle LAPACK's right-looking potrf leaves for a matrix that is not positive definite:
    the columns before the failing one factored, and the trailing block (from the failing pivot on, pivot
    unrooted) updated by those columns. MLX returns this (it does not raise)."""
    low = np.tril(m)
    with np.errstate(all="ignore"):
        for j in range(m.shape[-1]):
            pivot = low[j, j]
            if not pivot > 0:
                break
            low[j, j] = np.sqrt(pivot)
            low[j + 1:, j] /= low[j, j]
            column = low[j + 1:, j]
            low[j + 1:, j + 1:] -= np.tril(np.outer(column, column))
    return low


def _cholesky_impl(a, upper):
    # Only the lower triangle is read, as LAPACK's potrf('L') does.
    try:
        low = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:  # some matrix is not positive definite: factor them one by one
        flat = a.reshape((-1,) + a.shape[-2:])
        low = np.stack([_cholesky_or_partial(m) for m in flat]).reshape(a.shape)
    return np.swapaxes(low, -1, -2) if upper else low


def _cholesky_or_partial(m):
    try:
        return np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return _partial_cholesky(m)


def _phi(x):
    """Lower triangle with the diagonal halved."""
    from ..array import array

    n = x.shape[-1]
    weights = np.tril(np.ones((n, n), np.float64)) - 0.5 * np.eye(n)
    return _ops().multiply(x, array._from_numpy(weights.astype(x.dtype.np), x.dtype))


def _cholesky_vjp(ct, out, inputs, params):
    ops = _ops()
    low = _mT(out) if params["upper"] else out
    ct = _mT(ct) if params["upper"] else ct
    low_inv = _bind("inv", low)
    s = _mm(_mT(low_inv), _phi(_mm(_mT(low), ct)), low_inv)
    # The input is treated as symmetric: split the gradient evenly between the two triangles.
    return (ops.multiply(ops.add(s, _mT(s)), 0.5),)


def _cholesky_jvp(tangents, out, inputs, params):
    ops = _ops()
    low = _mT(out) if params["upper"] else out
    t = tangents[0]
    sym = ops.multiply(ops.add(t, _mT(t)), 0.5)
    low_inv = _bind("inv", low)
    dlow = _mm(low, _phi(_mm(low_inv, sym, _mT(low_inv))))
    return _mT(dlow) if params["upper"] else dlow


def _cholesky_rule(a, upper):
    _square("cholesky", a)
    return tuple(a.shape), a.dtype


register(Primitive("cholesky", OTHER, _cholesky_impl, _cholesky_rule, _cholesky_vjp, _cholesky_jvp,
                   _vmap_front("cholesky"), doc="Cholesky factor (lower, or upper with upper=True)"))


# -- qr -----------------------------------------------------------------------------------------------
def _qr_impl(a, output):
    q, r = _checked("qr", np.linalg.qr, a)
    return q if output == 0 else r


def _qr_rule(a, output):
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    batch = tuple(a.shape[:-2])
    return (batch + (m, k) if output == 0 else batch + (k, n)), a.dtype


register(Primitive("qr", OTHER, _qr_impl, _qr_rule, _unsupported("qr", "vjp"), _unsupported("qr", "jvp"),
                   _vmap_front("qr"), doc="reduced QR: output 0 is Q (m, k), 1 is R (k, n)"))


# -- svd -----------------------------------------------------------------------------------------------
def _svd_impl(a, output):
    if output == 1:
        return _checked("svd", np.linalg.svd, a, False, False)
    u, _, vt = _checked("svd", np.linalg.svd, a, True, True)
    return u if output == 0 else vt


def _real(d):
    return dt.float32 if d == dt.complex64 else d


def _svd_rule(a, output):
    m, n = a.shape[-2], a.shape[-1]
    batch = tuple(a.shape[:-2])
    if output == 0:
        return batch + (m, m), a.dtype
    if output == 1:
        return batch + (min(m, n),), _real(a.dtype)
    return batch + (n, n), a.dtype


def _svd_parts(a):
    ops = _ops()
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    u = _bind("svd", a, output=0)
    vt = _bind("svd", a, output=2)
    u = ops.split(u, [k], axis=-1)[0] if k < m else u
    vt = ops.split(vt, [k], axis=-2)[0] if k < n else vt
    return u, vt


def _svd_vjp(ct, out, inputs, params):
    if params["output"] != 1:
        raise ValueError("[linalg::svd] The vjp of the singular vectors is not implemented.")
    ops = _ops()
    u, vt = _svd_parts(ops.stop_gradient(inputs[0]))
    # d s_i = u_i^T dA v_i
    return (_mm(ops.multiply(u, ops.expand_dims(ct, -2)), vt),)


def _svd_jvp(tangents, out, inputs, params):
    if params["output"] != 1:
        raise ValueError("[linalg::svd] The jvp of the singular vectors is not implemented.")
    ops = _ops()
    u, vt = _svd_parts(ops.stop_gradient(inputs[0]))
    return ops.sum(ops.multiply(_mm(_mT(u), tangents[0]), vt), axis=-1)


register(Primitive("svd", OTHER, _svd_impl, _svd_rule, _svd_vjp, _svd_jvp, _vmap_front("svd"),
                   doc="full SVD: output 0 is U (m, m), 1 is S (k,), 2 is Vt (n, n)"))


# -- eigh -----------------------------------------------------------------------------------------------
def _eigh_impl(a, output, uplo):
    w, v = _checked("eigh", np.linalg.eigh, a, uplo)
    return w if output == 0 else v


def _eigh_rule(a, output, uplo):
    _square("eigh", a)
    if output == 0:
        return tuple(a.shape[:-1]), _real(a.dtype)
    return tuple(a.shape), a.dtype


def _eigh_vjp(ct, out, inputs, params):
    if params["output"] != 0:
        raise ValueError("[linalg::eigh] The vjp of the eigenvectors is not implemented.")
    ops = _ops()
    v = _bind("eigh", ops.stop_gradient(inputs[0]), output=1, uplo=params["uplo"])
    # d w_i = v_i^T dA v_i
    return (_mm(ops.multiply(v, ops.expand_dims(ct, -2)), _mT(v)),)


def _eigh_jvp(tangents, out, inputs, params):
    if params["output"] != 0:
        raise ValueError("[linalg::eigh] The jvp of the eigenvectors is not implemented.")
    ops = _ops()
    v = _bind("eigh", ops.stop_gradient(inputs[0]), output=1, uplo=params["uplo"])
    return ops.sum(ops.multiply(v, _mm(tangents[0], v)), axis=-2)


register(Primitive("eigh", OTHER, _eigh_impl, _eigh_rule, _eigh_vjp, _eigh_jvp, _vmap_front("eigh"),
                   doc="symmetric/Hermitian eigen-decomposition: output 0 values (ascending), 1 vectors"))


# -- eig ----------------------------------------------------------------------------------------------------
def _eig_impl(a, output):
    w, v = _checked("eig", np.linalg.eig, a)
    return (w if output == 0 else v).astype(np.complex64)


def _eig_rule(a, output):
    _square("eig", a)
    return (tuple(a.shape[:-1]) if output == 0 else tuple(a.shape)), dt.complex64


register(Primitive("eig", OTHER, _eig_impl, _eig_rule, _unsupported("eig", "vjp"), _unsupported("eig", "jvp"),
                   _vmap_front("eig"),
                   doc="general eigen-decomposition (complex64): output 0 values, 1 vectors"))


# -- lu ------------------------------------------------------------------------------------------------
def lu_packed(a):
    """LU with partial pivoting, as LAPACK's getrf: (packed L\\U, 0-based row-swap pivots)."""
    lu = np.array(a, dtype=a.dtype, copy=True)
    m, n = lu.shape[-2], lu.shape[-1]
    k = min(m, n)
    pivots = np.zeros(lu.shape[:-2] + (k,), np.uint32)
    for j in range(k):
        p = np.argmax(np.abs(lu[..., j:, j]), axis=-1) + j
        pivots[..., j] = p
        _swap_rows(lu, j, p)
        pivot = lu[..., j:j + 1, j:j + 1]
        safe = np.where(pivot == 0, 1, pivot)
        below = lu[..., j + 1:, j:j + 1] / safe
        lu[..., j + 1:, j:j + 1] = below
        lu[..., j + 1:, j + 1:] -= below * lu[..., j:j + 1, j + 1:]
    return lu, pivots


def _swap_rows(x, j, p):
    idx = np.broadcast_to(np.arange(x.shape[-2]), x.shape[:-2] + (x.shape[-2],)).copy()
    p = np.asarray(p)
    idx[..., j] = p
    np.put_along_axis(idx, p[..., None], j, axis=-1)
    x[...] = np.take_along_axis(x, idx[..., None], axis=-2)


def _row_permutation(pivots, m):
    """p with a[i] == (L @ U)[p[i]]: replay the swaps on 0..m-1, then invert the resulting row order."""
    order = np.broadcast_to(np.arange(m), pivots.shape[:-1] + (m,)).copy()
    for j in range(pivots.shape[-1]):
        _swap_rows(order[..., None], j, pivots[..., j].astype(np.intp))
    return np.argsort(order, axis=-1).astype(np.uint32)


def _lu_impl(a, output):
    lu, pivots = lu_packed(a)
    if output == 0:
        return lu
    if output == 1:
        return pivots
    return _row_permutation(pivots, a.shape[-2])


def _lu_rule(a, output):
    m, n = a.shape[-2], a.shape[-1]
    if output == 0:
        return tuple(a.shape), a.dtype
    if output == 1:
        return tuple(a.shape[:-2]) + (min(m, n),), dt.uint32
    return tuple(a.shape[:-2]) + (m,), dt.uint32


register(Primitive("lu_factor", OTHER, _lu_impl, _lu_rule, _unsupported("lu_factor", "vjp", (1, 2)),
                   _unsupported("lu_factor", "jvp", (1, 2)), _vmap_front("lu_factor"),
                   doc="LU with partial pivoting: output 0 packed L\\U, 1 row-swap pivots, 2 row permutation (uint32)"))


# -- det / slogdet ----------------------------------------------------------------------------------------
def _widened(fn):
    def impl(a, **params):
        x = a.astype(np.float32) if a.dtype in _HALF else a
        return np.asarray(fn(x, **params)).astype(a.dtype)

    return impl


def _det_rule(a):
    _square("det", a)
    return tuple(a.shape[:-2]), a.dtype


def _det_vjp(ct, out, inputs, params):
    ops = _ops()
    a = inputs[0]
    # d det = det * tr(A^-1 dA)
    scale = ops.expand_dims(ops.multiply(ct, out), (-2, -1))
    return (ops.multiply(scale, _mT(_bind("inv", a))),)


def _det_jvp(tangents, out, inputs, params):
    ops = _ops()
    a = inputs[0]
    inner = ops.sum(ops.multiply(_mT(_bind("inv", a)), tangents[0]), axis=(-2, -1))
    return ops.multiply(out, inner)


register(Primitive("det", OTHER, _widened(np.linalg.det), _det_rule, _det_vjp, _det_jvp, _vmap_front("det"),
                   doc="determinant"))


def _slogdet_impl(a, output):
    sign, logabs = np.linalg.slogdet(a.astype(np.float32) if a.dtype in _HALF else a)
    return np.asarray(sign if output == 0 else logabs).astype(a.dtype)


def _slogdet_rule(a, output):
    _square("slogdet", a)
    return tuple(a.shape[:-2]), a.dtype


def _slogdet_vjp(ct, out, inputs, params):
    ops = _ops()
    if params["output"] == 0:
        return (None,)
    return (ops.multiply(ops.expand_dims(ct, (-2, -1)), _mT(_bind("inv", inputs[0]))),)


def _slogdet_jvp(tangents, out, inputs, params):
    ops = _ops()
    if params["output"] == 0:
        return ops.zeros_like(out)
    return ops.sum(ops.multiply(_mT(_bind("inv", inputs[0])), tangents[0]), axis=(-2, -1))


register(Primitive("slogdet", OTHER, _slogdet_impl, _slogdet_rule, _slogdet_vjp, _slogdet_jvp,
                   _vmap_front("slogdet"), doc="output 0 the determinant's sign, 1 log|det|"))
