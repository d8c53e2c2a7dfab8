"""The `mx.linalg` namespace: norms, inverses, solves and factorisations, with MLX's names, dtypes and errors.

Factorisations are numpy-backed primitives (`prims/lapack.py`); everything else composes them with the
public ops, so gradients come from the pieces.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array, bind
from .prims import lapack  # noqa: F401  (registers the factorisation primitives)

__all__ = [
    "cholesky",
    "cholesky_inv",
    "cross",
    "det",
    "eig",
    "eigh",
    "eigvals",
    "eigvalsh",
    "inv",
    "lu",
    "lu_factor",
    "norm",
    "pinv",
    "qr",
    "slogdet",
    "solve",
    "solve_triangular",
    "svd",
    "tri_inv",
]


# -- argument checks ---------------------------------------------------------------------------------
def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _name(d) -> str:
    return str(d).split(".")[-1]


def _real_float(op: str, a) -> array:
    a = ops.to_array(a)
    if a.dtype not in (dt.float32, dt.float64):
        raise ValueError(f"[linalg::{op}] Arrays must have type float32 or float64. Received array with type "
                         f"{_name(a.dtype)}.")
    return a


def _float_or_complex(op: str, a) -> array:
    a = ops.to_array(a)
    if a.dtype not in (dt.float32, dt.float64, dt.complex64):
        raise ValueError(f"[linalg::{op}] Arrays must have type float32, float64 or complex64. Received array "
                         f"with type {_name(a.dtype)}.")
    return a


def _matrix(op: str, a, square: str | None = None) -> array:
    if a.ndim < 2:
        raise ValueError(f"[linalg::{op}] Arrays must have >= 2 dimensions. Received array with {a.ndim} "
                         "dimensions.")
    if square is not None and a.shape[-1] != a.shape[-2]:
        raise ValueError(f"[linalg::{op}] {square}")
    return a


# -- norm --------------------------------------------------------------------------------------------
def _norm_axes(a, axis) -> tuple:
    seq = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for ax in seq:
        ax = int(ax)
        if not -a.ndim <= ax < a.ndim:
            raise IndexError(f"[linalg::norm] Invalid axis {ax} for array with {a.ndim} dimensions.")
        out.append(ax % a.ndim)
    if len(set(out)) != len(out):
        raise ValueError("[linalg::norm] Duplicate axes detected in reduction.")
    return tuple(out)


def _vector_norm(x, ord, axes, keepdims):
    mag = ops.abs(x)
    if ord is None or ord == 2:
        return ops.sqrt(ops.sum(ops.square(mag), axes, keepdims))
    if ord == math.inf:
        return ops.max(mag, axes, keepdims)
    if ord == -math.inf:
        return ops.min(mag, axes, keepdims)
    if ord == 0:
        return ops.astype(ops.sum(ops.not_equal(mag, 0), axes, keepdims), x.dtype)
    if ord == 1:
        return ops.sum(mag, axes, keepdims)
    return ops.power(ops.sum(ops.power(mag, float(ord)), axes, keepdims), 1.0 / float(ord))


def _singular_values(x, axes):
    """Singular values of the matrices spanned by `axes`, those axes removed."""
    r, c = axes
    rest = [d for d in range(x.ndim) if d not in axes]
    return bind("svd", ops.transpose(x, rest + [r, c]), output=1)


def _matrix_norm(x, ord, axes, keepdims):
    r, c = axes
    mag = ops.abs(x)
    if ord == "fro":
        out = ops.sqrt(ops.sum(ops.square(mag), axes))
    elif ord == "nuc":
        out = ops.sum(_singular_values(x, axes), -1)
    elif isinstance(ord, str):
        raise ValueError(f"[linalg::norm] Invalid ord value '{ord}' for matrix norm.")
    elif ord in (1, -1, math.inf, -math.inf):
        # 1: largest column sum (sum over rows first); inf: largest row sum.
        first, second = (r, c) if ord in (1, -1) else (c, r)
        pick = ops.max if ord > 0 else ops.min
        sums = ops.sum(mag, first, keepdims=True)
        out = ops.squeeze(pick(sums, second, keepdims=True), axes)
    elif ord in (2, -2):
        pick = ops.max if ord > 0 else ops.min
        out = pick(_singular_values(x, axes), -1)
    else:
        raise ValueError(f"[linalg::norm] Invalid ord {ord} for matrix norm.")
    return ops.expand_dims(out, sorted(axes)) if keepdims else out


def norm(a, /, ord=None, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Matrix or vector norm.

    ``ord`` may be ``None`` (2-norm of the flattened input, or Frobenius for matrices), ``'fro'`` and ``'nuc'``
    (matrices), ``inf``, ``-inf``, ``0`` and any other number (vectors), or ``1``, ``-1``, ``2``, ``-2``,
    ``inf``, ``-inf`` (matrices).

    Args:
        a (array): Input array. With ``axis=None`` it must be 1-D or 2-D unless ``ord`` is ``None``.
        ord (int, float or str, optional): Order of the norm. Default: ``None``.
        axis (int or list(int), optional): One axis (vector norm) or two (matrix norm). Default: ``None``.
        keepdims (bool, optional): Keep the reduced axes as size one. Default: ``False``.

    Returns:
        array: The norm, floating point (``float32`` for integer and complex64 inputs).
    """
    x = ops.to_array(a)
    if x.dtype == dt.complex64:
        # Only magnitudes matter; take them once, in float32.
        x = ops.astype(ops.abs(x), dt.float32)
    elif not dt.is_floating(x.dtype):
        x = ops.astype(x, dt.float32)
    if axis is None and ord is None:
        axes = tuple(range(x.ndim))
        return _vector_norm(ops.reshape(x, (-1,)) if not keepdims else x, None,
                            (0,) if not keepdims else axes, keepdims)
    axes = tuple(range(x.ndim)) if axis is None else _norm_axes(x, axis)
    if isinstance(ord, str) and len(axes) != 2:
        raise ValueError(f"[linalg::norm] Norm '{ord}' only supported for matrices, but received {len(axes)} "
                         "axis/axes.")
    if len(axes) == 1 or (len(axes) == 0 and ord is None):
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2:
        if ord is None:
            return _vector_norm(x, None, axes, keepdims)
        return _matrix_norm(x, ord, axes, keepdims)
    raise ValueError("[linalg::norm] Received too many axes for norm.")


