"""Keep a CPU training step's tensors on the heap instead of mapping fresh pages every step.

glibc serves allocations above its mmap threshold (128 KiB at start) with a fresh ``mmap`` and
returns them with ``munmap``: every step of SAE training on the CPU then page-faults its
multi-megabyte tensors back in (pre-activations are batch x features x 4 bytes, 4 MiB for the
demo's SAE). glibc raises the threshold by itself once a process frees one such block, up to
32 MiB, so how much a run pays depended on what the process had allocated before: measured on a
16x demo collection (300 steps), a streamed run took ~700 faults per step, an in-memory run
(which had freed large blocks while loading) ~40, and the streamed run was 5-8% slower for it.
:func:`keep_step_tensors_on_heap` sets the threshold explicitly, so every run starts in the
state the lucky ones reached by accident.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# The largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2), and the value its own
# dynamic adjustment stops at; larger blocks are always mapped.
_THRESHOLD = 32 * 2**20


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None  # (musl's mallopt does nothing and returns 0)
    except OSError:
        return None


_done = False


def keep_step_tensors_on_heap() -> bool:
    """Serve blocks up to 32 MiB (the most glibc allows) from the heap, and keep up to twice that
    of freed heap memory for reuse rather than handing it back after every step (process-wide,
    set once). False where the C library has no ``mallopt`` (not glibc): nothing changes there."""
    global _done
    libc = _libc()
    if libc is None:
        return False
    # The trim threshold first: with it below the mmap threshold, freeing a step's tensors would
    # hand the top of the heap back to the kernel after every step.
    _done = _done or (libc.mallopt(_M_TRIM_THRESHOLD, 2 * _THRESHOLD) == 1
                      and libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1)
    return _done
