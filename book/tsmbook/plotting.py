"""Every saliency figure of the book, in one style: overlays, the image x method grid, the component figure.

* :func:`display_name` -- the name a reader sees ("Multivec-EigenCAM", not ``multivec-eigencam``);
* :func:`overlay`, :func:`mask_outline`, :func:`to_numpy_image`, :func:`to_numpy_map` -- one panel;
* :func:`saliency_grid` -- images in rows, the image then one column per method (``style="paper"``:
  row labels on the left), or a flat gallery of images with optional maps; one colour bar;
* :func:`component_figure` -- the component maps ``|p_k|`` of each row with their weights ``sigma_k``
  (optionally the combined map last); one colour bar;
* :func:`metric_curves` -- one panel per evaluation metric: each method's mean and confidence band
  against a swept option (the ablation curves), metric axes labelled with unit and direction.

The rules (issue 14): titles and legends use display names, saliency is drawn in the perceptually
uniform :data:`tsmbook.style.SALIENCY_CMAP`, every map grid has a colour bar, maps are min-max
normalised and upsampled by :func:`tsmlib.methods.minmax_normalize` / :func:`tsmlib.methods.upsample`.
``tsmbook.viz``, ``tsmbook.figures`` and ``tsmbook.paper_figures`` keep their old names as thin aliases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from tsmlib.overlay import DEFAULT_CMAP, mask_outline, overlay, to_numpy_image, to_numpy_map

__all__ = ["DISPLAY_NAMES", "MODEL_DISPLAY_NAMES", "YARDSTICK_STYLES", "display_name", "to_numpy_image", "to_numpy_map", "overlay",
           "mask_outline", "saliency_grid", "component_figure", "metric_curves"]

#: Display names of the registry's methods (``tsmlib.available_methods()``).
DISPLAY_NAMES = {
    "eigencam": "EigenCAM", "tsm": "TSM", "multivec-eigencam": "Multivec-EigenCAM", "mtsm": "MTSM",
    "lafam": "LaFAM", "gradcam-eigencam": "EigenCAM (pytorch-grad-cam)", "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM", "hirescam": "HiResCAM",
    "whole-image": "Whole image", "centre-prior": "Centre prior",
    "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM",
}

#: Display names of the model registry's models (``tsmlib.available_models()``), for legends and titles.
MODEL_DISPLAY_NAMES = {
    "efficientnet_lite0": "EfficientNet-Lite0", "resnet50": "ResNet-50", "vgg16": "VGG-16",
    "dino_resnet50": "DINO ResNet-50", "swav_resnet50": "SwAV ResNet-50",
    "barlowtwins_resnet50": "Barlow Twins ResNet-50", "mocov2_resnet50": "MoCo v2 ResNet-50",
    "mocov3_resnet50": "MoCo v3 ResNet-50", "simclr_resnet50": "SimCLR ResNet-50",
    "synthetic_simclr": "SimCLR (synthetic)", "synthetic_barlow": "Barlow Twins (synthetic)",
    "synthetic_supervised": "supervised (synthetic)", "synthetic_random": "random weights (synthetic)",
}

#: Line styles of the yardsticks (``tsmlib.available_methods(family="yardstick")``) in curve figures: both
#: black, told apart by the dash pattern, so that they read as references and not as methods
#: (``ax.plot(x, y, label=display_name(name), **YARDSTICK_STYLES[name])``).
YARDSTICK_STYLES = {
    "whole-image": {"color": "black", "ls": ":", "lw": 1.8},
    "centre-prior": {"color": "black", "ls": "-.", "lw": 1.4},
}

_VARIANT = re.compile(r"^(?P<base>[^\[]+)\[(?P<options>.*)\]$")


def display_name(method: str) -> str:
    """The name a reader sees: ``"multivec-eigencam"`` -> ``"Multivec-EigenCAM"``, a variant
    ``"mtsm[k=5]"`` -> ``"MTSM (k=5)"``, ``"multivec_eigencam"`` (benchmark spelling) as well, and a
    method name followed by a qualifier (the benchmark's peers and options: ``"tsm (tensorly loop)"`` ->
    ``"TSM (tensorly loop)"``, ``"mtsm solver=svd"`` -> ``"MTSM solver=svd"``); any other text (already
    a display name) is returned unchanged. Model names of the registry read the same way
    (:data:`MODEL_DISPLAY_NAMES`: ``"efficientnet_lite0"`` -> ``"EfficientNet-Lite0"``, and its random-weight
    variant ``"efficientnet_lite0_random"`` -> ``"EfficientNet-Lite0 (random weights)"``)."""
    if not isinstance(method, str):
        return str(method)
    key = method.lower()
    if key in DISPLAY_NAMES:
        return DISPLAY_NAMES[key]
    if key.replace("-", "_") in MODEL_DISPLAY_NAMES:
        return MODEL_DISPLAY_NAMES[key.replace("-", "_")]
    if key.endswith("_random") and key[: -len("_random")] in MODEL_DISPLAY_NAMES:  # tsmlib.models.random_variant
        return f"{MODEL_DISPLAY_NAMES[key[: -len('_random')]]} (random weights)"
    if key.replace("_", "-") in DISPLAY_NAMES:
        return DISPLAY_NAMES[key.replace("_", "-")]
    m = _VARIANT.match(method)
    if m and m["base"].lower() in DISPLAY_NAMES:
        return f"{DISPLAY_NAMES[m['base'].lower()]} ({m['options'].replace(',', ', ')})"
    base, space, rest = method.partition(" ")
    if space and rest and base.lower().replace("_", "-") in DISPLAY_NAMES:  # "tsm (tensorly loop)", "mtsm solver=svd"
        return f"{DISPLAY_NAMES[base.lower().replace('_', '-')]} {rest}"
    if space and rest and base.lower().replace("-", "_") in MODEL_DISPLAY_NAMES:  # "resnet50 (random weights)"
        return f"{MODEL_DISPLAY_NAMES[base.lower().replace('-', '_')]} {rest}"
    return method


def display_label(label):
    """A table label as a reader sees it: a metric's code name becomes its display name with its unit
    (``"average_drop"`` -> ``"Average Drop (%)"``), a method or model name its :func:`display_name`; any
    other label (numbers, tuples, text) is returned unchanged."""
    if not isinstance(label, str):
        return label
    from tsmlib.evaluation.metric_registry import METRICS

    if label in METRICS:
        return METRICS[label].axis_label
    return display_name(label)


def names_in_words(names, *, last: str = ", ", empty: str = "none") -> str:
    """Method (or model, metric) names as a reader sees them in a sentence: display names joined by
    ``", "``, the last one by ``last`` (e.g. ``" and "``); ``empty`` when there are none.

    >>> names_in_words(["tsm", "multivec-eigencam", "mtsm"], last=" and ")
    'TSM, Multivec-EigenCAM and MTSM'
    >>> names_in_words([])
    'none'
    """
    words = [display_label(n) for n in names]
    if not words:
        return empty
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + last + words[-1]


def readable_table(df):
    """``df`` with every row and column label (all levels) passed through :func:`display_label`; the
    values are untouched. The book's chapters show every DataFrame this way (``tsmbook.style.setup``).

    >>> import pandas as pd
    >>> readable_table(pd.DataFrame({"average_drop": [1.0]}, index=["multivec-eigencam"])).to_dict()
    {'Average Drop (%)': {'Multivec-EigenCAM': 1.0}}
    """
    return df.rename(index=display_label, columns=display_label)


def _cmap(cmap: str | None) -> str:
    return cmap or DEFAULT_CMAP


# ------------------------------------------------------------------------------------------ panels
def _panel(ax, image: np.ndarray, saliency=None, outline: np.ndarray | None = None, *, alpha: float, cmap: str,
           normalize: bool) -> None:
    """One cell: the image, the map over it, the mask outline in white; no ticks, no frame."""
    shown = image if saliency is None else overlay(image, saliency, alpha=alpha, cmap=cmap, normalize=normalize)
    if outline is not None:
        if outline.shape != shown.shape[:2]:
            raise ValueError(f"a mask has shape {outline.shape}, its image {shown.shape[:2]}")
        shown = shown.copy()
        shown[outline] = (1.0, 1.0, 1.0)
    ax.imshow(shown)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _colorbar(fig, axes, cmap: str, label: str, n_rows: int, fontsize: float):
    import matplotlib as mpl

    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=cmap)
    cb = fig.colorbar(sm, ax=list(axes), shrink=min(0.9, 3.0 / n_rows + 0.3), pad=0.02, aspect=25)
    cb.set_label(label, fontsize=fontsize)
    cb.ax.tick_params(labelsize=fontsize - 1)
    return cb


def _check_lengths(n: int, **seqs) -> None:
    for name, seq in seqs.items():
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} images")


def _outlines(masks, i):
    return None if masks is None or masks[i] is None else mask_outline(masks[i])


# -------------------------------------------------------------------------------------------- grids
def saliency_grid(images: Sequence, maps: Mapping[str, Sequence] | Sequence | None = None,
                  masks: Sequence | None = None, row_titles: Sequence[str] | None = None, *,
                  style: str = "book", titles: Sequence[str] | None = None, ncols: int | None = None,
                  size: float | None = None, alpha: float = 0.5, cmap: str | None = None, normalize: bool = False,
                  colorbar: bool = True, colorbar_label: str = "saliency", title_fontsize: float = 8,
                  suptitle: str | None = None):
    """The one saliency grid of the book.

    Parameters
    ----------
    images : sequence of N images (PIL, (3, H, W) tensor or (H, W, 3) array)
    maps : dict method -> N maps, or sequence of N maps, or None
        A dict gives the *image x method* grid: a row per image, the image then one column per method,
        titled with :func:`display_name` of the key (a ``None`` map leaves its cell empty). A sequence
        (one map or None per image) or None gives a *gallery*: one panel per image, ``ncols`` per row,
        titled by ``titles``. Maps of another size are upsampled bilinearly to their image.
    masks : sequence of N (H, W) bool masks or None, optional
        White outlines on every panel of the image.
    row_titles : sequence of N str, optional
        Image x method grid: the label of each row, above its image (``style="book"``) or on its left
        (``style="paper"``, where the image column is titled "image").
    style : {"book", "paper"}
        The paper's look: row labels on the left and 9-pt column titles.
    titles, ncols
        Gallery only: a title per image; panels per row (default ``min(N, 6)``).
    size : float, optional
        Inches per cell (default 1.55, paper 1.7, gallery 2.4).
    normalize : bool
        Min-max normalise each map before drawing (default: maps are in [0, 1] already, e.g. from
        :func:`tsmlib.saliency`, and are drawn as they are).
    colorbar : bool
        One colour bar (0..1, ``colorbar_label``) for the whole grid when it draws any map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if style not in ("book", "paper"):
        raise ValueError(f"style must be 'book' or 'paper', got {style!r}")
    cmap = _cmap(cmap)
    n = len(images)
    if n == 0:
        raise ValueError("saliency_grid needs at least one image")
    _check_lengths(n, masks=masks, row_titles=row_titles, titles=titles)
    if maps is None or not isinstance(maps, Mapping):
        return _gallery(images, maps, masks, titles, ncols=ncols, size=size or 2.4, alpha=alpha, cmap=cmap,
                        normalize=normalize, colorbar=colorbar, colorbar_label=colorbar_label,
                        fontsize=title_fontsize + 1, suptitle=suptitle)
    if not maps:
        raise ValueError("saliency_grid needs at least one method in maps")
    for name, seq in maps.items():
        if len(seq) != n:
            raise ValueError(f"maps[{name!r}] has {len(seq)} maps for {n} images")
    paper = style == "paper"
    fontsize = 9 if paper else title_fontsize
    size = size or (1.7 if paper else 1.55)
    cols = list(maps)
    fig, axes = plt.subplots(n, len(cols) + 1, figsize=(size * (len(cols) + 1) + (0.6 if colorbar else 0),
                                                         size * n + 0.3 + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for i in range(n):
        img = to_numpy_image(images[i])
        outline = _outlines(masks, i)
        _panel(axes[i, 0], img, None, outline, alpha=alpha, cmap=cmap, normalize=normalize)
        if paper:
            if i == 0:
                axes[i, 0].set_title("image", fontsize=fontsize)
            if row_titles is not None:
                axes[i, 0].set_ylabel(row_titles[i], fontsize=fontsize - 1)
        elif row_titles is not None:
            axes[i, 0].set_title(row_titles[i], fontsize=fontsize)
        for j, col in enumerate(cols, start=1):
            sal = maps[col][i]
            if sal is None:
                axes[i, j].axis("off")
                continue
            _panel(axes[i, j], img, sal, outline, alpha=alpha, cmap=cmap, normalize=normalize)
            if i == 0:
                axes[i, j].set_title(display_name(col), fontsize=fontsize)
    if colorbar:
        _colorbar(fig, axes[:, -1], cmap, colorbar_label, n, fontsize)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _gallery(images, maps, masks, titles, *, ncols, size, alpha, cmap, normalize, colorbar, colorbar_label, fontsize,
             suptitle):
    import matplotlib.pyplot as plt

    n = len(images)
    _check_lengths(n, maps=maps)
    ncols = ncols or min(n, 6)
    nrows = -(-n // ncols)
    any_map = maps is not None and any(m is not None for m in maps)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + (0.6 if any_map and colorbar else 0),
                                                    size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        _panel(ax, to_numpy_image(images[i]), None if maps is None else maps[i], _outlines(masks, i), alpha=alpha,
               cmap=cmap, normalize=normalize)
        if titles is not None:
            ax.set_title(titles[i], fontsize=fontsize)
    if any_map and colorbar:
        _colorbar(fig, axes.flat, cmap, colorbar_label + (" (min-max)" if normalize else ""), nrows, fontsize)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def component_figure(images: Sequence, components, weights, *, combined: Sequence | None = None,
                     n: int | None = None, masks: Sequence | None = None, row_titles: Sequence[str] | None = None,
                     label: str = "p", size: float = 1.6, cmap: str | None = None, alpha: float = 0.5,
                     title_fontsize: float = 8, colorbar: bool = True):
    """The component maps of N rows with their weights: ``|p_k|`` (min-max normalised), titled with ``sigma_k``.

    Parameters
    ----------
    images : sequence of N images (PIL, tensor or array)
        The image of each row (the same image repeated for one row per method).
    components : (N, K, h, w) tensor, or sequence of N (K_i, h, w) tensors
        Signed component maps ``p_k`` (e.g. ``tsmlib.tsm_components(A, k=K).maps``).
    weights : (N, K) tensor, or sequence of N (K_i,) tensors
        Their weights ``sigma_k``; each title also gives ``sigma_k``'s share of the row's weights given
        (all K_i of them, also those not drawn).
    combined : sequence of N maps, optional
        The combined (multivector) map of each row, drawn last (min-max normalised).
    n : int, optional
        Components drawn per row (default all K_i; each row must hold at least ``n``).
    masks : sequence of N (H, W) bool masks or None, optional
        Outlines drawn on every panel of the row.
    row_titles : sequence of N str, optional
        The y label of each row's first panel (method names go through :func:`display_name`).

    Returns
    -------
    matplotlib.figure.Figure with N rows of ``n`` (+ 1 combined) panels and one colour bar.
    """
    import matplotlib.pyplot as plt

    from tsmlib.methods import minmax_normalize

    if isinstance(components, torch.Tensor) or isinstance(weights, torch.Tensor):
        if (not isinstance(components, torch.Tensor) or not isinstance(weights, torch.Tensor)
                or components.ndim != 4 or weights.ndim != 2 or components.shape[:2] != weights.shape):
            raise ValueError(f"expected components (N, K, h, w) and weights (N, K), got "
                             f"{tuple(getattr(components, 'shape', ()))} and {tuple(getattr(weights, 'shape', ()))}")
    rows = list(zip(components, weights))
    N = len(rows)
    if N != len(components) or N != len(weights):
        raise ValueError(f"components has {len(components)} rows, weights {len(weights)}")
    for r, (P, s) in enumerate(rows):
        if P.ndim != 3 or s.ndim != 1 or P.shape[0] != s.shape[0]:
            raise ValueError(f"row {r}: expected components (K, h, w) and weights (K,), got {tuple(P.shape)} "
                             f"and {tuple(s.shape)}")
        if n is not None and P.shape[0] < n:
            raise ValueError(f"row {r} holds {P.shape[0]} components, fewer than n={n}")
    if len(images) != N:
        raise ValueError(f"images has {len(images)} entries for {N} rows of components")
    for name, seq in (("masks", masks), ("row_titles", row_titles), ("combined", combined)):
        if seq is not None and len(seq) != N:
            raise ValueError(f"{name} has {len(seq)} entries for {N} rows of components")
    cmap = _cmap(cmap)
    K = n if n is not None else max(int(P.shape[0]) for P, _ in rows)
    ncols = K + (combined is not None)
    fig, axes = plt.subplots(N, ncols, figsize=(size * ncols + (0.3 if row_titles else 0) + (0.6 if colorbar else 0),
                                                (size + 0.45) * N), squeeze=False, layout="constrained")
    for i, (P, s) in enumerate(rows):
        img = to_numpy_image(images[i])
        outline = _outlines(masks, i)
        maps = minmax_normalize(P[:K].detach().abs().double().cpu())
        s = s.detach().double().cpu()
        share = s / s.sum().clamp_min(1e-300)
        for k in range(K):
            ax = axes[i, k]
            if k >= P.shape[0]:
                ax.axis("off")
                continue
            _panel(ax, img, maps[k], outline, alpha=alpha, cmap=cmap, normalize=False)
            ax.set_title(f"$|{label}_{{{k + 1}}}|$, $\\sigma_{{{k + 1}}}$ = {float(s[k]):.3g}\n"
                         f"({float(share[k]):.1%} of $\\Sigma\\sigma$)", fontsize=title_fontsize)
        if combined is not None:
            ax = axes[i, K]
            _panel(ax, img, combined[i], outline, alpha=alpha, cmap=cmap, normalize=True)
            ax.set_title("combined", fontsize=title_fontsize + 0.5, fontweight="bold")
        if row_titles is not None:
            axes[i, 0].set_ylabel(display_name(row_titles[i]), fontsize=title_fontsize + 1)
    if colorbar:
        _colorbar(fig, axes[:, -1], cmap, f"$|{label}_k|$, min-max", N, title_fontsize)
    return fig


# ----------------------------------------------------------------------------------- metric curves
def metric_curves(summary, x: str, metrics: Sequence[str], *, xlabel: str | None = None, invert: bool = False,
                  xticks: Sequence | None = None, xticklabels: Sequence[str] | None = None, logx: bool = False,
                  method_column: str = "method", metric_column: str = "metric", ncols: int = 3,
                  size: tuple[float, float] = (10.0, 6.0)):
    """One panel per metric: each method's mean against ``x``, with its confidence band.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per method, metric and value of ``x``, with the columns ``x``, ``method_column``,
        ``metric_column``, ``mean``, ``ci_low`` and ``ci_high`` (what
        :func:`tsmlib.evaluation.summarize` gives, with the swept option added as a column).
    x : str
        The column of the swept option (numbers).
    metrics : sequence of str
        Metric code names, one panel each, titled with their display name, unit and direction
        (:func:`tsmlib.evaluation.metric_registry.metric_label`).
    xlabel, invert, xticks, xticklabels, logx
        The x axis: its label (default ``x``), reversed, fixed ticks and their labels, log scale.
    ncols : int
        Panels per row; the panel after the last metric holds the legend (method display names).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from tsmlib.evaluation.metric_registry import metric_label

    metrics = list(metrics)
    missing = {x, method_column, metric_column, "mean", "ci_low", "ci_high"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks the columns {sorted(missing)}")
    if not metrics:
        raise ValueError("metrics is empty: nothing to draw")
    nrows = -(-(len(metrics) + 1) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=size, sharex=True, squeeze=False)
    axes, legend_ax = grid.flat[:len(metrics)], grid.flat[-1]
    for ax in grid.flat[len(metrics):]:
        ax.axis("off")
    methods = sorted(summary[method_column].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    for ax, metric in zip(axes, metrics):
        part = summary[summary[metric_column] == metric].sort_values(x)
        for method, group in part.groupby(method_column):
            ax.plot(group[x], group["mean"], marker="o", ms=4, color=palette[method], label=display_name(method))
            ax.fill_between(group[x], group["ci_low"], group["ci_high"], color=palette[method], alpha=0.2)
        ax.set_title(metric_label(metric), fontsize=9)
        ax.set_xlabel(xlabel or x)
        ax.xaxis.set_tick_params(labelbottom=True)
        if logx:
            ax.set_xscale("log")
        if xticks is not None:
            ax.set_xticks(list(xticks))
            ax.set_xticklabels(list(xticklabels) if xticklabels is not None else [str(t) for t in xticks])
            ax.minorticks_off()
        if invert:
            ax.invert_xaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", fontsize=10, title="method")
    return fig
