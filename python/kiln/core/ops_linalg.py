"""Public linear-algebra ops built from existing primitives: addmm, outer, inner, tensordot, einsum,
einsum_path, diagonal, diag, trace, kron.

Everything here composes transpose/reshape/matmul/sum/multiply/slice, so autodiff, vmap and compile get
these ops for free and no new primitive is needed.
"""

from __future__ import annotations

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array

__all__ = ["addmm", "diag", "diagonal", "einsum", "einsum_path", "inner", "kron", "outer", "tensordot", "trace"]


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


# -- addmm / outer / inner --------------------------------------------------------------------------
def addmm(c, a, b, /, alpha: float = 1.0, beta: float = 1.0, *, stream=None) -> array:
    """Matrix multiplication with addition and optional scaling: ``alpha * (a @ b) + beta * c``.

    Args:
        c (array): Input array or scalar, broadcast to the product's shape.
        a (array): Input array or scalar.
        b (array): Input array or scalar.
        alpha (float, optional): Scaling factor for the ``a @ b`` product. Default: ``1``.
        beta (float, optional): Scaling factor for ``c``. Default: ``1``.

    Returns:
        array: ``alpha * (a @ b) + beta * c``.
    """
    cc, aa, bb = ops._promote("addmm", c, a, b)
    if not dt.is_floating(cc.dtype):
        names = ", ".join(str(x.dtype).split(".")[-1] for x in (ops.to_array(c), ops.to_array(a), ops.to_array(b)))
        raise ValueError(f"[addmm] Only real floating point types are supported but {names} were provided "
                         f"which results in {str(cc.dtype).split('.')[-1]}, which is not a real floating point type.")
    prod = ops.matmul(aa, bb)
    ops.broadcast_shapes(cc.shape, prod.shape)
    if alpha != 1.0:
        prod = ops.multiply(prod, float(alpha))
    if beta != 1.0:
        cc = ops.multiply(cc, float(beta))
    return ops.add(prod, cc)


def outer(a, b, /, *, stream=None) -> array:
    """Compute the outer product of two 1-D arrays; other inputs are flattened first.

    Args:
        a (array): Input array.
        b (array): Input array.

    Returns:
        array: The outer product, of shape ``(a.size, b.size)``.
    """
    x, y = ops._promote("outer", a, b)
    return ops.multiply(ops.reshape(x, (-1, 1)), ops.reshape(y, (1, -1)))


def inner(a, b, /, *, stream=None) -> array:
    """Ordinary inner product of vectors for 1-D arrays, in higher dimensions a sum product over the last axes.

    Args:
        a (array): Input array.
        b (array): Input array.

    Returns:
        array: The inner product, of shape ``a.shape[:-1] + b.shape[:-1]``.
    """
    x, y = ops._promote("inner", a, b)
    if x.ndim == 0 or y.ndim == 0:
        return ops.multiply(x, y)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError("[inner] a and b must have the same last dimension.")
    return tensordot(x, y, [[-1], [-1]])


# -- tensordot ------------------------------------------------------------------------------------------
def _normalise_axes(op, nd, axes) -> list:
    out = []
    for ax in axes:
        ax = int(ax)
        if not -nd <= ax < nd:
            raise ValueError(f"[{op}] Invalid axis {ax} for array with {nd} dimensions.")
        out.append(ax % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"[{op}] Received duplicate axes {tuple(axes)}.")
    return out


def _tensordot_axes(x, y, axes):
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        n = int(axes)
        if n < 0:
            raise ValueError("[tensordot] axis must be greater or equal to 0.")
        if n > x.ndim or n > y.ndim:
            raise ValueError(f"[tensordot] Cannot contract {n} axes of arrays with {x.ndim} and {y.ndim} dimensions.")
        return list(range(x.ndim - n, x.ndim)), list(range(n))
    try:
        ax_a, ax_b = axes
    except (TypeError, ValueError):
        raise TypeError("[tensordot] axes must be an int or a pair of axis lists.") from None
    ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
    ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    if len(ax_a) != len(ax_b):
        raise ValueError("[tensordot] axes must have the same length for a and b.")
    return _normalise_axes("tensordot", x.ndim, ax_a), _normalise_axes("tensordot", y.ndim, ax_b)


