"""Train the synthetic-benchmark models: a supervised classifier, SimCLR and Barlow Twins backbones,
linear probes on frozen features, and a random-weight baseline probe.

Command line (the full book build calls this)::

    python -m tsmlib.synthetic.train --config data/ssl/config.json --out runs/ssl
    python -m tsmlib.synthetic.train --config data/ssl/config.json --out runs/ssl --export data/ssl

Stages run in order ``supervised, simclr, barlow, probes``; ``--stages`` picks some. Each
training stage saves a checkpoint after every epoch (``OUT/<name>.pt``: weights + history), so an
interrupted run still leaves usable backbones, and ``--resume`` continues from them. The
``probes`` stage uses whatever backbone checkpoints exist. ``--export DIR`` writes the
safetensors weights, the configuration and ``manifest.json`` (SHA-256, test accuracies,
timings, per-epoch curves) into ``DIR``.

All functions are small and testable: :func:`nt_xent_loss`, :func:`barlow_twins_loss`,
:func:`supervised_step`, :func:`ssl_step`, :func:`extract_features`, :func:`fit_linear_probe`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..progress import progress as _progress
from .augment import ssl_view, supervised_view
from .data import FASHION_MNIST_CLASSES, SceneConfig, config_dict, generate
from .nets import ContractModel, SmallResNet

__all__ = [
    "DEFAULT_CONFIG",
    "TINY_CONFIG",
    "nt_xent_loss",
    "barlow_twins_loss",
    "Projector",
    "supervised_step",
    "ssl_step",
    "swap_backgrounds",
    "extract_features",
    "fit_linear_probe",
    "recalibrate_batchnorm",
    "train_supervised",
    "train_ssl",
    "run",
    "export",
    "sha256_file",
]

DEFAULT_CONFIG = {
    "seed": 0,
    "threads": 1,
    "data": {"n_train": 10000, "n_val": 1000, "n_test": 2000, "scene": config_dict(SceneConfig())},
    "arch": {"widths": [16, 32, 64, 128]},
    "supervised": {"epochs": 15, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-4, "warmup_epochs": 0.75,
                   "time_budget_minutes": 13},
    "simclr": {"epochs": 40, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-5, "warmup_epochs": 2,
               "temperature": 0.2, "proj_hidden": 256, "proj_out": 128, "crop_scale": [0.35, 1.0],
               "view_size": 48, "hue": 0.5, "grayscale_p": 0.2, "background_swap_p": 0.0,
               "time_budget_minutes": 25},
    "barlow": {"epochs": 40, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-5, "warmup_epochs": 2,
               "lambd": 0.005, "proj_hidden": 512, "proj_out": 512, "crop_scale": [0.35, 1.0],
               "view_size": 48, "hue": 0.5, "grayscale_p": 0.2, "background_swap_p": 0.0,
               "time_budget_minutes": 25},
    "probe": {"steps": 300, "lr": 0.05, "weight_decays": [0.0, 1e-4, 1e-3, 1e-2], "knn_k": 20},
    "monitor": {"n_train": 2000, "n_val": 1000},
}

#: A few-second configuration for CI and the tests (same code paths, toy sizes).
TINY_CONFIG = copy.deepcopy(DEFAULT_CONFIG)
TINY_CONFIG.update({
    "threads": 1,
    "data": {"n_train": 96, "n_val": 32, "n_test": 32, "scene": config_dict(SceneConfig())},
    "arch": {"widths": [8, 16, 16, 16]},
    "monitor": {"n_train": 64, "n_val": 32},
})
for _k in ("supervised", "simclr", "barlow"):
    TINY_CONFIG[_k] = dict(DEFAULT_CONFIG[_k], epochs=2, batch_size=32, warmup_epochs=0.5)
TINY_CONFIG["probe"] = dict(DEFAULT_CONFIG["probe"], steps=30, weight_decays=[0.0, 1e-3], knn_k=5)

MODEL_NAMES = ("supervised", "simclr", "barlow", "random")
#: The first SUBSET_SIZE test images, whose accuracy is recorded so that the tests can check it fast.
SUBSET_SIZE = 256


# --------------------------------------------------------------------------------------------
# losses


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


# --------------------------------------------------------------------------------------------
# steps


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


# --------------------------------------------------------------------------------------------
# training loops


def build_model(cfg: dict, seed: int) -> ContractModel:
    """A fresh :class:`ContractModel` (backbone + 10-class head), initialised from ``seed``."""
    torch.manual_seed(seed)
    backbone = SmallResNet(tuple(cfg["arch"]["widths"]))
    return ContractModel(backbone, nn.Linear(backbone.out_dim, len(FASHION_MNIST_CLASSES)))


def _batches(n, batch_size, g):
    perm = torch.randperm(n, generator=g)
    for i in range(0, n - batch_size + 1, batch_size):  # drop the last partial batch
        yield perm[i:i + batch_size]


def _save(path: Path, state: dict):
    from tsmlib.fingerprint import atomic_path  # unique temp file + os.replace: no shared ".tmp"

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


_LOGGER = logging.getLogger(__name__)


def _log(msg, log=None):
    """One line of the training log: to the ``tsmlib.synthetic.train`` logger (the command line shows
    it; a notebook page does not) and appended to the file ``log`` when given."""
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    _LOGGER.info(msg)
    if log is not None:
        with open(log, "a") as f:
            f.write(line + "\n")


def _train_loop(name, cfg, data, out, step_fn, modules, monitor_fn, resume, log, progress):
    """Shared loop: AdamW, warm-up + cosine learning rate, a checkpoint per epoch.

    Progress is ``max(step / total_steps, minutes / time_budget_minutes)``: on a slow or busy
    machine the schedule anneals on time and training stops when the budget is spent (the
    steps actually done are recorded), so a run always ends with an annealed model.
    """
    scfg = cfg[name]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=scfg["lr"], weight_decay=scfg["weight_decay"])
    n = len(data["train"])
    spe = n // scfg["batch_size"]
    if spe == 0:
        raise ValueError(f"{name}: batch_size {scfg['batch_size']} > number of training images {n}")
    total = max(1, scfg["epochs"] * spe)
    budget = 60.0 * scfg.get("time_budget_minutes", float("inf"))
    warm = scfg["warmup_epochs"] / max(1, scfg["epochs"])
    g = torch.Generator().manual_seed(cfg["seed"] * 1000 + MODEL_NAMES.index(name) + 1)
    history = {"epoch": [], "step": [], "loss": [], "monitor": [], "seconds": []}
    start_epoch, spent, step = 0, 0.0, 0
    ckpt = out / f"{name}.pt"
    if resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        for m, s in zip(modules, st["modules"]):
            m.load_state_dict(s)
        opt.load_state_dict(st["opt"])
        g.set_state(st["gen"])
        history, start_epoch, spent, step = st["history"], st["epoch"], st["seconds"], st["step"]
        _log(f"{name}: resumed at epoch {start_epoch}", log)
    if start_epoch == 0:  # the monitor at initialisation (random weights), for the curves
        history["monitor_init"] = monitor_fn()
        _log(f"{name}: monitor at initialisation {history['monitor_init']:.3f}", log)

    def prog(elapsed):
        return max(step / total, elapsed / budget)

    done = prog(spent) >= 1
    epoch = start_epoch
    while not done and epoch < scfg["epochs"]:
        t0 = time.time()
        losses = []
        it = _batches(n, scfg["batch_size"], g)
        it = _progress(it, enabled=progress, total=spe, desc=f"{name} epoch {epoch + 1}/{scfg['epochs']}", leave=False)
        for idx in it:
            f = lr_factor(prog(spent + time.time() - t0), warm)
            for group in opt.param_groups:
                group["lr"] = scfg["lr"] * f
            losses.append(step_fn(opt, idx, g))
            step += 1
            if prog(spent + time.time() - t0) >= 1:
                done = True
                break
        mon = monitor_fn()
        spent += time.time() - t0
        epoch += 1
        history["epoch"].append(round(epoch - 1 + len(losses) / spe, 3))
        history["step"].append(step)
        history["loss"].append(float(np.mean(losses)))
        history["monitor"].append(mon)
        history["seconds"].append(round(spent, 1))
        _save(ckpt, {"modules": [m.state_dict() for m in modules], "opt": opt.state_dict(),
                     "gen": g.get_state(), "history": history, "epoch": epoch, "step": step,
                     "seconds": spent, "stopped_on_time": step < total})
        _log(f"{name}: epoch {epoch}/{scfg['epochs']} step {step}/{total} loss {history['loss'][-1]:.4f} "
             f"monitor {mon:.3f} ({spent / 60:.1f} min)", log)
    return history


def _monitor_knn(model, data, cfg):
    mt = data["monitor_train"]
    mv = data["val"]
    nv = cfg["monitor"]["n_val"]

    def f():
        tf = extract_features(model, mt.images)
        vf = extract_features(model, mv.images[:nv])
        return knn_accuracy(tf, mt.labels, vf, mv.labels[:nv], k=cfg["probe"]["knn_k"])
    return f


def train_supervised(cfg: dict, data: dict, out: Path, resume=False, log=None, progress=False) -> dict:
    """Train the classifier (backbone + head jointly, cross entropy). Monitor: validation accuracy."""
    model = build_model(cfg, cfg["seed"])
    nv = cfg["monitor"]["n_val"]

    tr = data["train"]

    def step(opt, idx, g):
        return supervised_step(model, opt, tr.images[idx].float() / 255.0, tr.labels[idx], g)

    def monitor():
        return accuracy(model, data["val"].images[:nv], data["val"].labels[:nv])
    return _train_loop("supervised", cfg, data, out, step, [model], monitor, resume, log, progress)


def train_ssl(method: str, cfg: dict, data: dict, out: Path, resume=False, log=None, progress=False) -> dict:
    """Train a backbone with SimCLR or Barlow Twins (labels unused). Monitor: k-NN val accuracy."""
    scfg = cfg[method]
    model = build_model(cfg, cfg["seed"])
    projector = Projector(model.backbone.out_dim, scfg["proj_hidden"], scfg["proj_out"])

    tr = data["train"]

    def step(opt, idx, g):
        bg = None if tr.backgrounds is None else tr.backgrounds[idx].float() / 255.0
        return ssl_step(method, model, projector, opt, tr.images[idx].float() / 255.0, g, scfg,
                        masks=tr.masks[idx], backgrounds=bg)
    return _train_loop(method, cfg, data, out, step, [model, projector], _monitor_knn(model, data, cfg),
                       resume, log, progress)


def make_data(cfg: dict, progress=False) -> dict:
    """Generate the splits named in ``cfg["data"]`` (plus the monitoring subset of train)."""
    scene = SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["data"]["scene"].items()})
    d = cfg["data"]
    keep_bg = any(cfg.get(k, {}).get("background_swap_p", 0) > 0 for k in ("simclr", "barlow"))
    data = {
        "train": generate("train", d["n_train"], cfg["seed"], scene, progress=progress, keep_backgrounds=keep_bg),
        "val": generate("val", d["n_val"], cfg["seed"], scene, progress=progress),
        "test": generate("test", d["n_test"], cfg["seed"], scene, progress=progress),
    }
    m = min(cfg["monitor"]["n_train"], d["n_train"])
    data["monitor_train"] = data["train"].subset(m)
    return data


def load_checkpoint_model(cfg: dict, out: Path, name: str) -> ContractModel | None:
    """The backbone (+ head) saved by a training stage, or None if that stage never saved."""
    ckpt = out / f"{name}.pt"
    if not ckpt.exists():
        return None
    model = build_model(cfg, cfg["seed"])
    model.load_state_dict(torch.load(ckpt, weights_only=False)["modules"][0])
    model.eval()
    return model


def fit_probes(cfg: dict, data: dict, out: Path, log=None) -> dict:
    """Evaluate the classifier and fit/evaluate a linear probe per backbone (SimCLR, Barlow Twins,
    random weights); save ``OUT/<name>_final.pt`` (a whole ContractModel state dict) for each.

    Returns
    -------
    dict name -> {"test_accuracy", "val_accuracy", "probe": info, ...}
    """
    results = {}
    tr, va, te = data["train"], data["val"], data["test"]
    for name in MODEL_NAMES:
        t0 = time.time()
        if name == "random":
            model = build_model(cfg, cfg["seed"] + 12345)
            recalibrate_batchnorm(model, tr.images[: min(2000, len(tr))])
        else:
            model = load_checkpoint_model(cfg, out, name)
            if model is None:
                _log(f"probes: no checkpoint for {name}, skipped", log)
                continue
        res = {}
        if name != "supervised":
            ftr, fva = extract_features(model, tr.images), extract_features(model, va.images)
            head, info = fit_linear_probe(ftr, tr.labels, fva, va.labels, steps=cfg["probe"]["steps"],
                                          lr=cfg["probe"]["lr"], weight_decays=cfg["probe"]["weight_decays"],
                                          seed=cfg["seed"])
            model.head = head
            res["probe"] = info
            res["knn_val_accuracy"] = knn_accuracy(ftr, tr.labels, fva, va.labels, k=cfg["probe"]["knn_k"])
        res["val_accuracy"] = accuracy(model, va.images, va.labels)
        res["test_accuracy"] = accuracy(model, te.images, te.labels)
        k = min(SUBSET_SIZE, len(te))
        res["test_subset_accuracy"] = {"n": k, "accuracy": accuracy(model, te.images[:k], te.labels[:k])}
        res["probe_seconds"] = round(time.time() - t0, 1)
        torch.save(model.state_dict(), out / f"{name}_final.pt")
        results[name] = res
        _log(f"probes: {name} test accuracy {res['test_accuracy']:.4f} (val {res['val_accuracy']:.4f})", log)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def run(cfg: dict, out, stages=("supervised", "simclr", "barlow", "probes"), resume=False, progress=False) -> dict:
    """Run the named stages; returns the probe results (or {} when ``probes`` is not run)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    if not stages:
        return {}
    torch.set_num_threads(int(cfg.get("threads", 2)))
    log = out / "train.log"
    t0 = time.time()
    data = make_data(cfg, progress=progress)
    _log(f"data generated in {time.time() - t0:.1f} s: " + ", ".join(f"{k} {len(v)}" for k, v in data.items()), log)
    for stage in stages:
        if stage == "supervised":
            train_supervised(cfg, data, out, resume, log, progress)
        elif stage in ("simclr", "barlow"):
            train_ssl(stage, cfg, data, out, resume, log, progress)
        elif stage == "probes":
            return fit_probes(cfg, data, out, log)
        else:
            raise ValueError(f"unknown stage {stage!r}; choose among supervised, simclr, barlow, probes")
    return {}


