"""Keep glibc's malloc from returning and re-faulting the forward pass's memory on every batch.

Measured on the 2-core CPU machine (docs/performance.md): a CPU forward pass allocates and frees
tensors of 5-20 MB per block. glibc serves blocks that large with mmap and adapts the threshold as
they are freed, so whether a tensor's pages are reused or faulted in afresh depends on what else the
process allocated. Capture's own buffers (position sums, samples) shift that balance, and the same
capture measured 1.1-1.2x a plain forward pass with glibc's defaults but 1.05-1.07x with the
thresholds below, the plain forward pass itself getting faster too. Pinning the thresholds keeps
freed memory in the process for reuse; the peak resident memory is unchanged, but memory freed
after the peak is handed back to the system only when the process ends.

The geomcheck command pins them for its own process. Library use (the pytest plugin, Python code)
leaves the host process alone; set the same values there through the environment:
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456``.
``GEOMCHECK_MALLOC=default`` keeps glibc's defaults in the command too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 256 << 20))


def pin_malloc_thresholds() -> bool:
    """Pin glibc's mmap/trim thresholds for this process; False where there is no glibc or it is opted out."""
    if os.environ.get("GEOMCHECK_MALLOC", "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
