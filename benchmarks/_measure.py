"""Run one command and report its wall time and peak RSS as JSON.

A fresh process per measurement, because `RUSAGE_CHILDREN` reports the maximum over every child
a process has waited for: running each command under its own wrapper keeps the numbers apart.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    cmd = sys.argv[1:]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_kb / 1024}))


if __name__ == "__main__":
    main()