# --------------------------------------------------------------------------------------------
# export


def sha256_file(path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(out, target) -> dict:
    """Write ``<name>.safetensors`` for every final model in ``out`` and ``manifest.json`` into
    ``target``. Returns the manifest."""
    from safetensors.torch import save_file

    out, target = Path(out), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    manifest = {
        "description": "Small ResNets trained on the tsmlib.synthetic scenes (Fashion-MNIST items on real "
                       "textures): a supervised classifier, SimCLR and Barlow Twins backbones with linear "
                       "probes, and a random-weight backbone with a linear probe (baseline).",
        "config": cfg,
        "classes": FASHION_MNIST_CLASSES,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "models": {},
    }
    for name in MODEL_NAMES:
        final = out / f"{name}_final.pt"
        if not final.exists():
            continue
        state = torch.load(final, weights_only=True)
        path = target / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path),
                  metadata={"name": name, "format": "tsmlib.synthetic.ContractModel"})
        entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        entry.update(results[name])
        if name != "random":
            st = torch.load(out / f"{name}.pt", weights_only=False)
            entry["history"] = st["history"]
            entry["steps"] = st["step"]
            entry["stopped_on_time"] = st.get("stopped_on_time", False)
            entry["train_minutes"] = round(st["seconds"] / 60, 2)
        manifest["models"][name] = entry
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tsmlib.synthetic.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="JSON config (default: DEFAULT_CONFIG); 'tiny' for the toy CI config")
    p.add_argument("--out", default="runs/ssl", help="working directory for checkpoints and logs")
    p.add_argument("--stages", default="supervised,simclr,barlow,probes")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--export", metavar="DIR", help="after the stages, export weights + manifest into DIR")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if args.config == "tiny":
        cfg = copy.deepcopy(TINY_CONFIG)
    elif args.config:
        cfg = json.loads(Path(args.config).read_text())
        cfg = cfg.get("config", cfg)  # accept a manifest.json too
    else:
        cfg = copy.deepcopy(DEFAULT_CONFIG)
    stages = [s for s in args.stages.split(",") if s]
    run(cfg, args.out, stages, resume=args.resume, progress=not args.no_progress)
    if args.export:
        m = export(args.out, args.export)
        for name, e in m["models"].items():
            print(f"{name:>10}: test accuracy {e['test_accuracy']:.4f}  {e['bytes'] / 1e6:.2f} MB  {e['sha256'][:12]}")


if __name__ == "__main__":
    main()
