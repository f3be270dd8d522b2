"""Run a Python module as ``python -m`` would, then record its wall time and peak resident memory.

    python -m benchmark._peakrss OUT.json MODULE [ARGS...]

Used by ``benchmark.perf`` so that each measured command runs in a fresh process
of its own: OUT.json gets ``{"rc", "seconds", "peak_rss_mb", "argv"}``.
"""

from __future__ import annotations

import json
import resource
import runpy
import sys
import time


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, module, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.argv = [module, *args]
    start, rc = time.perf_counter(), 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        rc = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"rc": rc, "seconds": round(seconds, 2), "peak_rss_mb": round(peak), "argv": [module, *args]}, fh)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
