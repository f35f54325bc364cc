"""Computations behind the book's figures that are not figures themselves.

* :func:`orientation_scores` -- how much of a map's energy lies inside the object mask, for a map and for
  the map of the opposite sign: the computation that finds inverted EigenCAM maps (chapter 2);
* :func:`schematic_tensors` -- every intermediate tensor of the paper's method schematic for one feature
  tensor (drawn by :func:`tsmbook.figures.plot_method_schematic`; tested against :mod:`tsmlib.methods`).

Both are page-level analyses of one figure each; a library user who wants a map's sign uses the
``sign=`` rule of :func:`tsmlib.eigencam` and the evaluation metrics of :mod:`tsmlib.evaluation`.
"""

from __future__ import annotations

import torch

from tsmlib.methods import minmax_normalize

__all__ = ["orientation_scores", "schematic_tensors"]


def schematic_tensors(F: torch.Tensor, n_components: int | None = None) -> dict:
    """Every intermediate tensor of the method schematic, for one feature tensor.

    Parameters
    ----------
    F : torch.Tensor, shape (C, H, W)
        Activations of one image at the target layer (finite; not all zero).
    n_components : int, optional
        Number of leading components kept (default all ``min(C, H*W)``, those the combined maps use).

    Returns
    -------
    dict of CPU float64 tensors
        ``F`` (C, H, W); ``unfolding`` the mode-1 unfolding (C, H*W); ``core`` (R1, H, W) and
        ``U1`` (C, R1), ``U2`` (H, H), ``U3`` (W, W) of the full-rank Tucker decomposition
        (R1 = min(C, H*W)); ``sigma_tucker`` (R1,) the core slice norms ``||G[k]||_F``;
        ``w`` (C,) = ``U1[:, 0]``; ``weighted_sum`` (H, W) = ``sum_c w_c F_c`` (signed) and
        ``tsm`` (H, W) = min-max of its absolute value (TSM); ``centred`` (H*W, C) EigenCAM's
        centred matrix M; ``svd_U`` (H*W, K), ``svd_S`` (K,), ``svd_V`` (C, K) its SVD; ``eigencam``
        (H, W) EigenCAM's map (first oriented component, ReLU, min-max); ``tsm_components`` and
        ``eigencam_components`` (n, H, W) signed component maps with ``tsm_sigma`` / ``eigencam_sigma``
        (n,); ``mtsm`` and ``multivec_eigencam`` (H, W) the combined maps over all components.
    """
    import tsmlib

    if not isinstance(F, torch.Tensor) or F.ndim != 3:
        raise ValueError(f"F must be one feature tensor of shape (C, H, W), got "
                         f"{tuple(F.shape) if isinstance(F, torch.Tensor) else type(F).__name__}")
    F = F.detach().to("cpu", torch.float64)
    if not torch.isfinite(F).all():
        raise ValueError("F contains NaN or infinite values")
    if not F.abs().sum() > 0:
        raise ValueError("F is all zero: no decomposition has a meaningful first component")
    C, H, W = F.shape
    K = min(C, H * W)
    n_components = K if n_components is None else n_components
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= K:
        raise ValueError(f"n_components must be an int in [1, {K}], got {n_components!r}")
    A = F[None]
    unfolding = F.reshape(C, H * W)

    tk = tsmlib.tucker(A)
    core, (U1, U2, U3) = tk.core[0], [u[0] for u in tk.factors]
    w = U1[:, 0]
    weighted = torch.einsum("c,chw->hw", w, F)

    M = unfolding.T - unfolding.T.mean(dim=0, keepdim=True)  # (HW, C), centred channels
    svd_U, svd_S, svd_Vh = torch.linalg.svd(M, full_matrices=False)

    ec = tsmlib.eigencam_components(A, n_components)
    tc = tsmlib.tsm_components(A, k=n_components)
    return {
        "F": F,
        "unfolding": unfolding,
        "core": core,
        "U1": U1,
        "U2": U2,
        "U3": U3,
        "sigma_tucker": core.flatten(1).norm(dim=1),
        "w": w,
        "weighted_sum": weighted,
        "tsm": minmax_normalize(weighted.abs()),
        "centred": M,
        "svd_U": svd_U,
        "svd_S": svd_S,
        "svd_V": svd_Vh.T,
        "eigencam": minmax_normalize(ec.maps[0, 0].clamp_min(0)),
        "tsm_components": tc.maps[0],
        "tsm_sigma": tc.weights[0],
        "eigencam_components": ec.maps[0],
        "eigencam_sigma": ec.weights[0],
        "mtsm": tsmlib.mtsm(A)[0],
        "multivec_eigencam": tsmlib.multivec_eigencam(A)[0],
    }


def orientation_scores(signed: torch.Tensor, masks: torch.Tensor) -> dict:
    """Mask energy of ``ReLU(p)`` and of ``ReLU(-p)``: which sign of a component points at the object.

    Parameters
    ----------
    signed : (B, H, W)
        Signed maps ``p`` (e.g. ``tsmlib.eigencam(A, sign=..., transform="none", normalize=False)``),
        at any resolution; they are upsampled bilinearly to the masks' size.
    masks : (B, H_m, W_m)
        Foreground masks (bool or 0/1).

    Returns
    -------
    dict of (B,) tensors
        ``energy_pos`` and ``energy_neg``: the share of the map's mass inside the mask,
        ``sum(S * mask) / sum(S)`` for ``S = ReLU(p)`` and ``S = ReLU(-p)`` (NaN for an all-zero map);
        ``inverted``: True where ``ReLU(-p)`` puts more of its mass on the object than ``ReLU(p)``.
    """
    from tsmlib.methods import upsample

    if signed.ndim != 3 or masks.ndim != 3 or signed.shape[0] != masks.shape[0]:
        raise ValueError(f"expected signed maps (B, H, W) and masks (B, H, W), got {tuple(signed.shape)} "
                         f"and {tuple(masks.shape)}")
    m = masks.to(torch.float64)
    if bool((m.flatten(1).sum(1) == 0).any()):
        raise ValueError("a mask has no foreground pixel: its orientation is undefined")
    p = upsample(signed.to(torch.float64), tuple(masks.shape[-2:]))

    def energy(S):
        total = S.flatten(1).sum(1)
        inside = (S * m).flatten(1).sum(1)
        return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan")))

    pos, neg = energy(p.clamp_min(0)), energy((-p).clamp_min(0))
    return {"energy_pos": pos, "energy_neg": neg, "inverted": neg > pos}
