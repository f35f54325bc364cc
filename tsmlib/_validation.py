"""Input checks shared by the decompositions and the saliency methods.

Every public entry point funnels its activations through :func:`check_activations`, so that bad input
gets one clear error (or one documented, defined result) wherever it comes in.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, Sequence

import torch

NanPolicy = Literal["raise", "zero"]


def check_activations(A: torch.Tensor, *, nan_policy: NanPolicy = "raise", name: str = "activations") -> torch.Tensor:
    """Validate a batch of feature maps and return it as a floating tensor.

    Parameters
    ----------
    A : torch.Tensor, shape (B, C, H, W)
        Activations of a convolutional layer. float16/bfloat16 are promoted to float32 (the
        decompositions are not accurate in half precision); integer tensors are rejected.
    nan_policy : {"raise", "zero"}
        ``"raise"`` (default) raises ``ValueError`` if any value is NaN or infinite; ``"zero"`` replaces
        them with 0, as pytorch-grad-cam does silently.

    Returns
    -------
    torch.Tensor, shape (B, C, H, W), float32 or float64.
    """
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(A).__name__}")
    if A.ndim != 4:
        hint = " For a single image use A[None]." if A.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(A.shape)}.{hint}")
    if not (A.is_floating_point() or A.is_complex()):
        raise TypeError(f"{name} must be a floating tensor, got dtype {A.dtype}")
    if A.is_complex():
        raise TypeError(f"{name} must be real, got dtype {A.dtype}")
    if any(s == 0 for s in A.shape):
        raise ValueError(f"{name} has an empty dimension: shape {tuple(A.shape)}")
    if A.dtype in (torch.float16, torch.bfloat16):
        A = A.float()
    if nan_policy not in ("raise", "zero"):
        raise ValueError(f"nan_policy must be 'raise' or 'zero', got {nan_policy!r}")
    # one reduction first: a finite sum means every value is finite (NaN/Inf propagate); only a
    # non-finite sum (or an overflow) pays for the element-wise check
    if not bool(torch.isfinite(A.sum())) and not bool((finite := torch.isfinite(A)).all()):
        if nan_policy == "raise":
            bad = int((~finite).sum())
            raise ValueError(
                f"{name} contain {bad} NaN/Inf value(s); the saliency map would be undefined. "
                "Pass nan_policy='zero' to replace them with 0 (pytorch-grad-cam's behaviour)."
            )
        A = torch.where(finite, A, torch.zeros((), dtype=A.dtype, device=A.device))
    return A


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a plain ``int``: any ``numbers.Integral`` (``int``, ``np.int64``, ...), not ``bool``.

    Raises ``TypeError`` for other types and ``ValueError`` outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name}={value} is out of range: it must be between {lo} and {hi}")
    return value


def check_choice(value, name: str, allowed: Sequence[str]) -> str:
    """Raise ``ValueError`` naming ``name`` and the allowed values unless ``value`` is one of them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def check_tol(value, name: str = "tol") -> float:
    """A finite, non-negative real number (``numbers.Real``, not ``bool``) as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number >= 0, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def resolve_ranks(ranks: Sequence[int] | None, C: int, H: int, W: int) -> tuple[int, int, int]:
    """Multilinear ranks ``(R1, R2, R3)`` for a ``(C, H, W)`` feature tensor.

    ``None`` means the full multilinear rank ``(min(C, H*W), H, W)``; a ``None`` entry is as large as
    the other ranks allow (``(None, 4, 4)`` -> ``(min(C, 16), 4, 4)``).
    Each rank must satisfy ``1 <= R_n <= dim_n`` and ``R_n <= product of the other two ranks`` (the
    mode-n unfolding of the core has no more rows than columns otherwise, and the extra factor columns
    would be arbitrary).
    """
    if ranks is None:
        return min(C, H * W), H, W
    try:
        if isinstance(ranks, (str, bytes)):
            raise TypeError
        ranks = tuple(ranks)
    except TypeError:
        raise TypeError(
            f"ranks must be a sequence (R1, R2, R3) of ints or None entries, or None; got {ranks!r}"
        ) from None
    if len(ranks) != 3:
        raise ValueError(f"ranks must be (R1, R2, R3) for a 3-way (C, H, W) tensor, got {ranks!r}")
    dims = (C, H, W)
    for r, dim, label in zip(ranks, dims, ("R1 (channels)", "R2 (height)", "R3 (width)")):
        if r is None:
            continue
        if isinstance(r, bool) or not isinstance(r, numbers.Integral):
            raise TypeError(f"rank {label} must be an int or None, got {r!r}")
        if not 1 <= r <= dim:
            raise ValueError(f"rank {label}={r} is out of range: it must be between 1 and {dim}")
    ranks = tuple(None if r is None else int(r) for r in ranks)
    # None entries: as large as the given ranks allow (spatial ones first, then the channel rank)
    R2 = ranks[1] if ranks[1] is not None else H
    R3 = ranks[2] if ranks[2] is not None else W
    R1 = ranks[0] if ranks[0] is not None else min(C, R2 * R3)
    if ranks[1] is None:
        R2 = min(H, R1 * R3)
    if ranks[2] is None:
        R3 = min(W, R1 * R2)
    out = (R1, R2, R3)
    for r, others, label in ((R1, R2 * R3, "R1"), (R2, R1 * R3, "R2"), (R3, R1 * R2, "R3")):
        if r > others:
            raise ValueError(
                f"ranks {out} are not a valid multilinear rank: {label}={r} exceeds the product of "
                f"the other two ranks ({others})"
            )
    return out
