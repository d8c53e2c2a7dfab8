"""Run MLX's own Python tests (`python/tests/test_*.py` of ml-explore/mlx) against kiln and count methods.

The test files are not part of this repository: put them (and MLX's `mlx_tests.py` helper) in a folder and
pass it. Each file runs in its own subprocess, so a crash is counted as a crash of that file, not of the run.

    python tools/mlx_suite.py /work/mlx_tests                 # kiln, every test_*.py in the folder
    python tools/mlx_suite.py /work/mlx_tests --backend mlx   # real MLX, to calibrate the count
    python tools/mlx_suite.py /work/mlx_tests -k test_fft -v  # one file, failures listed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# The child process: alias MLX's modules to kiln's, run one file with unittest, print a JSON summary.
_CHILD = r"""
import importlib, json, sys, unittest
backend, folder, name = sys.argv[1:4]
if backend == "kiln":
    import kiln, kiln.core, kiln.nn, kiln.optimizers, kiln.utils
    sys.modules["mlx"] = kiln
    for sub in ("core", "nn", "optimizers", "utils"):
        sys.modules["mlx." + sub] = importlib.import_module("kiln." + sub)
    for sub in ("layers", "losses", "init"):
        try:
            sys.modules["mlx.nn." + sub] = importlib.import_module("kiln.nn." + sub)
        except ImportError:
            pass
sys.path.insert(0, folder)
result = unittest.TestResult()
try:
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
except Exception as e:
    print("KILN_SUITE_JSON" + json.dumps({"import_error": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
suite.run(result)
def ids(items):
    return [(t.id(), (msg.strip().splitlines() or [""])[-1][:300]) for t, msg in items]
print("KILN_SUITE_JSON" + json.dumps({
    "run": result.testsRun, "skipped": len(result.skipped),
    "failures": ids(result.failures), "errors": ids(result.errors),
    "unexpected_successes": len(result.unexpectedSuccesses),
}))
"""


def run_file(folder: str, name: str, backend: str, timeout: float) -> dict:
    """Run one test module in a fresh interpreter; returns its summary (or why there is none)."""
    env = dict(os.environ, PYTHONPATH=folder + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.time()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, backend, folder, name], check=False,
                              capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=folder)
    except subprocess.TimeoutExpired:
        return {"timeout": True, "seconds": timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("KILN_SUITE_JSON"):
            summary = json.loads(line[len("KILN_SUITE_JSON"):])
            summary["seconds"] = round(time.time() - start, 1)
            return summary
    return {"crash": proc.returncode, "stderr": proc.stderr[-2000:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--backend", choices=("kiln", "mlx"), default="kiln")
    parser.add_argument("-k", default="", help="only test files whose name contains this")
    parser.add_argument("-v", action="store_true", help="list every failing method and its last error line")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per test file")
    args = parser.parse_args(argv)
    folder = os.path.abspath(args.folder)
    names = sorted(f[:-3] for f in os.listdir(folder) if f.startswith("test_") and f.endswith(".py") and args.k in f)
    total_run = total_passed = 0
    for name in names:
        s = run_file(folder, name, args.backend, args.timeout)
        if "run" not in s:
            print(f"{name:32s} NO RESULT {json.dumps(s)[:300]}")
            continue
        bad = s["failures"] + s["errors"]
        # A method with failing subTests reports one entry per subTest; count it once.
        bad_methods = {test_id.split(" ", 1)[0] for test_id, _ in bad}
        passed = s["run"] - s["skipped"] - len(bad_methods)
        total_run += s["run"] - s["skipped"]
        total_passed += passed
        counted = s["run"] - s["skipped"]
        print(f"{name:32s} {passed:4d} / {counted:4d} passed  ({s['skipped']} skipped, {s['seconds']} s)")
        if args.v:
            for test_id, last_line in bad:
                print(f"    {test_id.split('.', 1)[-1]}: {last_line}")
    print(f"TOTAL {total_passed} / {total_run} methods passed ({args.backend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
