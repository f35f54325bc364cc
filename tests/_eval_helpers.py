"""Hand-built models and maps for the evaluation tests (answers worked out by hand)."""

import torch
import torch.nn as nn


class MeanProbabilityModel(nn.Module):
    """Two-class "classifier" whose softmax probability of class 0 is exactly ``p = a + b * mean(x)``.

    Logits are ``(log p, log(1 - p))``, so softmax gives ``(p, 1 - p)``: Average Drop and friends can be
    computed by hand from the mean brightness of the (masked) image.
    """

    def __init__(self, a: float = 0.0, b: float = 1.0):
        super().__init__()
        self.a, self.b = a, b
        self.scale = nn.Parameter(torch.ones(()))  # gives the model a device and a fingerprint

    def forward(self, x):
        p = (self.a + self.b * x.mean(dim=(1, 2, 3)) * self.scale).clamp(1e-6, 1 - 1e-6)
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def left_half(model, x, layer, targets):
    """Map = 1 on the left half of the image, 0 on the right half."""
    B, _, H, W = x.shape
    m = torch.zeros(B, H, W, dtype=x.dtype, device=x.device)
    m[..., : W // 2] = 1
    return m


def everywhere(model, x, layer, targets):
    """Map = 1 everywhere (the masked image is the image)."""
    return torch.ones(x.shape[0], *x.shape[-2:], dtype=x.dtype, device=x.device)


class CountingConvNet(nn.Module):
    """A 3 -> 6 channel conv layer (stride 4, ReLU), global mean pooling and a 4-class linear head, with
    fixed weights (seed 0); ``calls`` counts its forward passes (for cache and capture tests)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, stride=4, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(self.conv(x).mean(dim=(2, 3)))


def counting(method, calls: list):
    """``method`` (a saliency function ``(model, x, layer, targets)``) that appends each batch size to ``calls``."""

    def counted(model, x, layer, targets):
        calls.append(x.shape[0])
        return method(model, x, layer, targets)

    return counted


def yardstick_results():
    """A tidy results table of hand-picked per-image IoU values: methods against the two yardsticks."""
    import pandas as pd


    # 6 images; metric iou (higher is better). "good" beats both references on every image, "same" equals
    # the whole image, "mixed" is better than the centre prior only.
    rows = []
    whole = [0.2, 0.3, 0.25, 0.2, 0.3, 0.25]
    centre = [0.1, 0.15, 0.1, 0.12, 0.1, 0.11]
    values = {"whole-image": whole, "centre-prior": centre, "good": [w + 0.3 for w in whole], "same": whole,
              "mixed": [c + 0.05 for c in centre]}
    for model in ("a", "b"):
        for method, vals in values.items():
            rows += [{"model": model, "image": i, "method": method, "metric": "iou", "value": v}
                     for i, v in enumerate(vals)]
    return pd.DataFrame(rows)


def model_summary():
    """A small :func:`tsmlib.evaluation.summarize`-shaped table: two models, two methods, one NaN mean."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame({
        "model": ["a", "a", "b", "b", "a", "a"],
        "method": ["tsm", "mtsm", "tsm", "mtsm", "tsm", "mtsm"],
        "metric": ["iou", "iou", "iou", "iou", "average_drop", "average_drop"],
        "mean": [0.4, 0.5, 0.3, np.nan, 20.0, 30.0],
    })