def tensordot(a, b, /, axes=2, *, stream=None) -> array:
    """Compute the tensor dot product along the specified axes.

    Args:
        a (array): Input array.
        b (array): Input array.
        axes (int or list(list(int)), optional): The number of last axes of ``a`` and first axes of ``b`` to
            contract, or the two lists of axes to contract. Default: ``2``.

    Returns:
        array: The tensor dot product.
    """
    x, y = ops._promote("tensordot", a, b)
    ax_a, ax_b = _tensordot_axes(x, y, axes)
    if [x.shape[i] for i in ax_a] != [y.shape[i] for i in ax_b]:
        raise ValueError("[tensordot] a and b must have the same shape on the contracted axes.")
    free_a = [i for i in range(x.ndim) if i not in ax_a]
    free_b = [i for i in range(y.ndim) if i not in ax_b]
    k = _prod(x.shape[i] for i in ax_a)
    xa = ops.reshape(ops.transpose(x, free_a + ax_a), (_prod(x.shape[i] for i in free_a), k))
    yb = ops.reshape(ops.transpose(y, ax_b + free_b), (k, _prod(y.shape[i] for i in free_b)))
    out_shape = tuple(x.shape[i] for i in free_a) + tuple(y.shape[i] for i in free_b)
    return ops.reshape(ops.matmul(xa, yb), out_shape)


# -- diagonal / diag / trace --------------------------------------------------------------------------
def diagonal(a, offset: int = 0, axis1: int = 0, axis2: int = 1, stream=None) -> array:
    """Return specified diagonals.

    The two axes are removed and the diagonal is appended as the last axis of the result.

    Args:
        a (array): Input array with at least two dimensions.
        offset (int, optional): Offset of the diagonal from the main diagonal (positive: above).
            Default: ``0``.
        axis1 (int, optional): The first axis of the 2-D sub-arrays. Default: ``0``.
        axis2 (int, optional): The second axis of the 2-D sub-arrays. Default: ``1``.

    Returns:
        array: The diagonals.
    """
    return _diagonal("diagonal", ops.to_array(a), offset, axis1, axis2)


def _diagonal(op, x, offset, axis1, axis2):
    if x.ndim < 2:
        raise ValueError(f"[{op}] Array must have at least two dimensions, but got {x.ndim} dimensions.")
    i = ops._axis(op, x.ndim, axis1)
    j = ops._axis(op, x.ndim, axis2)
    if i == j:
        raise ValueError(f"[{op}] axis1 and axis2 cannot be the same axis")
    rest = [d for d in range(x.ndim) if d not in (i, j)]
    x = ops.transpose(x, rest + [i, j])
    n, m = x.shape[-2], x.shape[-1]
    offset = int(offset)
    length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    batch = x.shape[:-2]
    # In the row-major flattening of an (n, m) matrix, diagonal elements are m + 1 apart.
    start = offset if offset >= 0 else -offset * m
    if length == 0:
        return ops.zeros(batch + (0,), x.dtype)
    flat = ops.reshape(x, batch + (n * m,))
    nb = len(batch)
    stop = start + (length - 1) * (m + 1) + 1
    return ops._slice(flat, (0,) * nb + (start,), batch + (stop,), (1,) * nb + (m + 1,))


def diag(a, /, k: int = 0, *, stream=None) -> array:
    """Extract a diagonal or construct a diagonal matrix.

    Args:
        a (array): 1-D input (builds a 2-D matrix with ``a`` on its ``k``-th diagonal) or 2-D input (returns
            its ``k``-th diagonal).
        k (int, optional): The diagonal to use; positive is above the main diagonal. Default: ``0``.

    Returns:
        array: The extracted diagonal or the constructed matrix.
    """
    x = ops.to_array(a)
    k = int(k)
    if x.ndim == 2:
        return _diagonal("diag", x, k, 0, 1)
    if x.ndim != 1:
        raise ValueError(f"[diag] array must be 1-D or 2-D, got array with {x.ndim} dimensions.")
    n = x.shape[0]
    size = n + abs(k)
    # Value at (r, c) on the k-th diagonal is a[r] when k >= 0 (it varies by row), a[c] otherwise.
    padded = ops.concatenate([x, ops.zeros((abs(k),), x.dtype)]) if k else x
    values = ops.reshape(padded, (size, 1) if k >= 0 else (1, size))
    mask = ops.eye(size, size, k, dtype=dt.bool_)
    return ops.where(mask, values, ops.zeros((), x.dtype))


