"""How much memory the process keeps from the C allocator (glibc's malloc; elsewhere nothing to do).

TensorFlow allocates tensors with malloc. glibc gives threads that allocate at the same
time arenas of their own (up to 8 per core) and keeps what is freed in each for reuse;
during extraction the decoding threads and the module's threads allocate megabytes at
once, so freed buffers pile up in many arenas at the same time. Measured in a cold
extraction of 64 images with Inception v3 on 2 cores: peak RSS growth 472-530 MiB with
glibc's default, 361 MiB with 2 arenas, the same images/s (4 arenas: 454 MiB).
"""

import ctypes
import os

_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h.


def _glibc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # Not glibc (macOS, Windows, musl): its allocator manages itself.


def limit_allocator_arenas(cpu_count: int | None = None) -> bool:
    """Caps glibc's arenas at max(2, cores / 4), for a process about to extract bottlenecks.

    Call it before threads start allocating: arenas made earlier stay. A quarter of the
    cores keeps allocations of many decoding threads from waiting on each other on large
    machines; 2 is what this project's 2-core machine measured best.

    Returns:
      Whether the allocator took the setting (False where there is no glibc).
    """
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return libc.mallopt(_M_ARENA_MAX, max(2, (cpu_count or os.cpu_count() or 1) // 4)) == 1


def return_freed_memory() -> None:
    """Gives the memory freed so far back to the system (glibc's malloc_trim).

    The module's activations for a batch take hundreds of MB; freed, they stay in the
    process's heap, and what comes next (freezing the graph) would add to them.
    """
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
