"""Batched image augmentations in torch (no per-image Python loop), for 64x64 training.

Every function takes float images ``(B, 3, H, W)`` in [0, 1] and a ``torch.Generator`` (so a
run is reproducible), and returns ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_resized_crop", "colour_jitter", "random_grayscale", "ssl_view", "supervised_view"]

_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _uniform(n, lo, hi, g, device):
    return lo + (hi - lo) * torch.rand(n, generator=g).to(device)


def random_resized_crop(x, g, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), flip=True, size=None):
    """Random crop (area fraction in ``scale``, aspect in ``ratio``) resized to ``size x size``
    (default: the input's ``(H, W)``), with a random horizontal flip; one ``affine_grid`` +
    bilinear ``grid_sample`` for the whole batch.
    """
    B = x.shape[0]
    dev = x.device
    area = _uniform(B, *scale, g, dev)
    log_r = _uniform(B, math.log(ratio[0]), math.log(ratio[1]), g, dev)
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - sw) * (2 * torch.rand(B, generator=g).to(dev) - 1)  # centre in [-1+sw, 1-sw]
    cy = (1 - sh) * (2 * torch.rand(B, generator=g).to(dev) - 1)
    sx = sw
    if flip:
        sx = torch.where(torch.rand(B, generator=g).to(dev) < 0.5, -sw, sw)
    theta = torch.zeros(B, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = cy
    out_shape = list(x.shape) if size is None else [B, x.shape[1], size, size]
    grid = F.affine_grid(theta, out_shape, align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(x, g, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8):
    """Per-image brightness, contrast, saturation factors and a hue rotation (YIQ space),
    applied with probability ``p`` per image."""
    B = x.shape[0]
    dev = x.device
    luma = _LUMA.to(dev, x.dtype).view(1, 3, 1, 1)
    b = _uniform(B, 1 - brightness, 1 + brightness, g, dev).view(B, 1, 1, 1)
    c = _uniform(B, 1 - contrast, 1 + contrast, g, dev).view(B, 1, 1, 1)
    s = _uniform(B, 1 - saturation, 1 + saturation, g, dev).view(B, 1, 1, 1)
    h = _uniform(B, -hue, hue, g, dev) * 2 * math.pi
    apply = (torch.rand(B, generator=g).to(dev) < p).view(B, 1, 1, 1)
    y = (x * b).clamp(0, 1)
    grey = (y * luma).sum(1, keepdim=True)
    y = ((y - grey.mean((2, 3), keepdim=True)) * c + grey.mean((2, 3), keepdim=True)).clamp(0, 1)
    grey = (y * luma).sum(1, keepdim=True)
    y = ((y - grey) * s + grey).clamp(0, 1)
    # hue: rotate the chroma plane of YIQ by angle h
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=dev, dtype=x.dtype)
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(h), torch.sin(h)
    rot = torch.zeros(B, 3, 3, device=dev, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1] = cos
    rot[:, 1, 2] = -sin
    rot[:, 2, 1] = sin
    rot[:, 2, 2] = cos
    m = from_yiq @ rot @ to_yiq  # (B, 3, 3)
    y = torch.einsum("bij,bjhw->bihw", m, y).clamp(0, 1)
    return torch.where(apply, y, x)


def random_grayscale(x, g, p=0.2):
    """Replace an image by its luma (3 equal channels) with probability ``p``."""
    B = x.shape[0]
    luma = _LUMA.to(x.device, x.dtype).view(1, 3, 1, 1)
    grey = (x * luma).sum(1, keepdim=True).expand_as(x)
    apply = (torch.rand(B, generator=g).to(x.device) < p).view(B, 1, 1, 1)
    return torch.where(apply, grey, x)


def ssl_view(x, g, crop_scale=(0.3, 1.0), size=None, hue=0.5, grayscale_p=0.2):
    """One SimCLR-style view: random resized crop + flip (to ``size`` px, default the input's),
    colour jitter (p 0.8; brightness, contrast, saturation 0.4, hue ``hue``), grayscale (p
    ``grayscale_p``).

    The default ``hue=0.5`` (any hue rotation) is stronger than SimCLR's 0.1 on purpose: the
    synthetic objects have random colours, and with small hue changes the two views can be
    matched by the object's colour alone, a cue that says nothing about its class.
    """
    v = random_resized_crop(x, g, scale=crop_scale, size=size)
    return random_grayscale(colour_jitter(v, g, hue=hue), g, p=grayscale_p)


def supervised_view(x, g):
    """Light augmentation for the classifier: random resized crop (area 0.6-1) + flip."""
    return random_resized_crop(x, g, scale=(0.6, 1.0))