# -- inverses and solves -----------------------------------------------------------------------------------
def inv(a, *, stream=None) -> array:
    """Compute the inverse of a square matrix (batched over leading axes).

    Args:
        a (array): Input array, float32 or float64, at least 2-D, with square last two axes.

    Returns:
        array: ``ainv`` such that ``a @ ainv`` is the identity. Raises when a matrix is singular.
    """
    a = _matrix("inv", _real_float("inv", a), "Inverses are only defined for square matrices.")
    return bind("inv", a)


def _triangle(a, upper: bool) -> array:
    return ops.triu(a) if upper else ops.tril(a)


def tri_inv(a, upper: bool = False, *, stream=None) -> array:
    """Compute the inverse of a triangular square matrix; only the chosen triangle of ``a`` is read.

    Args:
        a (array): Input array, float32 or float64, at least 2-D.
        upper (bool, optional): Whether ``a`` is upper (else lower) triangular. Default: ``False``.

    Returns:
        array: The (triangular) inverse.
    """
    a = _matrix("inv", _real_float("inv", a), "Inverses are only defined for square matrices.")
    # Re-masking keeps the unused triangle exactly zero whatever rounding the general inverse leaves.
    return _triangle(bind("inv", _triangle(a, upper)), upper)


def _solve_operands(op: str, a, b):
    x, y = ops._promote(f"linalg::{op}", a, b)
    if x.dtype not in (dt.float32, dt.float64):
        raise ValueError(f"[linalg::{op}] Input arrays must promote to float32 or float64.  Received arrays with "
                         f"type {_name(ops.to_array(a).dtype)} and {_name(ops.to_array(b).dtype)}.")
    _matrix(op, x, "Inverses are only defined for square matrices." if op != "solve"
            else "First input must be a square matrix.")
    n = x.shape[-1]
    vector = y.ndim == 1
    if y.ndim == 0 or (y.shape[-1] != n if vector else y.shape[-2] != n):
        raise ValueError(f"[linalg::{op}] Last dimension of first input with shape {_shape_text(x.shape)} "
                         f"must match second to last dimension of second input with shape "
                         f"{_shape_text(y.shape)}.")
    return x, y, vector