def trace(a, /, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype=None, *, stream=None) -> array:
    """Return the sum along a specified diagonal in the given array.

    Args:
        a (array): Input array with at least two dimensions.
        offset (int, optional): Offset of the diagonal from the main diagonal. Default: ``0``.
        axis1 (int, optional): The first axis of the 2-D sub-arrays. Default: ``0``.
        axis2 (int, optional): The second axis of the 2-D sub-arrays. Default: ``1``.
        dtype (Dtype, optional): Data type of the result (the sum's default otherwise).

    Returns:
        array: Sum of the diagonal.
    """
    d = _diagonal("trace", ops.to_array(a), offset, axis1, axis2)
    if dtype is not None:
        d = ops.astype(d, dtype)
    return ops.sum(d, axis=-1)


def kron(a, b, *, stream=None) -> array:
    """Compute the Kronecker product of two arrays.

    Args:
        a (array): The first input array.
        b (array): The second input array.

    Returns:
        array: The Kronecker product, each element of ``a`` scaling a block shaped like ``b``.
    """
    x, y = ops._promote("kron", a, b)
    if x.size == 0 or y.size == 0:
        raise ValueError("[kron] Input arrays cannot be empty.")
    nd = max(x.ndim, y.ndim)
    x = ops.reshape(x, (1,) * (nd - x.ndim) + x.shape)
    y = ops.reshape(y, (1,) * (nd - y.ndim) + y.shape)
    out_shape = tuple(dt.check_dim(p * q, "kron") for p, q in zip(x.shape, y.shape))
    # Interleave: x's axes at even positions, y's at odd ones, then merge each pair.
    xe = ops.reshape(x, tuple(v for s in x.shape for v in (s, 1)))
    ye = ops.reshape(y, tuple(v for s in y.shape for v in (1, s)))
    out = ops.multiply(xe, ye)
    return ops.reshape(out, out_shape)


# -- einsum ---------------------------------------------------------------------------------------------
def _parse_subscripts(subscripts: str, operands):
    """Label lists per operand and for the output; ellipsis dimensions get labels ('.', k), k from the right."""
    spec = subscripts.replace(" ", "")
    if "->" in spec:
        lhs, rhs = spec.split("->", 1)
    else:
        lhs, rhs = spec, None
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"[einsum] Number of operands, {len(operands)}, does not match number of input "
                         f"subscripts, {len(terms)}")
    labels = [_term_labels(t, x.ndim, i) for i, (t, x) in enumerate(zip(terms, operands))]
    ell_rank = max((sum(1 for lab in ls if isinstance(lab, tuple)) for ls in labels), default=0)
    if rhs is None:
        counts = {}
        for ls in labels:
            for lab in ls:
                if isinstance(lab, str):
                    counts[lab] = counts.get(lab, 0) + 1
        letters = sorted(lab for lab, c in counts.items() if c == 1)
        out = [(".", k) for k in range(ell_rank - 1, -1, -1)] + letters
    else:
        out = _term_labels(rhs, None, None, ell_rank)
        plain = [lab for lab in out if isinstance(lab, str)]
        if len(set(plain)) != len(plain):
            raise ValueError("[einsum] Repeat indices not allowed in output.")
        known = {lab for ls in labels for lab in ls}
        for lab in plain:
            if lab not in known:
                raise ValueError(f"[einsum] Output subscript {lab} does not appear in the input subscripts.")
    return labels, out


