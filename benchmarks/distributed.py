"""mx.distributed.all_sum beside raw mpi4py Allreduce on numpy buffers, float32, 2 processes, one run.

Run: python benchmarks/distributed.py    (starts itself on 2 processes through kiln.launch)
Rows: kiln `all_sum` evaluated (a new result array each call, as in MLX); mpi4py `Allreduce` into a fresh
numpy array each call (the same work); mpi4py `Allreduce` into one preallocated buffer (MPI's floor).
Each time is the slower rank's; the table shows the best call of each (calls of the three alternate), which
on a shared machine is the one least disturbed by other processes, and the median beside it.
"""

import os
import statistics
import sys
import time

import numpy as np

SIZES_MB = (1, 16, 256)
CALLS = {1: 100, 16: 30, 256: 10}


def _time(comm, fn) -> float:
    from mpi4py import MPI

    comm.Barrier()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return comm.allreduce(elapsed, op=MPI.MAX)


def bench() -> None:
    import kiln.core as mx
    from mpi4py import MPI

    group = mx.distributed.init(strict=True)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    rows = []
    for mb in SIZES_MB:
        n = mb * 1024 * 1024 // 4
        data = np.random.default_rng(rank).standard_normal(n).astype(np.float32)
        x = mx.array(data)
        preallocated = np.empty_like(data)

        def kiln_all_sum():
            mx.eval(mx.distributed.all_sum(x, group=group))

        def fresh_output():
            comm.Allreduce(data, np.empty_like(data), op=MPI.SUM)

        def into_buffer():
            comm.Allreduce(data, preallocated, op=MPI.SUM)

        runs = {"kiln": kiln_all_sum, "fresh": fresh_output, "buffer": into_buffer}
        times = {name: [] for name in runs}
        for call in range(CALLS[mb] + 1):
            for name, fn in runs.items():
                t = _time(comm, fn)
                if call:  # the first call of each warms up
                    times[name].append(t)
        check = np.array(mx.distributed.all_sum(x, group=group))
        comm.Allreduce(data, preallocated, op=MPI.SUM)
        assert np.array_equal(check, preallocated)
        rows.append((mb, *(min(times[name]) for name in runs), *(statistics.median(times[name]) for name in runs)))
    if rank == 0:
        print(f"all_sum of float32 on {comm.Get_size()} processes ({MPI.Get_library_version().splitlines()[0]})")
        print("| size | kiln all_sum | mpi4py Allreduce, fresh output | mpi4py Allreduce, one buffer | "
              "kiln / fresh | kiln / buffer | medians (kiln, fresh, buffer) |")
        print("|---|---|---|---|---|---|---|")
        for mb, kiln, fresh, buffer, *medians in rows:
            print(f"| {mb} MB | {kiln * 1e3:.2f} ms | {fresh * 1e3:.2f} ms | {buffer * 1e3:.2f} ms | "
                  f"{kiln / fresh:.2f}x | {kiln / buffer:.2f}x | {', '.join(f'{m * 1e3:.1f}' for m in medians)} ms |")


if __name__ == "__main__":
    if any(os.environ.get(v) for v in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE")):
        bench()
    else:
        from kiln.launch import main

        sys.exit(main(["-n", "2", os.path.abspath(__file__)]))
