"""addmm/outer/inner/tensordot/einsum/diagonal/diag/trace/kron and mx.linalg: numpy/scipy oracles, MLX where
installed, error messages, gradients against finite differences, vmap and compile."""

import math

import kiln.core as mx
import numpy as np
import pytest


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def spd(n, seed=0, batch=()):
    a = rand(batch + (n, n), seed)
    return (a @ np.swapaxes(a, -1, -2) + n * np.eye(n)).astype(np.float32)


def close(actual, expected, tol=1e-4):
    np.testing.assert_allclose(np.array(actual), expected, rtol=tol, atol=tol)


def numeric_grad(f, x, eps=1e-3):
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        hi = f(mx.array(x + d, dtype=mx.float64)).item()
        lo = f(mx.array(x - d, dtype=mx.float64)).item()
        g[i] = (hi - lo) / (2 * eps)
    return g


def check_grad(f, x, tol=1e-4):
    g = mx.grad(f)(mx.array(x, dtype=mx.float64))
    np.testing.assert_allclose(np.array(g), numeric_grad(f, x), rtol=tol, atol=tol)


A = rand((2, 3), 1)
B = rand((3, 4), 2)
M = rand((3, 3), 3)
V = np.array([1.0, 2.0, 3.0], np.float32)


# -- composite ops ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, operands", [
    ("ij,jk->ik", (A, B)), ("ij,jk", (A, B)), ("ii", (M,)), ("ii->i", (M,)), ("i,i", (V, V)), ("i,j", (V, V)),
    ("...ij,...jk", (rand((5, 2, 3)), B)), ("ij->ji", (A,)), ("ij->", (A,)), ("i...->...", (A,)),
    ("i,i->", (V, np.ones((1,), np.float32))), ("ij,ij->ij", (A, A)), ("ij,kl->ijkl", (A, A)),
    ("bij,bjk,bkl->bil", (rand((2, 3, 4)), rand((2, 4, 5)), rand((2, 5, 2)))), ("iij->j", (rand((3, 3, 2)),)),
    ("abc,cd,bd->a", (rand((2, 3, 4)), rand((4, 5)), rand((3, 5)))), ("i j -> j", (A,)), ("iI->I", (A,)),
])
def test_einsum_matches_numpy(spec, operands):
    out = mx.einsum(spec, *(mx.array(o) for o in operands))
    close(out, np.einsum(spec, *operands))


def test_einsum_integer_operands_and_path():
    a = np.arange(9, dtype=np.int32).reshape(3, 3)
    out = mx.einsum("ii", mx.array(a))
    assert out.dtype == mx.int32 and out.item() == 12
    assert abs(mx.einsum("...->", mx.array(A)).item() - A.sum()) < 1e-5  # numpy refuses this; MLX sums
    path, text = mx.einsum_path("ij,jk,kl", mx.array(A), mx.array(B), mx.ones((4, 5)))
    # numpy's greedy path, as MLX: the small (3, 4) @ (4, 5) product first
    greedy = np.einsum_path("ij,jk,kl", np.asarray(A), np.asarray(B), np.ones((4, 5)), optimize="greedy")[0][1:]
    assert path == [tuple(p) for p in greedy] and "ij,jk,kl" in text


@pytest.mark.parametrize("spec, operands, message", [
    ("ij,jk->ik", (A, A), r"^\[einsum\] Cannot broadcast dimension 0 of input 1 with shape \(2,3\) to size 3"),
    ("ij,jk->ik", (A,), r"^\[einsum\] Number of operands, 1, does not match number of input subscripts, 2"),
    ("ij", (V,), r"^\[einsum\] Invalid number of subscripts 2 for input 0 with 1 dimensions"),
    ("i->ii", (V,), r"^\[einsum\] Repeat indices not allowed in output"),
    ("ij->k", (A,), r"^\[einsum\] Output subscript k"),
])
def test_einsum_errors(spec, operands, message):
    with pytest.raises(ValueError, match=message):
        mx.einsum(spec, *(mx.array(o) for o in operands))


