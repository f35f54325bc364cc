"""Settings of the process that runs tsmlib, applied only when asked for: nothing here runs on import.

* :func:`reuse_freed_memory` -- keep large freed blocks for reuse (glibc), which the ``tsmlib``
  command applies to its own process and the book's notebooks to their kernels.
* :func:`check_output_dir`, :func:`check_device` -- the checks the commands run before any work:
  an output folder that can be written, a device that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["reuse_freed_memory", "check_output_dir", "check_device"]


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


def check_output_dir(out, flag: str = "out") -> str | None:
    """Why ``out`` cannot be an output directory (an existing file, not writable), or None; ``flag``
    names the setting in the message (``--out`` on the command line)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"{flag} {out} is an existing file; expected a directory (it is created if missing)"
    probe = out
    while not probe.exists():  # the first existing ancestor must let us create the rest
        probe = probe.parent
    if not probe.is_dir():
        return f"{flag} {out}: {probe} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{flag} {out} is not writable ({probe}: permission denied); expected a directory you can write"
    return None


def check_device(device: str, flag: str = "device") -> str | None:
    """Why ``device`` cannot be used here (CUDA asked for, none available; a malformed name), or None;
    ``flag`` names the setting in the message."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"unknown device {device!r}; expected cpu, cuda or cuda:N"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"{flag} {device}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None