def _batched_rhs(x, y, vector):
    """Broadcast a and b's batch axes together; a 1-D b becomes one column."""
    if vector:
        y = ops.expand_dims(y, -1)
    batch = ops.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    x = ops.broadcast_to(x, batch + x.shape[-2:])
    y = ops.broadcast_to(y, batch + y.shape[-2:])
    return x, y


def solve(a, b, *, stream=None) -> array:
    """Compute the solution to a system of linear equations ``a @ x = b``.

    Args:
        a (array): Square matrix (or batch), float32 or float64.
        b (array): Right-hand side: a vector or a matrix (or batch) with ``a.shape[-1]`` rows.

    Returns:
        array: The solution ``x``, shaped like ``b`` (batch axes broadcast). Raises when ``a`` is singular.
    """
    x, y, vector = _solve_operands("solve", a, b)
    x, y = _batched_rhs(x, y, vector)
    out = bind("solve", x, y)
    return ops.squeeze(out, -1) if vector else out


def solve_triangular(a, b, *, upper: bool = False, stream=None) -> array:
    """Compute the solution to ``a @ x = b`` where ``a`` is triangular (only that triangle is read).

    Args:
        a (array): Triangular square matrix (or batch), float32 or float64.
        b (array): Right-hand side, a vector or a matrix (or batch).
        upper (bool, optional): Whether ``a`` is upper (else lower) triangular. Default: ``False``.

    Returns:
        array: The solution ``x``.
    """
    x, y, vector = _solve_operands("solve_triangular", a, b)
    x, y = _batched_rhs(x, y, vector)
    out = bind("solve", _triangle(x, upper), y)
    return ops.squeeze(out, -1) if vector else out


# -- factorisations ---------------------------------------------------------------------------------------
def cholesky(a, upper: bool = False, *, stream=None) -> array:
    """Compute the Cholesky decomposition of a real symmetric positive definite matrix.

    Only the lower triangle of ``a`` is read. A matrix that is not positive definite gives, as in MLX,
    LAPACK's partial factor (the failing pivot left unrooted, later columns untouched) instead of an error.

    Args:
        a (array): Input array, float32 or float64, at least 2-D, square.
        upper (bool, optional): Return the upper factor ``U`` (``a = U^T U``) instead of the lower
            ``L`` (``a = L L^T``). Default: ``False``.

    Returns:
        array: The triangular factor.
    """
    a = _matrix("cholesky", _real_float("cholesky", a),
                "Cholesky decomposition is only defined for square matrices.")
    return bind("cholesky", a, upper=bool(upper))


def cholesky_inv(a, upper: bool = False, *, stream=None) -> array:
    """Compute the inverse of a matrix from its Cholesky factor.

    Args:
        a (array): The Cholesky factor (lower, or upper with ``upper=True``), float32 or float64.
        upper (bool, optional): Whether ``a`` is the upper factor. Default: ``False``.

    Returns:
        array: The inverse of ``L @ L.T`` (or ``U.T @ U``).
    """
    a = _matrix("cholesky_inv", _real_float("cholesky_inv", a), "Inverses are only defined for square matrices.")
    factor_inv = tri_inv(a, upper)
    if upper:
        return ops.matmul(factor_inv, ops.swapaxes(factor_inv, -1, -2))
    return ops.matmul(ops.swapaxes(factor_inv, -1, -2), factor_inv)


def qr(a, *, stream=None) -> tuple:
    """The reduced QR factorisation of a matrix (batched over leading axes).

    Args:
        a (array): Input array, float32 or float64, at least 2-D.

    Returns:
        tuple(array, array): ``Q`` with orthonormal columns, shape ``(..., M, K)``, and upper triangular ``R``,
        shape ``(..., K, N)``, where ``K = min(M, N)``.
    """
    a = _matrix("qr", _real_float("qr", a))
    return bind("qr", a, output=0), bind("qr", a, output=1)


