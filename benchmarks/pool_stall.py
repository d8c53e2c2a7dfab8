"""The thread pool under contention: compiled gelu's Program.run at (1<<20,) and (32,1000,4096) float32,
on a quiet machine and with a CPU-bound competitor process on every core but one.

    python benchmarks/pool_stall.py [--threads 1,2] [--busy 0,1] [--calls 400] [--large]

Prints, per case, the median, 90th percentile and worst call: a pool whose worker can be descheduled while
it holds a chunk shows a long tail on the busy rows.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import time

import numpy as np


def _spin(stop):
    while not stop.is_set():
        pass


def gelu(x):
    import kiln.core as mx

    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def measure(run, calls: int) -> list:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times


def row(label: str, times: list) -> str:
    times = sorted(times)
    med = statistics.median(times)
    p90 = times[int(0.9 * (len(times) - 1))]
    return f"{label:40s} median {med * 1e6:9.1f} us   p90 {p90 * 1e6:9.1f} us   max {times[-1] * 1e6:9.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--busy", default="0,1")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--large", action="store_true", help="also (32,1000,4096) (2 GiB of traffic a call)")
    args = parser.parse_args()
    from kiln import _engine
    from kiln.core import engine
    from kiln.core.tracing import make_graph

    shapes = [(1 << 20,)] + ([(32, 1000, 4096)] if args.large else [])
    for shape in shapes:
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        program = engine.compile_graph(make_graph(gelu, x))
        calls = args.calls if x.size <= 1 << 22 else max(args.calls // 40, 5)
        for busy in (int(b) for b in args.busy.split(",")):
            stop = multiprocessing.Event()
            spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(busy * (os.cpu_count() - 1))]
            for p in spinners:
                p.start()
            time.sleep(0.2)
            for threads in (int(t) for t in args.threads.split(",")):
                _engine.set_num_threads(threads)
                run = program.run
                measure(lambda run=run, x=x: run([x]), 5)
                times = measure(lambda run=run, x=x: run([x]), calls)
                print(row(f"{shape} threads={threads} busy={busy}", times), flush=True)
            stop.set()
            for p in spinners:
                p.join()
    _engine.set_num_threads(os.cpu_count())


if __name__ == "__main__":
    main()
