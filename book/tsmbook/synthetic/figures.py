"""Figures for the book: sample scenes with their masks, and the training curves of the
committed models (read from ``manifest.json``, no retraining)."""

from __future__ import annotations

import numpy as np

from .data import SyntheticSet

__all__ = ["plot_samples", "plot_training_curves"]

_TITLES = {"supervised": "supervised classifier", "simclr": "SimCLR", "barlow": "Barlow Twins"}


def plot_samples(data: SyntheticSet, n: int = 8, axes=None):
    """Three rows per sample column: the image, the labelled object's mask, and all objects
    (background dark, distractors mid, labelled object bright).

    Parameters
    ----------
    data : SyntheticSet
    n : int
        Number of samples (columns); at most ``len(data)``.
    axes : array of matplotlib Axes (3, n), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = min(n, len(data))
    if n == 0:
        raise ValueError("no samples to plot")
    if axes is None:
        fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.0), squeeze=False)
    else:
        fig = np.asarray(axes).flat[0].figure
    axes = np.asarray(axes).reshape(3, n)
    for i in range(n):
        axes[0, i].imshow(data.images[i].permute(1, 2, 0).numpy())
        axes[0, i].set_title(data.classes[int(data.labels[i])], fontsize=8)
        axes[1, i].imshow(data.main_masks[i].numpy(), cmap="gray", vmin=0, vmax=1)
        # 0 background, 1 distractors, 2 the labelled object
        layers = data.masks[i].int() + data.main_masks[i].int()
        axes[2, i].imshow(layers.numpy(), cmap="viridis", vmin=0, vmax=2, interpolation="nearest")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("labelled object", fontsize=8)
    axes[2, 0].set_ylabel("all objects", fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(manifest: dict):
    """Per-epoch training loss and monitor accuracy of each trained model.

    The monitor is the validation accuracy for the classifier and the k-NN validation accuracy
    of the frozen features for the self-supervised backbones; epoch 0 is its value at
    initialisation (random weights).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    trained = [k for k in ("supervised", "simclr", "barlow") if "history" in manifest["models"].get(k, {})]
    if not trained:
        raise ValueError("the manifest holds no training history")
    fig, axes = plt.subplots(2, len(trained), figsize=(4 * len(trained), 5.5), squeeze=False)
    for j, k in enumerate(trained):
        h = manifest["models"][k]["history"]
        axes[0, j].plot(h["epoch"], h["loss"], marker="o")
        axes[0, j].set_title(_TITLES[k])
        axes[0, j].set_ylabel("training loss")
        ep, mon = list(h["epoch"]), list(h["monitor"])
        if "monitor_init" in h:  # the value at initialisation, plotted at epoch 0
            ep, mon = [0] + ep, [h["monitor_init"]] + mon
        axes[1, j].plot(ep, mon, marker="o", color="C1")
        axes[1, j].set_ylabel("val accuracy" if k == "supervised" else "k-NN val accuracy")
        axes[1, j].set_xlabel("epoch")
        axes[1, j].set_ylim(0, 1)
    fig.tight_layout()
    return fig