def svd(a, compute_uv: bool = True, *, stream=None):
    """The singular value decomposition ``a = U @ diag(S) @ Vt`` (full matrices).

    Args:
        a (array): Input array, float32, float64 or complex64, at least 2-D.
        compute_uv (bool, optional): Return ``U`` and ``Vt`` too. Default: ``True``.

    Returns:
        tuple(array, array, array) or array: ``U`` (M, M), ``S`` (K,) descending, ``Vt`` (N, N); or ``S`` alone
        when ``compute_uv`` is ``False``.
    """
    a = _matrix("svd", _float_or_complex("svd", a))
    s = bind("svd", a, output=1)
    if not compute_uv:
        return s
    return bind("svd", a, output=0), s, bind("svd", a, output=2)


def pinv(a, *, stream=None) -> array:
    """Compute the (Moore-Penrose) pseudo-inverse of a matrix from its SVD.

    Singular values below ``max(M, N) * eps * max(S)`` count as zero.

    Args:
        a (array): Input array, float32 or float64, at least 2-D.

    Returns:
        array: The pseudo-inverse, shape ``(..., N, M)``.
    """
    a = _matrix("pinv", _real_float("pinv", a))
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    u, s, vt = svd(a)
    if k == 0:
        return ops.zeros(a.shape[:-2] + (n, m), a.dtype)
    u = ops.split(u, [k], axis=-1)[0] if k < m else u
    vt = ops.split(vt, [k], axis=-2)[0] if k < n else vt
    cutoff = ops.multiply(ops.max(s, -1, keepdims=True), float(max(m, n) * np.finfo(a.dtype.np).eps))
    keep = ops.greater(s, cutoff)
    s_inv = ops.where(keep, ops.divide(1.0, ops.where(keep, s, ops.ones_like(s))), ops.zeros_like(s))
    scaled = ops.multiply(ops.swapaxes(vt, -1, -2), ops.expand_dims(s_inv, -2))
    return ops.matmul(scaled, ops.swapaxes(u, -1, -2))


def _uplo(op: str, UPLO) -> str:
    if UPLO not in ("L", "U"):
        raise ValueError(f"[linalg::{op}] UPLO must be 'L' or 'U', got {UPLO!r}.")
    return UPLO


def eigh(a, UPLO: str = "L", *, stream=None) -> tuple:
    """The eigenvalues and eigenvectors of a real symmetric or complex Hermitian matrix.

    Args:
        a (array): Input array, float32, float64 or complex64, at least 2-D, square.
        UPLO (str, optional): Read the lower (``"L"``) or upper (``"U"``) triangle. Default: ``"L"``.

    Returns:
        tuple(array, array): The eigenvalues in ascending order (real) and the eigenvectors as columns.
    """
    a = _matrix("eigh", _float_or_complex("eigh", a), "Only defined for square matrices.")
    uplo = _uplo("eigh", UPLO)
    return bind("eigh", a, output=0, uplo=uplo), bind("eigh", a, output=1, uplo=uplo)


def eigvalsh(a, UPLO: str = "L", *, stream=None) -> array:
    """The eigenvalues of a real symmetric or complex Hermitian matrix, in ascending order.

    Args:
        a (array): Input array, float32, float64 or complex64, at least 2-D, square.
        UPLO (str, optional): Read the lower (``"L"``) or upper (``"U"``) triangle. Default: ``"L"``.

    Returns:
        array: The eigenvalues (real).
    """
    a = _matrix("eigvalsh", _float_or_complex("eigvalsh", a), "Only defined for square matrices.")
    return bind("eigh", a, output=0, uplo=_uplo("eigvalsh", UPLO))


def eig(a, *, stream=None) -> tuple:
    """The eigenvalues and (right) eigenvectors of a general square matrix.

    Args:
        a (array): Input array, float32, float64 or complex64, at least 2-D, square.

    Returns:
        tuple(array, array): complex64 eigenvalues and eigenvectors (as columns).
    """
    a = _matrix("eig", _float_or_complex("eig", a), "Only defined for square matrices.")
    return bind("eig", a, output=0), bind("eig", a, output=1)


def eigvals(a, *, stream=None) -> array:
    """The eigenvalues of a general square matrix.

    Args:
        a (array): Input array, float32, float64 or complex64, at least 2-D, square.

    Returns:
        array: complex64 eigenvalues.
    """
    a = _matrix("eigvals", _float_or_complex("eigvals", a), "Only defined for square matrices.")
    return bind("eig", a, output=0)


