"""Evaluating frozen backbones: features, k-NN accuracy, BN re-estimation, linear probes, accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ContractModel

__all__ = ["extract_features", "knn_accuracy", "recalibrate_batchnorm", "fit_linear_probe", "accuracy"]


@torch.no_grad()
def extract_features(model: ContractModel, images_u8: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Pooled backbone features in eval mode: uint8 (N, 3, S, S) -> float32 (N, D)."""
    model.eval()
    out = [model.features(images_u8[i:i + batch_size].float() / 255.0) for i in range(0, len(images_u8), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.backbone.out_dim)


@torch.no_grad()
def knn_accuracy(train_f, train_y, test_f, test_y, k: int = 20, n_classes: int = 10) -> float:
    """Cosine k-NN (weighted vote, weights exp(sim / 0.07)) accuracy on ``test_f``."""
    a = F.normalize(train_f, dim=1)
    b = F.normalize(test_f, dim=1)
    sim = b @ a.T
    k = min(k, len(train_f))
    w, idx = sim.topk(k, dim=1)
    votes = torch.zeros(len(test_f), n_classes).scatter_add_(1, train_y[idx], torch.exp(w / 0.07))
    return float((votes.argmax(1) == test_y).float().mean())


@torch.no_grad()
def recalibrate_batchnorm(model: ContractModel, images_u8: torch.Tensor, batch_size: int = 250) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them on ``images_u8``
    (cumulative average), leaving the weights untouched. Used for the random-weight baseline,
    whose default statistics (mean 0, var 1) do not match its activations."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(images_u8), batch_size):
        model.features(images_u8[i:i + batch_size].float() / 255.0)
    model.eval()


def fit_linear_probe(train_f: torch.Tensor, train_y: torch.Tensor, val_f: torch.Tensor, val_y: torch.Tensor,
                     n_classes: int = 10, steps: int = 300, lr: float = 0.05, weight_decays=(0.0, 1e-3),
                     seed: int = 0):
    """Multinomial logistic regression on frozen features, weight decay chosen on validation.

    Features are standardised for the fit; the standardisation is then folded into the returned
    layer, which therefore acts on the raw features.

    Parameters
    ----------
    train_f, val_f : torch.Tensor (N, D)
    train_y, val_y : torch.Tensor int64 (N,)

    Returns
    -------
    head : nn.Linear (D -> n_classes)
    info : dict
        ``weight_decay`` (chosen), ``val_accuracy`` per weight decay, ``train_loss`` curve of the
        chosen fit.
    """
    mu = train_f.mean(0)
    sd = train_f.std(0) + 1e-6
    a = (train_f - mu) / sd
    av = (val_f - mu) / sd
    best = None
    scores = {}
    for wd in weight_decays:
        torch.manual_seed(seed)
        lin = nn.Linear(a.shape[1], n_classes)
        opt = torch.optim.Adam(lin.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        curve = []
        for _ in range(steps):
            loss = F.cross_entropy(lin(a), train_y) + wd * lin.weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            curve.append(loss.item())
        with torch.no_grad():
            acc = float((lin(av).argmax(1) == val_y).float().mean())
        scores[str(wd)] = acc
        if best is None or acc > best[0]:
            best = (acc, wd, lin, curve)
    _, wd, lin, curve = best
    head = nn.Linear(a.shape[1], n_classes)
    with torch.no_grad():
        head.weight.copy_(lin.weight / sd)
        head.bias.copy_(lin.bias - (lin.weight * (mu / sd)).sum(1))
    return head, {"weight_decay": wd, "val_accuracy": scores, "train_loss": curve}


@torch.no_grad()
def accuracy(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (RGB [0, 1] in, logits out) on uint8 images."""
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch_size):
        logits = model(images_u8[i:i + batch_size].float() / 255.0)
        correct += int((logits.argmax(1) == labels[i:i + batch_size]).sum())
    return correct / max(1, len(labels))
