"""Memory allocator settings for processes that run a model over many batches (workers, CLI).

With glibc's default, adaptive settings, the memory a forward frees at its end is given back to
the system and faulted in again by the next batch; a CPU forward of the starter model spent a
fifth of its time on that. Keeping blocks up to 32 MiB on the heap and not trimming it made the
same forward 1.25x faster (benchmarks/speed.py). The price is that a process keeps, until it
exits, up to ``TRIM_THRESHOLD`` of heap it freed, so the web process, which rarely encodes, does
not call this.

Those settings hold for glibc's main arena only. A thread gets an arena of its own at its first
allocation, whose heaps are unmapped as they empty: a forward run in huey's worker thread faulted
in 250k pages a second and ran at 0.7 of the same forward in the main thread. So every thread
that takes an arena after the call shares the main one. Call it before any thread is started:
once a native library's threads (numpy's BLAS, torch's) hold arenas, later threads reuse those.
The worker module calls it first thing, when huey's consumer imports it.
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
_M_ARENA_MAX = -8
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
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done = all(mallopt(option, value) for option, value in settings)
    if not _done:
        log.warning("could not set the memory allocator for batch work; encoding runs slower")
    return _done
