"""The paper-style reference: TSM and MTSM from tensorly's Tucker decomposition, one image at a time.

This is the one place the reference is written; the chapter-1 notebook, :mod:`tsmbook.benchmark`
(``tensorly_tsm_loop``) and the tests all use it. It depends on tensorly and torch only, not on
tsmlib's own decomposition or methods, so that comparing against it means something::

    core, factors = tensorly_tucker(F, (49, 7, 7))      # F: (C, H, W)
    tensorly_tsm(F)                                     # (H, W) in [0, 1]
    tensorly_mtsm(F)                                    # (H, W) in [0, 1]

Every call runs inside ``tl.backend_context("pytorch")``, so tensorly's process-global backend is
left alone, with ``init="svd"`` (HOOI from the HOSVD).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["full_ranks", "tensorly_tucker", "tensorly_tsm", "tensorly_mtsm"]


def full_ranks(shape: Sequence[int], ranks: Sequence[int | None] | None = None) -> list[int]:
    """Multilinear ranks for a ``(C, H, W)`` tensor: ``ranks`` with ``None`` entries (or ``ranks=None``)
    replaced by the full rank of that mode, ``[min(C, HW), H, W]``."""
    C, H, W = shape
    full = [min(C, H * W), H, W]
    if ranks is None:
        return full
    if len(ranks) != 3:
        raise ValueError(f"ranks must have 3 entries (channel, height, width), got {ranks!r}")
    return [f if r is None else int(r) for r, f in zip(ranks, full)]


def tensorly_tucker(F: torch.Tensor, ranks: Sequence[int | None] | None = None, *, tol: float = 1e-4,
                    n_iter_max: int = 100, return_sweeps: bool = False):
    """tensorly's Tucker (HOOI, HOSVD start) of one ``(C, H, W)`` tensor.

    Parameters
    ----------
    F : torch.Tensor, shape (C, H, W)
    ranks : sequence of 3 ints (or None entries), optional
        Default: the full multilinear ranks (:func:`full_ranks`).
    tol, n_iter_max
        tensorly's stopping rule (its defaults).
    return_sweeps : bool
        Also return the number of HOOI sweeps tensorly ran (the length of its error list).

    Returns
    -------
    (core, [U1, U2, U3]) or (core, [U1, U2, U3], n_sweeps)
        ``core`` (r1, r2, r3), factors ``U_k`` (n_k, r_k) with orthonormal columns, torch tensors.
    """
    import tensorly as tl
    from tensorly.decomposition import tucker

    if F.ndim != 3:
        raise ValueError(f"F must have shape (C, H, W), got {tuple(F.shape)}")
    with tl.backend_context("pytorch"):
        (core, factors), errors = tucker(F, rank=full_ranks(F.shape, ranks), init="svd", tol=tol,
                                         n_iter_max=n_iter_max, return_errors=True)
    factors = list(factors)
    return (core, factors, len(errors)) if return_sweeps else (core, factors)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    span = m.amax(dim=(-2, -1), keepdim=True) - m.amin(dim=(-2, -1), keepdim=True)
    return torch.where(span > 0, (m - m.amin(dim=(-2, -1), keepdim=True)) / torch.where(span > 0, span, 1), 0.0)


def tensorly_tsm(F: torch.Tensor, ranks: Sequence[int | None] | None = None, **tucker_options) -> torch.Tensor:
    """TSM of one ``(C, H, W)`` tensor the paper's way: ``N(|sum_c w_c F_c|)``, ``w`` the first column of
    tensorly's channel factor; ``N`` min-max scaling (a constant map gives zeros). ``(H, W)``."""
    _, factors = tensorly_tucker(F, ranks, **tucker_options)
    return _minmax(torch.einsum("c,chw->hw", factors[0][:, 0], F).abs())


def tensorly_mtsm(F: torch.Tensor, ranks: Sequence[int | None] | None = None, **tucker_options) -> torch.Tensor:
    """MTSM of one ``(C, H, W)`` tensor from tensorly's Tucker: the channel components
    ``N(|sum_c U1[c, k] F_c|)`` weighted by the core slice norms ``sigma_k``, ``N(sum_k sigma_k P_k /
    sum_k sigma_k)``. Components whose slice norm is at rounding level (``sigma_k <= max(C, H, W) * eps
    * ||F||``) are left out, as numerically absent. ``(H, W)``."""
    core, factors = tensorly_tucker(F, ranks, **tucker_options)
    P = _minmax(torch.einsum("ck,chw->khw", factors[0], F).abs())
    sigma = torch.linalg.vector_norm(core.flatten(1), dim=1)
    keep = sigma > max(F.shape) * torch.finfo(F.dtype).eps * F.norm()
    w = torch.where(keep, sigma, 0.0)
    return _minmax(torch.einsum("k,khw->hw", w, P) / w.sum())
