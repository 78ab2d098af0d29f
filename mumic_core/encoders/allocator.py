"""Memory allocator settings for processes that run a model over many batches (workers, CLI).

With glibc's default, adaptive settings, the memory a forward frees at its end is given back to
the system and faulted in again by the next batch; a CPU forward of the starter model spent a
fifth of its time on that. Keeping blocks up to 32 MiB on the heap and not trimming it made the
same forward 1.25x faster (benchmarks/speed.py). The price is that a process keeps, until it
exits, up to ``TRIM_THRESHOLD`` of heap it freed, so the web process, which rarely encodes, does
not call this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest; blocks above it (big arrays) still go back at once
TRIM_THRESHOLD = 512 * 2**20
_done = False


def keep_freed_memory_for_batches() -> bool:
    """Set the allocator for batch work, once per process; False where that is not glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not _done:
        log.warning("could not set the memory allocator for batch work; encoding runs slower")
    return _done