@pytest.mark.parametrize("a, b, axes", [(A, B, 1), (A, A, 2), (A, A, 0), (A, B, [[1], [0]]),
                                         (A, A, [[0, 1], [0, 1]]), (rand((2, 3, 4)), rand((4, 3)), [[1, 2], [1, 0]])])
def test_tensordot_matches_numpy(a, b, axes):
    close(mx.tensordot(mx.array(a), mx.array(b), axes), np.tensordot(a, b, axes))


def test_tensordot_errors():
    with pytest.raises(ValueError, match=r"^\[tensordot\] a and b must have the same shape on the contracted axes"):
        mx.tensordot(mx.array(A), mx.array(B), 2)
    with pytest.raises(ValueError, match=r"^\[tensordot\] axis must be greater or equal to 0"):
        mx.tensordot(mx.array(A), mx.array(B), -1)


def test_inner_outer():
    close(mx.inner(mx.array(V), mx.array(V)), np.inner(V, V))
    close(mx.inner(mx.array(A), mx.array(A)), np.inner(A, A))
    close(mx.inner(mx.array(2.0), mx.array(A)), 2 * A)
    close(mx.outer(mx.array(V), mx.array(V)), np.outer(V, V))
    assert mx.outer(mx.array(A), mx.array(V)).shape == (6, 3)  # inputs are flattened, as in MLX
    assert mx.outer(mx.array([1, 2]), mx.array([3, 4])).dtype == mx.int32
    with pytest.raises(ValueError, match=r"^\[inner\] a and b must have the same last dimension"):
        mx.inner(mx.array(A), mx.array(B))


def test_addmm():
    c = np.ones((2, 4), np.float32)
    close(mx.addmm(mx.array(c), mx.array(A), mx.array(B), 2.0, 0.5), 2.0 * A @ B + 0.5 * c)
    close(mx.addmm(mx.ones((4,)), mx.array(A), mx.array(B)), A @ B + 1)
    out = mx.addmm(mx.ones((2, 4), dtype=mx.float16), mx.array([[1, 2, 3]] * 2), mx.array(np.ones((3, 4), np.int32)))
    assert out.dtype == mx.float16 and out.tolist()[0] == [7.0] * 4
    with pytest.raises(ValueError, match=r"^\[addmm\] Only real floating point types are supported"):
        mx.addmm(mx.array(1), mx.array([1, 2, 3]), mx.array(np.ones((3, 4), np.int32)))
    with pytest.raises(ValueError, match="broadcast"):
        mx.addmm(mx.ones((3, 4)), mx.array(A), mx.array(B))


@pytest.mark.parametrize("offset", [0, 1, 3, 5, -1, -2, -4])
def test_diagonal_matches_numpy(offset):
    x = rand((3, 4), 4)
    close(mx.diagonal(mx.array(x), offset), np.diagonal(x, offset))


def test_diagonal_axes_and_errors():
    x = rand((2, 3, 4), 5)
    close(mx.diagonal(mx.array(x), 1, -1, -2), np.diagonal(x, 1, -1, -2))
    close(mx.diagonal(mx.array(x), 0, 0, 2), np.diagonal(x, 0, 0, 2))
    with pytest.raises(ValueError, match=r"^\[diagonal\] axis1 and axis2 cannot be the same axis"):
        mx.diagonal(mx.array(x), 0, 1, 1)
    with pytest.raises(ValueError, match=r"^\[diagonal\] Array must have at least two dimensions"):
        mx.diagonal(mx.array(V))


@pytest.mark.parametrize("k", [0, 1, 2, -1, -3])
def test_diag_builds_and_extracts(k):
    close(mx.diag(mx.array(V), k), np.diag(V, k))
    x = rand((3, 4), 6)
    close(mx.diag(mx.array(x), k), np.diag(x, k))


def test_diag_keeps_nan_off_the_diagonal_clean():
    out = np.array(mx.diag(mx.array([math.inf, math.nan])))
    assert out[0, 1] == 0 and out[1, 0] == 0 and out[0, 0] == math.inf and math.isnan(out[1, 1])
    with pytest.raises(ValueError, match=r"^\[diag\] array must be 1-D or 2-D"):
        mx.diag(mx.ones((2, 2, 2)))


