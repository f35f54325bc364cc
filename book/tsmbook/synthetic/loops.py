"""The training runs: model construction, the shared checkpointed loop, each stage, and :func:`run`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tsmlib.fingerprint import atomic_path
from tsmlib.progress import progress as _progress
from .config import MODEL_NAMES, SUBSET_SIZE
from .data import FASHION_MNIST_CLASSES, SceneConfig, generate
from .losses import Projector
from .nets import ContractModel, SmallResNet
from .probes import accuracy, extract_features, fit_linear_probe, knn_accuracy, recalibrate_batchnorm
from .steps import lr_factor, ssl_step, supervised_step

__all__ = ["build_model", "train_supervised", "train_ssl", "make_data", "load_checkpoint_model", "fit_probes", "run"]


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
    with atomic_path(path) as tmp:  # unique temp file + os.replace: no shared ".tmp"
        torch.save(state, tmp)


_LOGGER = logging.getLogger("tsmbook.synthetic.train")


def _log(msg, log=None):
    """One line of the training log: to the ``tsmbook.synthetic.train`` logger (the command line shows
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
    _write_json(out / "results.json", results)
    return results


def _write_json(path: Path, value) -> None:
    """Write ``value`` as JSON atomically: a run killed mid-write leaves the previous file, never half of one."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1))


def run(cfg: dict, out, stages=("supervised", "simclr", "barlow", "probes"), resume=False, progress=False) -> dict:
    """Run the named stages; returns the probe results (or {} when ``probes`` is not run)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", cfg)
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
