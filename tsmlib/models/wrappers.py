"""Model wrappers that implement the tsmlib model contract.

Every wrapper takes RGB images ``x`` of shape ``(B, 3, S, S)`` with values in ``[0, 1]`` and
normalises them itself (first step of ``forward``), so that explanation masking ``x * S`` happens
in image space. ``forward`` returns class logits ``(B, K)`` when the model has a classifier
(supervised head or linear probe) and embeddings ``(B, D)`` otherwise; ``embed`` always returns
the pooled embedding ``(B, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

__all__ = [
    "Normalize",
    "ResNetModel",
    "VGGModel",
    "EfficientNetLiteModel",
    "EmbedderView",
    "resize_center_crop",
    "image_to_tensor",
]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on ``(B, 3, H, W)`` tensors in ``[0, 1]``.

    Parameters
    ----------
    mean, std : sequence of 3 floats
        In the ``[0, 1]`` scale. ``mean=(0, 0, 0), std=(1, 1, 1)`` is the identity.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected RGB images of shape (B, 3, H, W) with values in [0, 1], got {tuple(x.shape)}"
            )
        mean = self.mean.to(dtype=x.dtype)
        std = self.std.to(dtype=x.dtype)
        return (x - mean) / std

    def extra_repr(self) -> str:
        m = [round(v, 4) for v in self.mean.flatten().tolist()]
        s = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={m}, std={s}"


class ResNetModel(nn.Module):
    """torchvision ResNet trunk (``fc`` replaced by identity) plus an optional linear head.

    Attributes
    ----------
    normalize : Normalize
    net : torchvision.models.ResNet
        ``net.layer4`` is the default CAM target layer; ``net(x)`` returns the pooled
        ``(B, D)`` features because ``net.fc`` is ``nn.Identity``.
    head : nn.Linear or None
        Supervised classifier or linear probe.
    """

    def __init__(self, net: nn.Module, normalize: Normalize, head: nn.Linear | None = None):
        super().__init__()
        net.fc = nn.Identity()
        self.normalize = normalize
        self.net = net
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, D) pooled features."""
        return self.net(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        return self.head(z) if self.head is not None else z


class VGGModel(nn.Module):
    """torchvision VGG with its classifier; ``embed`` gives the 4096-d penultimate features.

    All ReLUs are made non-inplace so that hooks on ``net.features.29`` (the last conv layer's
    activation, the default target) see the tensor they report, also in the backward pass.
    """

    def __init__(self, net: nn.Module, normalize: Normalize):
        super().__init__()
        for module in net.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.normalize = normalize
        self.net = net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 4096) penultimate features."""
        net = self.net
        h = torch.flatten(net.avgpool(net.features(self.normalize(x))), 1)
        return net.classifier[:-1](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class EfficientNetLiteModel(nn.Module):
    """EfficientNet-Lite (package ``efficientnet-lite-pytorch``) with a hookable feature layer.

    ``features`` is an ``nn.Identity`` applied to the output of the last conv block
    (``_conv_head`` + BN + ReLU6, 1280 x 7 x 7 at 224 px), so ``"features"`` names that tensor
    for forward and backward hooks. (The upstream model reuses one activation module for the stem
    and the head, so no upstream submodule outputs exactly this tensor once.)
    """

    def __init__(self, net: nn.Module, normalize: Normalize):
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.features = nn.Identity()

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 1280, S/32, S/32)."""
        return self.features(self.net.extract_features(self.normalize(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 1280) pooled features."""
        return self.feature_maps(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        return self.net._fc(self.net._dropout(z))


class EmbedderView(nn.Module):
    """``(B, 3, S, S) -> (B, D)``: the ``embed`` method of a wrapped model, as a module.

    It shares every parameter with the model (no copy), so hooks on the model's layers fire
    when the embedder runs.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def resize_center_crop(
    image: Image.Image, resize: int, crop: int, resample=Image.BILINEAR
) -> Image.Image:
    """Resize the short side to ``resize`` pixels, then take the central ``crop x crop`` square.

    The same geometry as ``torchvision.transforms.Resize(resize)`` followed by
    ``CenterCrop(crop)``; with ``resample=Image.NEAREST`` it maps label masks the same way.

    Parameters
    ----------
    image : PIL.Image.Image
        Any size and mode.
    resize, crop : int
        ``crop <= resize``.
    """
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
    w, h = image.size
    if w == 0 or h == 0:
        raise ValueError(f"empty image of size {image.size}")
    if w <= h:
        new_w, new_h = resize, max(1, int(round(h * resize / w)))
    else:
        new_w, new_h = max(1, int(round(w * resize / h))), resize
    image = image.resize((new_w, new_h), resample=resample)
    left = int(round((new_w - crop) / 2.0))
    top = int(round((new_h - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> ``(3, H, W)`` float32 tensor in ``[0, 1]`` (converted to RGB first)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