def _term_labels(term: str, ndim, index, ell_rank=None) -> list:
    if term.count("...") > 1 or term.replace("...", "").count(".") > 0:
        raise ValueError(f"[einsum] Invalid subscripts {term!r}: at most one ellipsis is allowed.")
    head, _, tail = term.partition("...")
    for ch in head + tail:
        if not ch.isalpha():
            raise ValueError(f"[einsum] Subscripts must be letters, got {ch!r}.")
    has_ellipsis = "..." in term
    if ndim is None:  # the output: an ellipsis stands for every broadcast dimension
        n_ell = ell_rank if has_ellipsis else 0
    else:
        n_ell = ndim - len(head) - len(tail)
        if n_ell < 0 or (n_ell > 0 and not has_ellipsis):
            raise ValueError(f"[einsum] Invalid number of subscripts {len(head) + len(tail)} for input {index} "
                             f"with {ndim} dimensions.")
    return list(head) + [(".", k) for k in range(n_ell - 1, -1, -1)] + list(tail)


def _take_diagonals(x, labels):
    """Collapse repeated labels of one operand onto their diagonal (e.g. 'ii' -> 'i')."""
    labels = list(labels)
    while True:
        repeat = next(((i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))
                       if labels[i] == labels[j]), None)
        if repeat is None:
            return x, labels
        i, j = repeat
        if x.shape[i] != x.shape[j]:
            raise ValueError(f"[einsum] Repeated subscript {labels[i]} with mismatched sizes {x.shape[i]} and "
                             f"{x.shape[j]}.")
        x = _diagonal("einsum", x, 0, i, j)
        labels = [lab for d, lab in enumerate(labels) if d not in (i, j)] + [labels[i]]


def _sum_labels(x, labels, keep):
    """Sum away the axes whose labels are not in `keep`."""
    drop = tuple(d for d, lab in enumerate(labels) if lab not in keep)
    if not drop:
        return x, labels
    return ops.sum(x, axis=drop), [lab for lab in labels if lab in keep]


def _record_sizes(sizes, x, labels, index):
    for d, lab in enumerate(labels):
        n = x.shape[d]
        have = sizes.get(lab)
        if have is None or have == 1:
            sizes[lab] = n
        elif n != have and n != 1:
            raise ValueError(f"[einsum] Cannot broadcast dimension {d} of input {index} with shape "
                             f"{_shape_text(x.shape)} to size {have}.")


def _contract_pair(x, xl, y, yl, keep):
    """Contract two operands over the labels they share that nothing later needs (one matmul)."""
    shared = [lab for lab in xl if lab in yl]
    batch = [lab for lab in shared if lab in keep]
    contract = [lab for lab in shared if lab not in keep]
    x_only = [lab for lab in xl if lab not in yl]
    y_only = [lab for lab in yl if lab not in xl]
    # Size-1 (broadcast) contracted axes must be expanded to match before they are merged.
    for lab in contract:
        i, j = xl.index(lab), yl.index(lab)
        if x.shape[i] != y.shape[j]:
            n = max(x.shape[i], y.shape[j])
            x = _broadcast_axis(x, i, n)
            y = _broadcast_axis(y, j, n)
    xt = ops.transpose(x, [xl.index(lab) for lab in batch + x_only + contract])
    yt = ops.transpose(y, [yl.index(lab) for lab in batch + contract + y_only])
    nb = len(batch)
    k = _prod(xt.shape[nb + len(x_only):])
    m = _prod(xt.shape[nb:nb + len(x_only)])
    n = _prod(yt.shape[nb + len(contract):])
    xm = ops.reshape(xt, xt.shape[:nb] + (m, k))
    ym = ops.reshape(yt, yt.shape[:nb] + (k, n))
    out = ops.matmul(xm, ym)
    shape = out.shape[:nb] + xt.shape[nb:nb + len(x_only)] + yt.shape[nb + len(contract):]
    return ops.reshape(out, shape), batch + x_only + y_only


def _broadcast_axis(x, axis, n):
    shape = list(x.shape)
    shape[axis] = n
    return ops.broadcast_to(x, tuple(shape))


