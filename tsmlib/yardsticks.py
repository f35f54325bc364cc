"""Yardstick maps: label-free "methods" that look at neither the model nor the image.

A saliency method localises something only if it beats maps that know nothing. Two such maps are
registered as built-in methods of the ``"yardstick"`` family (:mod:`tsmlib.registry`), so that
:func:`tsmlib.saliency` and :func:`tsmlib.evaluation.evaluate` run them by name next to the real methods:

* ``"whole-image"``: 1 on every pixel. It removes nothing (its explanation-masked image is the image
  itself), its IoU with a mask at any threshold is the mask's share of the image, and so are its energy
  pointing game, relevance mass and relevance rank accuracies; its MSE is the share of background.
* ``"centre-prior"``: an isotropic Gaussian centred in the image, ``exp(-d^2 / (2 sigma^2))`` with ``d``
  the distance of a pixel centre to the image centre and ``sigma`` = :data:`CENTRE_PRIOR_SIGMA` times the
  shorter image side (0.25: the map falls to ``exp(-2) = 0.14`` at the middle of each edge), min-max
  normalised like every method's map. Objects of photographs and of the synthetic scenes tend to sit
  near the centre; this map scores what that bias alone gives.

Both are computed at the input resolution, cost no forward pass, and ignore ``model``, ``layer`` and
``targets``. The whole-image map is returned as is (min-max normalisation would turn a constant map into
zeros); the registry marks it ``normalized=True``.
"""

from __future__ import annotations

import torch

__all__ = ["CENTRE_PRIOR_SIGMA", "whole_image_map", "centre_prior_map", "whole_image", "centre_prior"]

#: Standard deviation of the centre prior, as a fraction of the shorter image side.
CENTRE_PRIOR_SIGMA = 0.25


def _shape(x: torch.Tensor) -> tuple[int, int, int]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {getattr(x, 'shape', type(x))}")
    return x.shape[0], x.shape[-2], x.shape[-1]


def whole_image_map(x: torch.Tensor) -> torch.Tensor:
    """The all-ones map of a batch ``x`` (B, C, H, W): shape (B, H, W), float32 on ``x``'s device."""
    B, H, W = _shape(x)
    return torch.ones(B, H, W, device=x.device)


def centre_prior_map(x: torch.Tensor, sigma: float = CENTRE_PRIOR_SIGMA) -> torch.Tensor:
    """The centre prior of a batch ``x`` (B, C, H, W): shape (B, H, W), in (0, 1], float32 on ``x``'s device.

    ``exp(-d^2 / (2 (sigma * min(H, W))^2))`` with ``d`` the distance (in pixels) of each pixel centre
    ``(i + 0.5, j + 0.5)`` to the image centre ``(H / 2, W / 2)``; not normalised (:func:`tsmlib.saliency`
    min-max normalises it like every method's map). ``sigma`` is a fraction of the shorter side, > 0.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (a fraction of the image side), got {sigma}")
    B, H, W = _shape(x)
    s = float(sigma) * min(H, W)
    i = torch.arange(H, dtype=torch.float64) + 0.5 - H / 2
    j = torch.arange(W, dtype=torch.float64) + 0.5 - W / 2
    g = torch.exp(-(i[:, None] ** 2 + j[None, :] ** 2) / (2 * s * s))
    return g.to(device=x.device, dtype=torch.float32).expand(B, H, W).clone()


def whole_image(model, x: torch.Tensor, layer=None, targets=None, *, reshape_transform=None) -> torch.Tensor:
    """Registry form of :func:`whole_image_map` (``fn(model, x, layer, targets)``; all but ``x`` ignored)."""
    return whole_image_map(x)


def centre_prior(model, x: torch.Tensor, layer=None, targets=None, *, sigma: float = CENTRE_PRIOR_SIGMA,
                 reshape_transform=None) -> torch.Tensor:
    """Registry form of :func:`centre_prior_map` (``fn(model, x, layer, targets, sigma=0.25)``; ``model``,
    ``layer`` and ``targets`` ignored)."""
    return centre_prior_map(x, sigma)
