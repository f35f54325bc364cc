"""Progress bars: one switch for the whole package.

Long loops (evaluation batches, the randomisation cascade, training epochs, the CLI) show a plain
``tqdm`` bar in a terminal. A page of the book never does: the notebook runner sets
``TSM_PROGRESS=0`` (and ``TQDM_DISABLE=1``, which also silences the bars inside pytorch-grad-cam)
in the environment of the kernels it starts, and :func:`progress` honours both.
"""

from __future__ import annotations

import os
from typing import Iterable

__all__ = ["progress", "progress_enabled"]


def progress_enabled(requested: bool = True) -> bool:
    """Whether a bar is shown: ``requested``, unless ``TSM_PROGRESS=0`` or ``TQDM_DISABLE=1`` is set."""
    if not requested:
        return False
    if os.environ.get("TSM_PROGRESS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes", "on")


def progress(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs):
    """A plain-text ``tqdm`` bar over ``iterable`` (``tqdm.auto`` would need ipywidgets in notebooks),
    shown only when :func:`progress_enabled` says so. Other keyword arguments go to ``tqdm``."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not progress_enabled(enabled), **kwargs)