def test_trace():
    close(mx.trace(mx.array(A)), np.trace(A))
    close(mx.trace(mx.array(A), 1), np.trace(A, 1))
    close(mx.trace(mx.ones((2, 3, 4)), 0, 1, 2), np.trace(np.ones((2, 3, 4)), 0, 1, 2))
    assert mx.trace(mx.ones((2, 2), dtype=mx.int8)).dtype == mx.int32
    assert mx.trace(mx.ones((2, 2), dtype=mx.bool_)).item() == 2
    assert mx.trace(mx.array(A), dtype=mx.float64).dtype == mx.float64
    with pytest.raises(ValueError, match=r"^\[trace\] Array must have at least two dimensions"):
        mx.trace(mx.array(V))


@pytest.mark.parametrize("a, b", [(np.array([[1, 2], [3, 4]]), np.array([[0, 1], [1, 0]])), (V, A),
                                  (np.array(2.0), V), (rand((2, 1, 3)), rand((3, 2)))])
def test_kron_matches_numpy(a, b):
    close(mx.kron(mx.array(a), mx.array(b)), np.kron(a, b))


def test_kron_of_an_empty_array_is_refused():
    # MLX refuses an empty factor outright (numpy would return an empty product).
    for a, b in ((mx.array([]), mx.array([1, 2])), (mx.array([1, 2]), mx.zeros((2, 0)))):
        with pytest.raises(ValueError, match=r"^\[kron\] Input arrays cannot be empty"):
            mx.kron(a, b)


def test_composites_have_gradients():
    b = rand((3, 4), 7)
    check_grad(lambda x: (mx.einsum("ij,jk->ik", x, mx.array(b, dtype=mx.float64)) ** 2).sum(), rand((2, 3), 8))
    check_grad(lambda x: (mx.einsum("ii->i", x) ** 2).sum(), rand((3, 3), 9))
    check_grad(lambda x: (mx.tensordot(x, x, [[0], [0]]) ** 2).sum(), rand((3, 2), 10))
    check_grad(lambda x: (mx.diag(x, 1) ** 2).sum(), rand((3,), 11))
    check_grad(lambda x: mx.trace(x * x, -1), rand((3, 4), 12))
    check_grad(lambda x: (mx.kron(x, x) ** 2).sum(), rand((2, 2), 13))


# -- linalg.norm -----------------------------------------------------------------------------------------
VEC = np.array([3.0, -4.0, 0.0, 1.0], np.float32)
MAT = rand((4, 3), 14)


@pytest.mark.parametrize("ord", [None, 0, 1, 2, 3, 0.5, -1, math.inf, -math.inf])
def test_vector_norms(ord):
    with np.errstate(divide="ignore"):
        expected = np.linalg.norm(VEC, ord)
    close(mx.linalg.norm(mx.array(VEC), ord), expected)


