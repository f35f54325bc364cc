"""Configurations of the synthetic-benchmark training: the full run and a few-second one for CI."""

from __future__ import annotations

import copy

from .data import SceneConfig, config_dict

__all__ = ["DEFAULT_CONFIG", "TINY_CONFIG", "MODEL_NAMES", "SUBSET_SIZE"]

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