def _det_input(op: str, a) -> array:
    a = ops.to_array(a)
    if a.dtype == dt.complex64:
        raise ValueError(f"[linalg::{op}] Complex inputs are not supported.")
    if not dt.is_floating(a.dtype):
        a = ops.astype(a, dt.float32)
    return _matrix(op, a, "Arrays must be square.")


def det(a, *, stream=None) -> array:
    """Compute the determinant of a square matrix (batched over leading axes).

    Args:
        a (array): Input array, at least 2-D, square. Integers are computed in float32.

    Returns:
        array: The determinant.
    """
    return bind("det", _det_input("det", a))


def slogdet(a, *, stream=None) -> tuple:
    """Compute the sign and natural log of the absolute value of the determinant.

    Args:
        a (array): Input array, at least 2-D, square. Integers are computed in float32.

    Returns:
        tuple(array, array): The sign and ``log(abs(det(a)))``.
    """
    a = _det_input("slogdet", a)
    return bind("slogdet", a, output=0), bind("slogdet", a, output=1)


def lu_factor(a, *, stream=None) -> tuple:
    """Compute the LU factorisation with partial pivoting, packed as LAPACK's ``getrf`` does.

    Args:
        a (array): Input array, float32 or float64, at least 2-D.

    Returns:
        tuple(array, array): ``L`` (unit diagonal, below it) and ``U`` packed in one matrix, and the uint32 pivots:
        row ``i`` was swapped with row ``pivots[i]``, in order.
    """
    a = _matrix("lu_factor", _real_float("lu_factor", a))
    return bind("lu_factor", a, output=0), bind("lu_factor", a, output=1)


def lu(a, *, stream=None) -> tuple:
    """Compute the LU factorisation with partial pivoting.

    Args:
        a (array): Input array, float32 or float64, at least 2-D.

    Returns:
        tuple(array, array, array): the uint32 row permutation ``p``, unit lower triangular ``L`` (M, K) and upper
        triangular ``U`` (K, N) such that ``(L @ U)[..., p, :] == a``.
    """
    a = _matrix("lu", _real_float("lu", a))
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    packed = bind("lu_factor", a, output=0)
    lower = ops.tril(packed, -1)
    lower = ops.split(lower, [k], axis=-1)[0] if k < n else lower
    lower = ops.add(lower, ops.eye(m, k, dtype=a.dtype))
    upper = ops.triu(packed)
    upper = ops.split(upper, [k], axis=-2)[0] if k < m else upper
    return bind("lu_factor", a, output=2), lower, upper


def cross(a, b, axis: int = -1, *, stream=None) -> array:
    """Compute the cross product of two arrays along an axis of size 2 or 3 (size 2 counts as z = 0).

    Args:
        a (array): Input array.
        b (array): Input array.
        axis (int, optional): Axis holding the vectors. Default: ``-1``.

    Returns:
        array: The cross product (the axis has size 3).
    """
    x, y = ops._promote("linalg::cross", a, b)
    for v in (x, y):
        if v.ndim == 0:
            raise ValueError("[linalg::cross] The specified axis must have size 2 or 3.")
    ax_x = ops._axis("linalg::cross", x.ndim, axis)
    ax_y = ops._axis("linalg::cross", y.ndim, axis)
    if x.shape[ax_x] not in (2, 3) or y.shape[ax_y] not in (2, 3):
        raise ValueError("[linalg::cross] The specified axis must have size 2 or 3.")
    x, y = ops.moveaxis(x, ax_x, -1), ops.moveaxis(y, ax_y, -1)
    x1, x2, x3 = _components(x)
    y1, y2, y3 = _components(y)
    parts = [ops.subtract(ops.multiply(x2, y3), ops.multiply(x3, y2)),
             ops.subtract(ops.multiply(x3, y1), ops.multiply(x1, y3)),
             ops.subtract(ops.multiply(x1, y2), ops.multiply(x2, y1))]
    out = ops.stack(list(ops.broadcast_arrays(*parts)), axis=-1)
    return ops.moveaxis(out, -1, axis if axis >= 0 else out.ndim + axis)


def _components(v):
    pieces = ops.split(v, v.shape[-1], axis=-1)
    pieces = [ops.squeeze(p, -1) for p in pieces]
    if len(pieces) == 2:
        pieces.append(ops.zeros_like(pieces[0]))
    return pieces

