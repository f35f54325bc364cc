"""Helpers of the method and ablation chapters: the EigenCAM orientation check, and named method variants
for the evaluation runner.

* :func:`saliency_grid`, :func:`component_grid` -- :func:`tsmbook.plotting.saliency_grid` and
  :func:`tsmbook.plotting.component_figure` under their old names.
* :func:`orientation_scores` -- how much of a map's energy lies inside the object mask, for a map and
  for the map of the opposite sign: the computation that finds inverted EigenCAM maps.
* :func:`method_variant`, :func:`variant_name` -- :func:`tsmlib.registry.register_variant` and
  :func:`tsmlib.registry.variant_name` under their former names (variants are registry entries).
"""

from __future__ import annotations

import torch

__all__ = ["saliency_grid", "component_grid", "orientation_scores", "method_variant", "variant_name"]

# --------------------------------------------------------------------------------------- variants
# Variants live in the registry; these are their former names here.
from tsmlib.registry import register_variant as method_variant  # noqa: E402,F401
from tsmlib.registry import variant_name  # noqa: E402,F401


# ----------------------------------------------------------------------------------- orientation
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


# --------------------------------------------------------------------------------------- figures
# The grids live in tsmbook.plotting (one figure module); the old names stay for the notebooks.
from .plotting import component_figure as component_grid  # noqa: E402
from .plotting import saliency_grid  # noqa: E402
