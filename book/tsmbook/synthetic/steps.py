"""One optimisation step of each training (supervised, SSL), background swaps, the LR schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .augment import ssl_view, supervised_view
from .losses import barlow_twins_loss, nt_xent_loss
from .nets import ContractModel

__all__ = ["supervised_step", "swap_backgrounds", "ssl_step", "lr_factor"]


def supervised_step(model: ContractModel, opt, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> float:
    """One SGD step of cross entropy on an augmented batch; returns the loss."""
    model.train()
    loss = F.cross_entropy(model(supervised_view(x, g)), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def swap_backgrounds(x: torch.Tensor, masks: torch.Tensor, backgrounds: torch.Tensor, g: torch.Generator,
                     p: float) -> torch.Tensor:
    """Paste each image's objects on the background of another image of the batch, with
    probability ``p`` per image.

    Parameters
    ----------
    x : torch.Tensor float (B, 3, S, S)
    masks : torch.Tensor bool (B, S, S)
        Union of the objects of each image.
    backgrounds : torch.Tensor float (B, 3, S, S)
        The same scenes without objects.

    Returns
    -------
    torch.Tensor float (B, 3, S, S)
    """
    B = x.shape[0]
    perm = torch.randperm(B, generator=g)
    apply = (torch.rand(B, generator=g) < p).view(B, 1, 1, 1)
    swapped = torch.where(masks[:, None], x, backgrounds[perm])
    return torch.where(apply, swapped, x)


def ssl_step(method: str, model: ContractModel, projector: nn.Module, opt, x: torch.Tensor, g: torch.Generator,
             cfg: dict, masks: torch.Tensor | None = None, backgrounds: torch.Tensor | None = None) -> float:
    """One step of SimCLR (``method="simclr"``) or Barlow Twins (``"barlow"``) on two views of ``x``.

    ``x`` is float (B, 3, S, S) in [0, 1]. With ``cfg["background_swap_p"] > 0`` each view first
    has its objects moved onto another image's background (:func:`swap_backgrounds`; needs
    ``masks`` and ``backgrounds``), so that the background cannot identify an image.
    """
    model.train()
    projector.train()
    crop = tuple(cfg.get("crop_scale", (0.3, 1.0)))
    size = cfg.get("view_size")  # smaller views than the images are cheaper (as multi-crop does)
    kw = {"crop_scale": crop, "size": size, "hue": cfg.get("hue", 0.5), "grayscale_p": cfg.get("grayscale_p", 0.2)}
    p_swap = cfg.get("background_swap_p", 0.0)
    if p_swap > 0:
        if masks is None or backgrounds is None:
            raise ValueError("background_swap_p > 0 needs the object masks and the backgrounds")
        x1, x2 = (swap_backgrounds(x, masks, backgrounds, g, p_swap) for _ in range(2))
    else:
        x1 = x2 = x
    v = torch.cat([ssl_view(x1, g, **kw), ssl_view(x2, g, **kw)])
    z = projector(model.features(v))
    z1, z2 = z.chunk(2)
    if method == "simclr":
        loss = nt_xent_loss(z1, z2, cfg["temperature"])
    elif method == "barlow":
        loss = barlow_twins_loss(z1, z2, cfg["lambd"])
    else:
        raise ValueError(f"method must be 'simclr' or 'barlow', got {method!r}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def lr_factor(progress: float, warmup: float) -> float:
    """Learning-rate multiplier: linear warm-up over the first ``warmup`` fraction of training,
    then cosine decay to 0 at ``progress = 1``."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / max(1e-9, 1 - warmup))))
