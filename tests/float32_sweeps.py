"""Shared by the math-accuracy tests of the CPU kernels and of the Metal kernels (through the shim):
dense float32 sweeps and the error in ULPs against a float64 reference."""

import numpy as np

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, -3.4028235e38],
                    dtype=np.float32)


def sweep(hi, n=400_000, lo=1e-30):
    """Geometric sweeps of both signs up to hi, a linear sweep of [-hi, hi], and the special values."""
    pos = np.geomspace(lo, hi, n // 2)
    return np.concatenate([pos, -pos, np.linspace(-hi, hi, n // 2), SPECIALS]).astype(np.float32)


def ulp_error(got, ref):
    """|got - ref| in units of the float32 spacing at ref (subnormal spacing below the normal range)."""
    with np.errstate(all="ignore"):
        ref32 = ref.astype(np.float32)
        spacing = np.maximum(np.spacing(np.abs(ref32)).astype(np.float64), 2.0**-149)
        err = np.abs(got.astype(np.float64) - ref) / spacing
    both_nan = np.isnan(got) & np.isnan(ref)
    same_inf = np.isinf(got) & ((got == ref) | (np.isinf(ref32) & (np.sign(got) == np.sign(ref))))
    err[both_nan | same_inf] = 0.0
    err[np.isnan(err)] = np.inf  # a NaN where the reference has none is a failure
    return err
