"""kiln benchmarks: gelu `x * (1 + erf(x / sqrt(2))) / 2` in float32 at three sizes.

Rows: kiln's mx.compile (the whole call, cache lookup included), the engine's Program.run alone, kiln eager
(the reference interpreter), real MLX compiled and eager, torch eager and torch.compile, and jax.jit when installed, numpy + scipy.special.erf, and
np.copyto of the same bytes (the memory-bandwidth floor). Each implementation's first call is timed on its own; then each gets a
calibrated number of calls per trial (about --trial seconds), trials interleaved round-robin, median of 3.

    python benchmarks/run.py [--sizes small,medium,large] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy.special as sp

SIZES = {"small": (1024,), "medium": (1 << 20,), "large": (32, 1000, 4096)}


def gelu_kiln(x):
    import kiln.core as mx

    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def gelu_numpy(x):
    return x * (1 + sp.erf(x / np.float32(math.sqrt(2)))) / 2


def _array_api(module_name: str, x: np.ndarray, compiled: bool):
    """gelu through an MLX-style API (kiln or real MLX): a setup returning one evaluated call."""
    import importlib

    def setup():
        mx = importlib.import_module(module_name)
        xa = mx.array(x)
        mx.eval(xa)

        def gelu(v):
            return v * (1 + mx.erf(v / math.sqrt(2))) / 2

        fn = mx.compile(gelu) if compiled else gelu

        def call():
            y = fn(xa)
            mx.eval(y)
            return np.array(y)[:16] if y.size else np.array(y)

        call()
        return lambda: mx.eval(fn(xa))

    return setup


def _torch(x: np.ndarray, compiled: bool):
    def setup():
        import torch

        xt = torch.from_numpy(x)

        def gelu(v):
            return v * (1 + torch.erf(v / math.sqrt(2))) / 2

        fn = torch.compile(gelu) if compiled else gelu
        return lambda: fn(xt).numpy()

    return setup


def _jax(x: np.ndarray):
    def setup():
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(x)
        fn = jax.jit(lambda v: v * (1 + jax.scipy.special.erf(v / math.sqrt(2))) / 2)
        return lambda: np.asarray(fn(xj).block_until_ready())

    return setup


def _has(module_name: str) -> bool:
    try:
        __import__(module_name)
    except ImportError:
        return False
    return True


def implementations(x: np.ndarray, large: bool) -> dict:
    impls = {}
    from kiln.core import engine

    impls["kiln mx.compile"] = _array_api("kiln.core", x, compiled=True)
    if engine.available():
        from kiln.core.tracing import make_graph

        def engine_setup():
            program = engine.compile_graph(make_graph(gelu_kiln, x))
            return lambda: program.run([x])

        impls["kiln engine Program.run"] = engine_setup
    impls["kiln eager (interpreter)"] = _array_api("kiln.core", x, compiled=False)
    if _has("mlx.core"):
        impls["mlx mx.compile"] = _array_api("mlx.core", x, compiled=True)
        impls["mlx eager"] = _array_api("mlx.core", x, compiled=False)
    if _has("torch"):
        impls["torch eager"] = _torch(x, compiled=False)
        impls["torch.compile"] = _torch(x, compiled=True)
    if _has("jax"):
        impls["jax.jit"] = _jax(x)
    impls["numpy + scipy erf"] = lambda: (lambda: gelu_numpy(x))
    out = np.empty_like(x)
    impls["np.copyto (bandwidth floor)"] = lambda: (lambda: np.copyto(out, x))
    return impls


def time_calls(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench_size(name: str, shape: tuple, trial_s: float, trials: int) -> dict:
    x = (np.random.default_rng(0).standard_normal(shape) * 2).astype(np.float32)
    ref = gelu_numpy(x.astype(np.float64))
    rows = {}
    calls = {}
    for label, setup in implementations(x, large=x.size > 1e7).items():
        start = time.perf_counter()
        fn = setup()
        result = fn()
        first = time.perf_counter() - start
        err = None
        if result is not None:
            got = result[0] if isinstance(result, list) else result
            err = float(np.max(np.abs(got.astype(np.float64) - ref))) if got.size else 0.0
        per_call = time_calls(fn, 1)
        n = max(1, int(trial_s / max(per_call, 1e-9)))
        n = min(n, max(1, int(trial_s / max(time_calls(fn, min(n, 50)), 1e-9))))
        calls[label] = (fn, n)
        rows[label] = {"first_call_s": first, "max_abs_err": err, "trials_s": []}
    for _ in range(trials):
        for label, (fn, n) in calls.items():
            rows[label]["trials_s"].append(time_calls(fn, n))
    for label, row in rows.items():
        row["median_s"] = statistics.median(row["trials_s"])
        row["calls_per_trial"] = calls[label][1]
    floor = rows["np.copyto (bandwidth floor)"]["median_s"]
    for row in rows.values():
        row["vs_copyto"] = row["median_s"] / floor
    return {"shape": list(shape), "elements": int(np.prod(shape)), "rows": rows}


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


def print_table(results: dict) -> None:
    print(f"{'size':8} {'implementation':30} {'time/call':>12} {'GB/s':>7} {'x copyto':>9} {'x numpy':>8} "
          f"{'first call':>11} {'max abs err':>11}")
    for name, res in results.items():
        numpy_t = res["rows"]["numpy + scipy erf"]["median_s"]
        for label, row in res["rows"].items():
            gbs = res["elements"] * 8 / row["median_s"] / 1e9
            err = "" if row["max_abs_err"] is None else f"{row['max_abs_err']:.1e}"
            print(f"{name:8} {label:30} {fmt_time(row['median_s']):>12} {gbs:7.2f} {row['vs_copyto']:9.2f} "
                  f"{row['median_s'] / numpy_t:8.3f} {fmt_time(row['first_call_s']):>11} {err:>11}")


def machine() -> dict:
    from kiln.core import engine

    return {
        "platform": platform.platform(), "python": sys.version.split()[0], "numpy": np.__version__,
        "cpus": os.cpu_count(), "engine": engine.build_info(),
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "")
        if os.path.exists("/proc/cpuinfo") else platform.processor(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--trial", type=float, default=0.5, help="seconds per trial")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    results = {}
    for name in args.sizes.split(","):
        results[name] = bench_size(name, SIZES[name], args.trial, args.trials)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "gelu": results}, f, indent=2)


if __name__ == "__main__":
    main()
