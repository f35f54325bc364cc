"""The self-supervised objectives (SimCLR's NT-Xent, Barlow Twins) and the projection head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["nt_xent_loss", "barlow_twins_loss", "Projector"]


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy (InfoNCE over 2B - 1 candidates).

    Parameters
    ----------
    z1, z2 : torch.Tensor (B, D)
        Projections of two views; row i of ``z1`` and row i of ``z2`` are the positive pair.
    temperature : float

    Returns
    -------
    torch.Tensor, scalar
        Mean over the 2B anchors of ``-log softmax(sim / T)[positive]``.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
    return F.cross_entropy(sim, target)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.005, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins: ``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` with ``C`` the
    cross-correlation of the batch-standardised projections.

    Parameters
    ----------
    z1, z2 : torch.Tensor (B, D), B >= 2
    lambd : float
        Weight of the redundancy-reduction (off-diagonal) term.

    Returns
    -------
    torch.Tensor, scalar
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 must both be (B, D) with B >= 2, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    B = z1.shape[0]
    a = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + eps)
    b = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + eps)
    c = a.T @ b / B
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


class Projector(nn.Sequential):
    """The SSL projection head: Linear-BN-ReLU-Linear, (B, d_in) -> (B, d_out)."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__(nn.Linear(d_in, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, d_out))
