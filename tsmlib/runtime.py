"""Settings of the process that runs tsmlib, applied only when asked for: nothing here runs on import.

* :func:`reuse_freed_memory` -- keep large freed blocks for reuse (glibc), which the ``tsmlib``
  command applies to its own process and the book's notebooks to their kernels.
"""

from __future__ import annotations

__all__ = ["reuse_freed_memory"]


def reuse_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc's ``malloc`` to keep freed memory for reuse instead of handing it back to the system.

    By default glibc serves every block above 32 MB by a fresh ``mmap`` and unmaps it when freed, so
    each forward pass of a large batch (24 photographs through EfficientNet-Lite0: activations of
    40-120 MB) faults its pages in again, one by one, and the kernel zeroes them: on this book's
    machine that system time was as large as the computation itself. Raising the mmap threshold (and
    the trim threshold to twice it) makes such blocks come from, and go back to, the heap. The price:
    the process keeps its peak memory until it exits.

    Parameters
    ----------
    threshold : int
        Blocks up to this many bytes come from the heap (default 1 GiB).

    Returns
    -------
    bool
        True where applied (Linux with glibc); False elsewhere (macOS, Windows, musl), where it does
        nothing.
    """
    import ctypes
    import ctypes.util

    if int(threshold) <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    value = min(int(threshold), 2**31 - 1)
    return bool(mallopt(M_MMAP_THRESHOLD, value)) and bool(mallopt(M_TRIM_THRESHOLD, min(2 * value, 2**31 - 1)))
