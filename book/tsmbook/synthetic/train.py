"""Train the synthetic-benchmark models: a supervised classifier, SimCLR and Barlow Twins backbones,
linear probes on frozen features, and a random-weight baseline probe.

Command line (the full book build calls this)::

    python -m tsmbook.synthetic.train --config data/ssl/config.json --out runs/ssl
    python -m tsmbook.synthetic.train --config data/ssl/config.json --out runs/ssl --export data/ssl

Stages run in order ``supervised, simclr, barlow, probes``; ``--stages`` picks some. Each
training stage saves a checkpoint after every epoch (``OUT/<name>.pt``: weights + history), so an
interrupted run still leaves usable backbones, and ``--resume`` continues from them. The
``probes`` stage uses whatever backbone checkpoints exist. ``--export DIR`` writes the
safetensors weights, the configuration and ``manifest.json`` (SHA-256, test accuracies,
timings, per-epoch curves) into ``DIR``.

The code lives in modules with one concern each, all re-exported here: :mod:`.config`
(``DEFAULT_CONFIG``, ``TINY_CONFIG``), :mod:`.losses` (:func:`nt_xent_loss`, :func:`barlow_twins_loss`,
``Projector``), :mod:`.steps` (:func:`supervised_step`, :func:`ssl_step`, ``swap_backgrounds``,
``lr_factor``), :mod:`.probes` (:func:`extract_features`, :func:`fit_linear_probe`, ``accuracy``, ...),
:mod:`.loops` (``train_supervised``, ``train_ssl``, ``run``, ...) and :mod:`.export`
(``export``, ``sha256_file``); this module is the command line.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

# the public names of the former single module, re-exported (noqa: F401)
from .config import DEFAULT_CONFIG, MODEL_NAMES, SUBSET_SIZE, TINY_CONFIG
from .export import export, sha256_file
from .losses import Projector, barlow_twins_loss, nt_xent_loss
from .loops import build_model, fit_probes, load_checkpoint_model, make_data, run, train_ssl, train_supervised
from .probes import accuracy, extract_features, fit_linear_probe, knn_accuracy, recalibrate_batchnorm
from .steps import lr_factor, ssl_step, supervised_step, swap_backgrounds


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


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tsmbook.synthetic.train", description=__doc__.split("\n\n")[0])
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