@pytest.mark.parametrize("ord", [None, "fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf])
def test_matrix_norms(ord):
    close(mx.linalg.norm(mx.array(MAT), ord), np.linalg.norm(MAT, ord))


@pytest.mark.parametrize("ord, axis, keepdims", [(None, 0, False), (2, 1, False), (None, (0, 1), True),
                                                 (1, (2, 0), False), ("nuc", (2, 0), True), (-2, (0, 2), False),
                                                 (None, None, True), (math.inf, (1, 2), True), (0, -1, True)])
def test_norm_axes_and_keepdims(ord, axis, keepdims):
    x = rand((2, 3, 4), 15) if axis not in (0, 1) else MAT
    if isinstance(axis, tuple) and max(axis) >= x.ndim:
        x = rand((2, 3, 4), 15)
    out = mx.linalg.norm(mx.array(x), ord, axis, keepdims)
    close(out, np.linalg.norm(x, ord, axis, keepdims))


def test_norm_dtypes():
    assert mx.linalg.norm(mx.array([1, 2])).dtype == mx.float32
    assert mx.linalg.norm(mx.array([1.0, 2.0], dtype=mx.float16)).dtype == mx.float16
    assert mx.linalg.norm(mx.array([1.0, 2.0], dtype=mx.float64)).dtype == mx.float64
    out = mx.linalg.norm(mx.array([1 + 1j, 2]))
    assert out.dtype == mx.float32 and abs(out.item() - math.sqrt(6)) < 1e-6
    assert mx.linalg.norm(mx.array(3.0)).item() == 3.0
    assert mx.linalg.norm(mx.zeros((0,))).item() == 0.0


@pytest.mark.parametrize("args, exc, message", [
    ((MAT, 3), ValueError, r"^\[linalg::norm\] Invalid ord 3 for matrix norm"),
    ((MAT, "bad"), ValueError, r"^\[linalg::norm\] Invalid ord value 'bad' for matrix norm"),
    ((VEC, "fro"), ValueError, r"^\[linalg::norm\] Norm 'fro' only supported for matrices, but received 1 axis/axes"),
    ((np.zeros((2, 3, 4)), 1), ValueError, r"^\[linalg::norm\] Received too many axes for norm"),
    ((np.zeros((2, 3, 4)), None, (0, 1, 2)), ValueError, r"^\[linalg::norm\] Received too many axes for norm"),
    ((MAT, None, (0, 0)), ValueError, r"^\[linalg::norm\] Duplicate axes"),
    ((MAT, None, 3), IndexError, r"^\[linalg::norm\] Invalid axis 3 for array with 2 dimensions"),
])
def test_norm_errors(args, exc, message):
    with pytest.raises(exc, match=message):
        mx.linalg.norm(mx.array(args[0]), *args[1:])


def test_norm_gradient():
    check_grad(lambda x: mx.linalg.norm(x), rand((3, 2), 16))
    check_grad(lambda x: mx.linalg.norm(x, 3), rand((5,), 17))
    check_grad(lambda x: mx.linalg.norm(x, "nuc"), rand((3, 2), 18), tol=1e-3)


# -- inverses and solves ------------------------------------------------------------------------------------
def test_inv_and_batches():
    close(mx.linalg.inv(mx.array(M)), np.linalg.inv(M))
    batch = rand((4, 3, 3), 19)
    close(mx.linalg.inv(mx.array(batch)), np.linalg.inv(batch), 1e-3)
    assert mx.linalg.inv(mx.array(M, dtype=mx.float64)).dtype == mx.float64


def test_tri_inv_reads_one_triangle_and_stays_triangular():
    close(mx.linalg.tri_inv(mx.array(M)), np.linalg.inv(np.tril(M)), 1e-3)
    up = np.array(mx.linalg.tri_inv(mx.array(M), upper=True))
    np.testing.assert_allclose(up, np.linalg.inv(np.triu(M)), rtol=1e-3, atol=1e-3)
    assert (np.tril(up, -1) == 0).all()


def test_solve():
    b = rand((3,), 20)
    close(mx.linalg.solve(mx.array(M), mx.array(b)), np.linalg.solve(M, b), 1e-3)
    bm = rand((3, 2), 21)
    close(mx.linalg.solve(mx.array(M), mx.array(bm)), np.linalg.solve(M, bm), 1e-3)
    batch, rhs = spd(3, 22, (2,)), rand((2, 3, 1), 23)
    close(mx.linalg.solve(mx.array(batch), mx.array(rhs)), np.linalg.solve(batch, rhs), 1e-3)
    close(mx.linalg.solve(mx.array(batch), mx.array(bm)), np.linalg.solve(batch, bm), 1e-3)  # broadcast batch


def test_solve_triangular():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    b = rand((3, 2), 24)
    close(mx.linalg.solve_triangular(mx.array(M), mx.array(b)), scipy_linalg.solve_triangular(M, b, lower=True), 1e-3)
    close(mx.linalg.solve_triangular(mx.array(M), mx.array(b), upper=True),
          scipy_linalg.solve_triangular(M, b, lower=False), 1e-3)


def test_singular_matrices_raise_when_evaluated():
    with pytest.raises(ValueError, match=r"^\[linalg::inv\]"):
        mx.eval(mx.linalg.inv(mx.zeros((2, 2))))
    with pytest.raises(ValueError, match=r"^\[linalg::solve\]"):
        mx.eval(mx.linalg.solve(mx.zeros((2, 2)), mx.ones((2,))))
    # (cholesky does not raise, as in MLX: see test_cholesky_of_a_matrix_that_is_not_positive_definite)


@pytest.mark.parametrize("call, message", [
    (lambda: mx.linalg.inv(mx.array([[1, 2], [3, 4]])),
     r"^\[linalg::inv\] Arrays must have type float32 or float64. Received array with type int32"),
    (lambda: mx.linalg.inv(mx.ones((2, 2), dtype=mx.float16)), r"^\[linalg::inv\] Arrays must have type float32"),
    (lambda: mx.linalg.inv(mx.ones((2, 3))), r"^\[linalg::inv\] Inverses are only defined for square matrices"),
    (lambda: mx.linalg.inv(mx.ones((2,))), r"^\[linalg::inv\] Arrays must have >= 2 dimensions"),
    (lambda: mx.linalg.solve(mx.eye(2), mx.ones((3,))),
     r"^\[linalg::solve\] Last dimension of first input with shape \(2,2\) must match"),
    (lambda: mx.linalg.solve(mx.array([[1, 0], [0, 1]]), mx.array([1, 2])),
     r"^\[linalg::solve\] Input arrays must promote to float32 or float64"),
    (lambda: mx.linalg.cholesky(mx.ones((2, 3))), r"^\[linalg::cholesky\] Cholesky decomposition is only defined"),
    (lambda: mx.linalg.qr(mx.array([[1, 2], [3, 4]])), r"^\[linalg::qr\] Arrays must have type float32 or float64"),
    (lambda: mx.linalg.svd(mx.array([[1, 2], [3, 4]])),
     r"^\[linalg::svd\] Arrays must have type float32, float64 or complex64"),
    (lambda: mx.linalg.eigh(mx.ones((2, 3))), r"^\[linalg::eigh\] Only defined for square matrices"),
    (lambda: mx.linalg.eigh(mx.eye(2), UPLO="X"), r"^\[linalg::eigh\] UPLO must be"),
    (lambda: mx.linalg.lu(mx.array([[1, 2], [3, 4]])), r"^\[linalg::lu\] Arrays must have type float32"),
    (lambda: mx.linalg.cross(mx.ones((4,)), mx.ones((4,))), r"^\[linalg::cross\] The specified axis must have size"),
])
def test_linalg_error_table(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- factorisations --------------------------------------------------------------------------------------
def test_cholesky_lower_upper_and_inverse():
    s = spd(4, 25)
    low = np.array(mx.linalg.cholesky(mx.array(s)))
    np.testing.assert_allclose(low, np.linalg.cholesky(s), rtol=1e-4, atol=1e-4)
    up = np.array(mx.linalg.cholesky(mx.array(s), upper=True))
    np.testing.assert_allclose(up, low.T, rtol=1e-5, atol=1e-5)
    # only the lower triangle is read
    junk = s + np.triu(np.full_like(s, 7.0), 1)
    close(mx.linalg.cholesky(mx.array(junk)), low)
    close(mx.linalg.cholesky_inv(mx.array(low)), np.linalg.inv(s), 1e-3)
    close(mx.linalg.cholesky_inv(mx.array(up), upper=True), np.linalg.inv(s), 1e-3)


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (2, 3, 3)])
def test_qr_reconstructs(shape):
    a = rand(shape, 26)
    q, r = mx.linalg.qr(mx.array(a))
    k = min(shape[-2:])
    assert q.shape == shape[:-2] + (shape[-2], k) and r.shape == shape[:-2] + (k, shape[-1])
    q, r = np.array(q), np.array(r)
    np.testing.assert_allclose(q @ r, a, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, np.broadcast_to(np.eye(k), q.shape[:-2] + (k, k)),
                               atol=1e-5)
    assert np.allclose(np.tril(r, -1), 0)


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (2, 3, 2)])
def test_svd_reconstructs(shape):
    a = rand(shape, 27)
    u, s, vt = mx.linalg.svd(mx.array(a))
    m, n = shape[-2:]
    k = min(m, n)
    assert u.shape[-2:] == (m, m) and s.shape[-1] == k and vt.shape[-2:] == (n, n)
    u, s, vt = np.array(u), np.array(s), np.array(vt)
    np.testing.assert_allclose((u[..., :k] * s[..., None, :]) @ vt[..., :k, :], a, rtol=1e-4, atol=1e-4)
    close(mx.linalg.svd(mx.array(a), compute_uv=False), np.linalg.svd(a, compute_uv=False))
    assert mx.linalg.svd(mx.array(a, dtype=mx.complex64), compute_uv=False).dtype == mx.float32


