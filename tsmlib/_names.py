"""The one lookup rule of tsmlib's registries (saliency methods and models).

Names are compared case-insensitively, with ``_`` and ``-`` treated alike (``"EfficientNet-Lite0"``
finds ``"efficientnet_lite0"``, ``"multivec_eigencam"`` finds ``"multivec-eigencam"``); the registry keeps
and reports each name as registered. An unknown name raises :class:`UnknownNameError`, which lists
what exists and the closest matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UnknownNameError", "normalize_name", "unknown_name"]


class UnknownNameError(KeyError, ValueError):
    """A name that no registry entry has. A ``KeyError`` (a failed lookup) and, for code written
    against earlier versions, also a ``ValueError``; ``str()`` is the plain message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def normalize_name(name: str) -> str:
    """The lookup key of ``name``: case-folded, ``_`` written as ``-``."""
    if not isinstance(name, str):
        raise TypeError(f"a registry name must be a string, got {type(name).__name__}")
    return name.casefold().replace("_", "-")


def unknown_name(kind: str, name, choices: Iterable[str]) -> UnknownNameError:
    """The error for an unknown ``name`` of ``kind`` ("saliency method", "model"): lists ``choices``
    and, when some are close, "did you mean"."""
    choices = list(choices)
    close = []
    if isinstance(name, str):
        by_key = {normalize_name(c): c for c in choices}
        close = [by_key[k] for k in difflib.get_close_matches(normalize_name(name), list(by_key), n=3)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}; available: {', '.join(choices)}.{hint}")
