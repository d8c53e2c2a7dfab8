"""Quantized mixture-of-experts products (`mx.gather_qmm`), eager kiln against the numpy meaning of the same
primitive (the reference interpreter's implementation: gather the packed matrices, dequantize, multiply),
on the same inputs in the same process. Milliseconds per call, median of `--trials` trials.

    python benchmarks/gather_qmm.py [--experts 8] [--rows 1408] [--dim 2048] [--tokens 64 1] [--bits 4]

`--tokens` lists the rows of x per pair: 64 is a prefill (the tiled GEMM path), 1 a decode step (the
matrix-vector kernels).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def median_ms(fn, trials: int) -> float:
    fn()
    runs = []
    for _ in range(trials):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1408, help="rows of each expert's matrix (its outputs)")
    parser.add_argument("--dim", type=int, default=2048, help="the input dimension K")
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--trials", type=int, default=5)
    opts = parser.parse_args()

    import kiln.core as mx
    from kiln.core.primitives import REGISTRY

    rng = np.random.default_rng(0)
    weights = rng.standard_normal((opts.experts, opts.rows, opts.dim)).astype(np.float32)
    wq, scales, biases = mx.quantize(mx.array(weights).astype(mx.float16), bits=opts.bits)
    mx.eval(wq, scales, biases)
    pairs = opts.experts
    lhs = mx.array(np.arange(pairs) % 4)
    rhs = mx.array(np.arange(pairs) % opts.experts)
    reference = REGISTRY["gather_qmm"].impl
    print(f"gather_qmm: {pairs} pairs of x (T, {opts.dim}) @ W ({opts.rows}, {opts.dim}).T, {opts.bits}-bit, "
          f"group 64, float16 scales")
    print("| rows of x per pair | kiln eager ms | numpy meaning ms | kiln / numpy |")
    print("|---|---|---|---|")
    for tokens in opts.tokens:
        x = mx.array(rng.standard_normal((4, tokens, opts.dim)).astype(np.float32)).astype(mx.float16)
        mx.eval(x)
        host = [np.array(a) for a in (x, wq, scales, biases, lhs, rhs)]
        ours = median_ms(lambda x=x: mx.eval(mx.gather_qmm(x, wq, scales, biases, lhs_indices=lhs, rhs_indices=rhs,
                                                            bits=opts.bits)), opts.trials)
        theirs = median_ms(lambda host=host: reference(*host, transpose=True, group_size=64, bits=opts.bits),
                           opts.trials)
        print(f"| {tokens} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