def test_pinv():
    for a in (rand((4, 3), 28), rand((3, 4), 29), np.array([[1.0, 2.0], [2.0, 4.0]], np.float32)):
        close(mx.linalg.pinv(mx.array(a)), np.linalg.pinv(a), 1e-3)


def test_eigh_and_eigvalsh():
    s = spd(4, 30)
    w, v = mx.linalg.eigh(mx.array(s))
    w, v = np.array(w), np.array(v)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(s), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s @ v, v * w, rtol=1e-3, atol=1e-3)
    close(mx.linalg.eigvalsh(mx.array(M)), np.linalg.eigvalsh(M, "L"))
    close(mx.linalg.eigvalsh(mx.array(M), UPLO="U"), np.linalg.eigvalsh(M, "U"))
    h = np.array([[1, 2j], [-2j, 4]], np.complex64)
    wh = mx.linalg.eigvalsh(mx.array(h))
    assert wh.dtype == mx.float32
    close(wh, np.linalg.eigvalsh(h))


def test_eig_and_eigvals():
    a = np.array([[4.0, 1.0], [2.0, 3.0]], np.float32)
    w, v = mx.linalg.eig(mx.array(a))
    assert w.dtype == mx.complex64 and v.dtype == mx.complex64
    w, v = np.array(w), np.array(v)
    np.testing.assert_allclose(a @ v, v * w, rtol=1e-4, atol=1e-4)
    assert sorted(np.array(mx.linalg.eigvals(mx.array(a))).real.round(4).tolist()) == [2.0, 5.0]


