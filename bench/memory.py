"""Peak memory of the current process, for the benchmarks.

`getrusage(...).ru_maxrss` is not this program's peak on Linux: it keeps the high-water mark of
the process image an `exec` replaced, so a benchmark child forked from a parent that had just
generated a large data set reported the parent's 4.4 GB. `VmHWM` in /proc/self/status is the
peak of the current image only.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process image in MB (VmHWM; ru_maxrss where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
