"""A small ResNet for 64x64 synthetic scenes, and the wrappers that follow the model contract.

Architecture (:class:`SmallResNet`, default widths ``(16, 32, 64, 128)``, those of the committed
models, 0.31 M parameters)::

    stem    conv3x3 stride 2, BN, ReLU           3 x 64 x 64  -> 16 x 32 x 32
    layer1  BasicBlock(16)                                    -> 16 x 32 x 32
    layer2  BasicBlock(32, stride 2)                          -> 32 x 16 x 16
    layer3  BasicBlock(64, stride 2)                          -> 64 x 8 x 8
    layer4  BasicBlock(128)                                   -> 128 x 8 x 8   (the target layer)
    global average pooling                                    -> 128

So the last block gives 8x8 feature maps at 64 px input (overall stride 8), like ResNet-50's
``layer4`` gives 7x7 at 224 px.

:class:`ContractModel` is what the zoo hands out: it takes RGB ``(B, 3, S, S)`` in [0, 1],
normalises inside, runs ``backbone`` and a linear ``head`` and returns logits. Its target layer
is ``"backbone.layer4"``. :class:`Embedder` shares the same backbone and returns the pooled
``(B, 128)`` features.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "SmallResNet", "Normalize", "ContractModel", "Embedder", "DATA_MEAN", "DATA_STD"]

#: Per-channel normalisation inside every model: fixed values chosen before the final scene
#: settings, not the exact statistics of the synthetic training images (measured on 2000 train images of seed 0: mean 0.41, 0.36, 0.34;
#: std 0.26, 0.21, 0.21). They are saved as buffers in each weight file, so loading uses the
#: values the model was trained with.
DATA_MEAN = (0.45, 0.42, 0.39)
DATA_STD = (0.27, 0.26, 0.27)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BN, identity (or 1x1 projection) shortcut.

    (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """The backbone: (B, 3, S, S) normalised images -> (B, widths[-1]) pooled features.

    Parameters
    ----------
    widths : tuple of 4 ints
        Channels of layer1..layer4.
    """

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must have 4 entries, got {widths}")
        w1, w2, w3, w4 = widths
        self.widths = tuple(widths)
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 3, 2, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, 2)
        self.layer3 = BasicBlock(w2, w3, 2)
        self.layer4 = BasicBlock(w3, w4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = w4
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_maps(self, x):
        """(B, 3, S, S) normalised -> (B, C, S/8, S/8), the output of ``layer4``."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.pool(self.feature_maps(x)).flatten(1)


class Normalize(nn.Module):
    """(x - mean) / std per channel, for (B, 3, H, W) inputs in [0, 1]."""

    def __init__(self, mean=DATA_MEAN, std=DATA_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
        return (x - self.mean) / self.std


class ContractModel(nn.Module):
    """RGB in [0, 1] (B, 3, S, S) -> logits (B, n_classes): normalise, backbone, linear head.

    The classifier (head trained jointly) and the self-supervised backbones with their linear
    probe (head trained on frozen features) are both this class. Target layer:
    ``"backbone.layer4"``.
    """

    def __init__(self, backbone: SmallResNet, head: nn.Linear, normalize: Normalize | None = None):
        super().__init__()
        self.normalize = normalize or Normalize()
        self.backbone = backbone
        self.head = head

    def features(self, x):
        """(B, 3, S, S) in [0, 1] -> (B, D) pooled backbone features."""
        return self.backbone(self.normalize(x))

    def embed(self, x):
        """Alias of :meth:`features` (the name ``tsmlib.models``' ``EmbedderView`` calls)."""
        return self.features(x)

    def forward(self, x):
        return self.head(self.features(x))


class Embedder(nn.Module):
    """RGB in [0, 1] (B, 3, S, S) -> (B, D) pooled backbone features (the SSL embedding).

    Shares its ``normalize`` and ``backbone`` modules (not copies) with a :class:`ContractModel`.
    """

    def __init__(self, model: ContractModel):
        super().__init__()
        self.normalize = model.normalize
        self.backbone = model.backbone

    def forward(self, x):
        return self.backbone(self.normalize(x))