def test_det_and_slogdet():
    close(mx.linalg.det(mx.array(M)), np.linalg.det(M), 1e-3)
    batch = rand((2, 3, 3), 31)
    close(mx.linalg.det(mx.array(batch)), np.linalg.det(batch), 1e-3)
    out = mx.linalg.det(mx.array([[1, 2], [3, 4]]))
    assert out.dtype == mx.float32 and abs(out.item() + 2) < 1e-5
    sign, logabs = mx.linalg.slogdet(mx.array(M))
    ref_sign, ref_log = np.linalg.slogdet(M)
    assert sign.item() == ref_sign and abs(logabs.item() - ref_log) < 1e-4
    assert mx.linalg.slogdet(mx.zeros((2, 2)))[1].item() == -math.inf


@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (3, 4), (2, 3, 3)])
def test_lu_against_scipy(shape):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a = rand(shape, 32)
    p, low, up = mx.linalg.lu(mx.array(a))
    assert p.dtype == mx.uint32
    p, low, up = np.array(p), np.array(low), np.array(up)
    np.testing.assert_allclose(np.take_along_axis(low @ up, p[..., None].astype(np.int64), -2), a, rtol=1e-4,
                               atol=1e-4)
    packed, piv = mx.linalg.lu_factor(mx.array(a))
    if len(shape) == 2:
        ref_packed, ref_piv = scipy_linalg.lu_factor(a)
        np.testing.assert_allclose(np.array(packed), ref_packed, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(np.array(piv), ref_piv)


def test_cross():
    a, b = rand((4, 3), 33), rand((4, 3), 34)
    close(mx.linalg.cross(mx.array(a), mx.array(b)), np.cross(a, b))
    close(mx.linalg.cross(mx.array([1.0, 0.0]), mx.array([0.0, 1.0])), [0.0, 0.0, 1.0])
    close(mx.linalg.cross(mx.array(a.T), mx.array(b.T), axis=0), np.cross(a.T, b.T, axis=0))


# -- transforms -------------------------------------------------------------------------------------------
def test_factorisation_gradients_against_finite_differences():
    s = spd(3, 35).astype(np.float64)
    w = rand((3, 3), 36).astype(np.float64)
    wt = mx.array(w, dtype=mx.float64)
    check_grad(lambda x: (mx.linalg.inv(x) * wt).sum(), s)
    check_grad(lambda x: (mx.linalg.solve(x, mx.array([1.0, 2.0, 3.0], dtype=mx.float64)) ** 2).sum(), s)
    check_grad(lambda x: mx.linalg.det(x), rand((3, 3), 37))
    check_grad(lambda x: mx.linalg.slogdet(x)[1], s)
    sym = (lambda f: (lambda x: f((x + x.T) * 0.5)))
    check_grad(sym(lambda x: (mx.linalg.cholesky(x) * wt).sum()), s)
    check_grad(sym(lambda x: (mx.linalg.cholesky(x, upper=True) * wt).sum()), s)
    check_grad(sym(lambda x: (mx.linalg.eigvalsh(x) * mx.array([1.0, 2.0, 3.0], dtype=mx.float64)).sum()), s)
    check_grad(lambda x: (mx.linalg.svd(x, compute_uv=False) * mx.array([1.0, -2.0], dtype=mx.float64)).sum(),
               rand((3, 2), 38))


def test_factorisation_jvps_match_vjps():
    s = mx.array(spd(3, 39).astype(np.float64), dtype=mx.float64)
    t = mx.array(rand((3, 3), 40).astype(np.float64), dtype=mx.float64)
    t = (t + t.T) * 0.5
    for f in (lambda x: mx.linalg.inv(x).sum(), lambda x: mx.linalg.det(x), lambda x: mx.linalg.cholesky(x).sum(),
              lambda x: mx.linalg.eigvalsh(x)[-1], lambda x: mx.linalg.svd(x, compute_uv=False).sum()):
        _, (forward,) = mx.jvp(f, [s], [t])
        backward = (mx.grad(f)(s) * t).sum()
        assert abs(forward.item() - backward.item()) < 1e-6


def test_undifferentiable_outputs_say_so():
    with pytest.raises(ValueError, match=r"^\[linalg::qr\]"):
        mx.grad(lambda x: mx.linalg.qr(x)[1].sum())(mx.array(M))
    with pytest.raises(ValueError, match=r"^\[linalg::eigh\]"):
        mx.grad(lambda x: mx.linalg.eigh(x)[1].sum())(mx.array(spd(3)))


def test_vmap_of_factorisations():
    batch = np.stack([spd(3, 41), spd(3, 42)])
    close(mx.vmap(mx.linalg.inv)(mx.array(batch)), np.linalg.inv(batch), 1e-3)
    close(mx.vmap(mx.linalg.cholesky, in_axes=2)(mx.array(np.moveaxis(batch, 0, 2))), np.linalg.cholesky(batch), 1e-3)
    close(mx.vmap(mx.linalg.eigvalsh)(mx.array(batch)), np.linalg.eigvalsh(batch), 1e-3)
    b = rand((3,), 43)
    close(mx.vmap(lambda a: mx.linalg.solve(a, mx.array(b)))(mx.array(batch)), np.linalg.solve(batch, b), 1e-3)
    close(mx.vmap(lambda x: mx.linalg.norm(x, 2))(mx.array(batch)), np.linalg.norm(batch, 2, axis=(1, 2)), 1e-3)
    close(mx.vmap(lambda x: mx.einsum("ij,j->i", x, mx.array(b)))(mx.array(batch)), batch @ b, 1e-4)


def test_compiled_matches_eager():
    from kiln.testing import assert_compiled_matches

    def f(x):
        return mx.linalg.inv(x) + mx.einsum("ij,jk->ik", x, x) + mx.linalg.norm(x, "nuc") + mx.trace(x)

    assert_compiled_matches(f, mx.array(spd(3, 44)), rtol=1e-4, atol=1e-4)


# -- real MLX as the oracle ------------------------------------------------------------------------------------
def test_against_mlx():
    mlx = pytest.importorskip("mlx.core")
    a, b, s = rand((4, 3), 45), rand((3, 4), 46), spd(3, 47)
    pairs = [
        (lambda m: m.einsum("ij,jk->ik", m.array(a), m.array(b))), (lambda m: m.tensordot(m.array(a), m.array(b), 1)),
        (lambda m: m.diagonal(m.array(a), -1)), (lambda m: m.diag(m.array(a[0]), 2)), (lambda m: m.trace(m.array(a), 1)),
        (lambda m: m.kron(m.array(a[:2, :2]), m.array(b[:2]))), (lambda m: m.outer(m.array(a), m.array(b[0]))),
        (lambda m: m.addmm(m.array(b[0]), m.array(a), m.array(b), 0.5, 2.0)),
        (lambda m: m.linalg.norm(m.array(a), -2)), (lambda m: m.linalg.norm(m.array(a), "nuc", keepdims=True)),
        (lambda m: m.linalg.norm(m.array(a), 0.5, axis=0)), (lambda m: m.linalg.inv(m.array(s))),
        (lambda m: m.linalg.tri_inv(m.array(s), upper=True)), (lambda m: m.linalg.cholesky(m.array(s))),
        (lambda m: m.linalg.eigvalsh(m.array(s))), (lambda m: m.linalg.pinv(m.array(a))),
        (lambda m: m.linalg.svd(m.array(a), compute_uv=False)), (lambda m: m.linalg.det(m.array(s))),
        (lambda m: m.linalg.solve(m.array(s), m.array(a[0, :3]))), (lambda m: m.linalg.lu(m.array(a))[0]),
        (lambda m: m.linalg.lu_factor(m.array(s))[1]), (lambda m: m.linalg.cross(m.array(a[:, :3]), m.array(b.T[:, :3]))),
    ]
    for f in pairs:
        ours, theirs = f(mx), f(mlx)
        assert ours.shape == tuple(theirs.shape) and str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1]
        np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-3, atol=1e-3)