def einsum(subscripts: str, *operands, stream=None) -> array:
    """Perform the Einstein summation convention on the operands.

    Operands are contracted left to right, each pair with one matrix multiplication.

    Args:
        subscripts (str): The Einstein summation convention equation, e.g. ``"ij,jk->ik"``.
        *operands (array): The input arrays.

    Returns:
        array: The output array.
    """
    if not isinstance(subscripts, str):
        raise TypeError("[einsum] subscripts must be a string.")
    if not operands:
        raise ValueError("[einsum] At least one operand is required.")
    xs = ops._promote("einsum", *operands)
    labels, out_labels = _parse_subscripts(subscripts, xs)
    sizes = {}
    for i, (x, ls) in enumerate(zip(xs, labels)):
        _record_sizes(sizes, x, ls, i)
    items = [_take_diagonals(x, ls) for x, ls in zip(xs, labels)]
    # Sum each operand's private labels first: they shrink the operands before any product.
    reduced = []
    for i, (x, ls) in enumerate(items):
        others = {lab for j, (_, ol) in enumerate(items) if j != i for lab in ol}
        reduced.append(_sum_labels(x, ls, others | set(out_labels)))
    # Contract in the order of numpy's greedy path (as MLX): each step replaces its operands by their product.
    for step in _greedy_path(subscripts, xs):
        picked = [reduced[i] for i in step]
        reduced = [r for i, r in enumerate(reduced) if i not in step]
        needed = {lab for _, ol in reduced for lab in ol} | set(out_labels)
        x, xl = picked[0]
        for k, (y, yl) in enumerate(picked[1:], start=1):
            rest = {lab for _, ol in picked[k + 1:] for lab in ol}
            x, xl = _contract_pair(x, xl, y, yl, needed | rest)
        reduced.append((x, xl))
    x, xl = reduced[0]
    x, xl = _sum_labels(x, xl, set(out_labels))
    x = ops.transpose(x, [xl.index(lab) for lab in out_labels])
    out_shape = tuple(sizes[lab] for lab in out_labels)
    return ops.broadcast_to(x, out_shape)


def einsum_path(subscripts: str, *operands):
    """Compute the contraction order used by :func:`einsum` (numpy's greedy path, as MLX) and a description
    with the naive and optimized scaling and FLOP counts, in MLX's format.

    Args:
        subscripts (str): The Einstein summation convention equation.
        *operands (array): The input arrays.

    Returns:
        tuple(list(tuple(int, int)), str): The contraction path and a description.
    """
    xs = [ops.to_array(x) for x in operands]
    labels, out_labels = _parse_subscripts(subscripts, xs)
    sizes = {}
    for i, (x, ls) in enumerate(zip(xs, labels)):
        _record_sizes(sizes, x, ls, i)
    path = _greedy_path(subscripts, xs)
    every = set().union(*map(set, labels))
    naive = _step_cost(every, len(xs), every - set(out_labels), sizes)
    terms, optimized, scaling = [set(ls) for ls in labels], 0, 0
    for step in path:
        picked = [terms[i] for i in step]
        terms = [t for i, t in enumerate(terms) if i not in step]
        involved = set().union(*picked)
        kept = involved & (set().union(*terms) | set(out_labels))
        optimized += _step_cost(involved, len(step), involved - kept, sizes)
        scaling = max(scaling, len(involved))
        terms.append(kept)
    text = (f"  Complete contraction:  {subscripts.replace(' ', '')}\n"
            f"         Naive scaling:  {len(every)}\n     Optimized scaling:  {scaling}\n"
            f"      Naive FLOP count:  {naive}\n  Optimized FLOP count:  {optimized}\n")
    return path, text


def _greedy_path(subscripts: str, xs) -> list:
    """numpy's greedy contraction path for operands of these shapes (planned on zero-size-in-memory views)."""
    if len(xs) == 1:
        return [(0,)]
    views = [np.broadcast_to(np.zeros((), np.float32), x.shape) for x in xs]
    try:
        return [tuple(step) for step in np.einsum_path(subscripts, *views, optimize="greedy")[0][1:]]
    except ValueError:  # forms numpy refuses but MLX accepts (an ellipsis numpy cannot place): left to right
        return [(0, 1)] * (len(xs) - 1)


def _step_cost(labels: set, n_terms: int, summed: set, sizes: dict) -> int:
    """FLOPs of one contraction as MLX counts them: the iteration space times (terms - 1, plus 1 if it sums)."""
    space = 1
    for lab in labels:
        space *= sizes[lab]
    return space * (max(1, n_terms - 1) + (1 if summed else 0))
