"""Two processes compiling the same kernel into one disk cache at once both succeed, and a third
process then loads the kernel from the cache instead of compiling it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from kiln.core import engine

needs_engine = pytest.mark.skipif(not engine.available(), reason="C++ engine not built or disabled")

CHILD = textwrap.dedent("""
    import json, math, sys
    import numpy as np
    import kiln.core as mx
    from kiln.core import engine

    def gelu(x):
        return x * (1 + mx.erf(x / math.sqrt(2))) / 2

    x = mx.array(np.linspace(-3, 3, 257, dtype=np.float32))
    y = np.array(mx.compile(gelu)(x))
    stats = engine._engine.cache_stats() if hasattr(engine._engine, "cache_stats") else {}
    print(json.dumps({"sum": float(y.astype(np.float64).sum()), "stats": stats}))
""")


def _spawn(cache_dir):
    env = dict(os.environ, KILN_CACHE_DIR=str(cache_dir))
    return subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)


@needs_engine
def test_concurrent_processes_share_one_disk_cache(tmp_path):
    cache = tmp_path / "kernels"
    first = [_spawn(cache) for _ in range(2)]
    results = []
    for p in first:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["sum"] == results[1]["sum"]
    libraries = list(cache.glob("*.so"))
    assert libraries, "nothing was written to the disk cache"
    assert not list(cache.glob("tmp-*")), "a temporary file was left behind"
    # A later process finds every kernel on disk: the cache's file set does not grow.
    later = _spawn(cache)
    out, err = later.communicate(timeout=120)
    assert later.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["sum"] == results[0]["sum"]
    assert sorted(p.name for p in cache.glob("*.so")) == sorted(p.name for p in libraries)