def test_cholesky_of_a_matrix_that_is_not_positive_definite():
    # As MLX (LAPACK's potrf without the error): the factored columns, then the failing pivot unrooted and
    # the trailing block updated by the factored columns. By hand for [[4, 2, 1], [2, -3, 5], [1, 5, 7]]:
    # l11 = 2, l21 = 1, l31 = 0.5; pivot -3 - 1 = -4 fails; 5 - 0.5 = 4.5 and 7 - 0.25 = 6.75 stay.
    a = mx.array([[4.0, 2.0, 1.0], [2.0, -3.0, 5.0], [1.0, 5.0, 7.0]])
    want = np.array([[2.0, 0.0, 0.0], [1.0, -4.0, 0.0], [0.5, 4.5, 6.75]], np.float32)
    np.testing.assert_array_equal(np.array(mx.linalg.cholesky(a, stream=mx.cpu)), want)
    np.testing.assert_array_equal(np.array(mx.linalg.cholesky(a, upper=True, stream=mx.cpu)), want.T)
    # a batch mixing a positive definite matrix with one that is not: the first factors as usual
    batch = mx.stack([mx.array([[4.0, 2.0], [2.0, 5.0]]), mx.array([[1.0, 2.0], [2.0, 1.0]])])
    np.testing.assert_allclose(np.array(mx.linalg.cholesky(batch, stream=mx.cpu)),
                               [[[2.0, 0.0], [1.0, 2.0]], [[1.0, 0.0], [2.0, -3.0]]], rtol=1e-6)


def test_cholesky_not_positive_definite_matches_mlx(mlx):
    for m in ([[1.0, 2.0], [2.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]],
              [[4.0, 2.0, 1.0], [2.0, 5.0, 3.0], [1.0, 3.0, -7.0]]):
        for upper in (False, True):
            ours = mx.linalg.cholesky(mx.array(m), upper=upper, stream=mx.cpu)
            theirs = mlx.linalg.cholesky(mlx.array(m), upper=upper, stream=mlx.cpu)
            np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-6, err_msg=str(m))
