"""Every figure of the book, each kind once, in one style.

* :func:`saliency_grid` -- images in rows, the image then one column per method (``style="paper"``: the
  paper's look, row labels on the left), or a gallery of images with optional maps; one colour bar;
* :func:`component_figure` -- the component maps ``|p_k|`` of each row with their weights ``sigma_k``
  (optionally the combined map last); one colour bar;
* :func:`metric_curves` -- one panel per metric: each method's mean and confidence band against a swept
  option (the ablation curves);
* :func:`plot_method_schematic` -- the paper's method schematic drawn from one real feature tensor (its
  tensors: :func:`tsmbook.analysis.schematic_tensors`);
* :func:`metric_bars` -- grouped bars with confidence intervals, one panel per metric;
* :func:`cost_plot` -- time per map against the size of the feature tensor;
* :func:`data_card` -- every photo with its mask, boxes and labels;
* :func:`plot_samples`, :func:`plot_training_curves` -- the synthetic benchmark's scenes and training curves.

The rules (issues 14 and 19): titles and legends use display names (:mod:`tsmbook.names`), saliency is
drawn in the perceptually uniform :data:`tsmbook.style.SALIENCY_CMAP`, every map grid has a colour bar,
maps are min-max normalised and upsampled by :func:`tsmlib.methods.minmax_normalize` /
:func:`tsmlib.methods.upsample`, one panel is :func:`tsmlib.overlay.overlay`; and no text is smaller than
about 9 px on a 1280-px page (:func:`readable_size`: at least 8 pt, more for a figure wider than the page's
column; :func:`smallest_text` and :func:`text_px` measure it, for every figure a chapter shows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tsmlib.evaluation import METRICS, PAPER_METRICS, metric_info, metric_label
from tsmlib.overlay import DEFAULT_CMAP, mask_outline, overlay, to_numpy_image

from .names import display_name

__all__ = ["YARDSTICK_STYLES", "readable_size", "smallest_text", "text_px", "fit_text", "saliency_grid",
           "component_figure", "metric_curves", "plot_method_schematic", "metric_bars", "cost_plot", "data_card", "plot_samples", "plot_training_curves"]

#: Width in pixels of a figure in the book's text column on a 1280-px page, and in a cell tagged
#: ``full-width`` (measured in headless Chromium on the built site), and the smallest text height a
#: reader should have to read there (issue 19).
COLUMN_PX = 660
FULL_WIDTH_PX = 903
MIN_TEXT_PX = 9
#: The smallest font size of any figure, in points (about 11 px at the book's 100 dpi when not shrunk).
MIN_FONT_PT = 8.0


def readable_size(width: float, size: float = MIN_FONT_PT, column_px: int = COLUMN_PX) -> float:
    """The font size (pt) to use for text meant at ``size`` pt in a figure ``width`` inches wide: at least
    ``size`` and :data:`MIN_FONT_PT`, and large enough that a figure wider than the text column, shrunk to
    ``column_px`` pixels, still shows it :data:`MIN_TEXT_PX` pixels high (``9 * 72 * width / 660`` pt; the
    dpi cancels out).

    >>> readable_size(6.0), round(readable_size(11.0), 2)
    (8.0, 10.8)
    """
    return max(float(size), MIN_FONT_PT, MIN_TEXT_PX * 72.0 * float(width) / column_px)


def _visible_texts(fig) -> list:
    """Every non-empty text a drawn ``fig`` shows: the artist tree without what a hidden artist hides (a
    hidden panel's labels)."""
    import matplotlib.text

    texts, stack = [], [fig]
    while stack:
        artist = stack.pop()
        if not artist.get_visible():
            continue
        stack.extend(artist.get_children())
        if isinstance(artist, matplotlib.text.Text) and artist.get_text().strip():
            texts.append(artist)
    return texts


def smallest_text(fig, keep: int = 4) -> dict | None:
    """The smallest visible text of a drawn figure: ``{"pt": size, "texts": [up to keep texts of that
    size]}``, or None for a figure without text. Titles, labels, tick labels, legends, colour bars and
    annotations count; empty and invisible ones do not."""
    fig.canvas.draw()
    sizes: dict[float, list[str]] = {}
    for t in _visible_texts(fig):
        sizes.setdefault(round(float(t.get_fontsize()), 2), []).append(" ".join(t.get_text().split())[:40])
    if not sizes:
        return None
    pt = min(sizes)
    return {"pt": pt, "texts": sorted(set(sizes[pt]))[:keep]}


def fit_text(fig, column_px: int = COLUMN_PX, rounds: int = 4):
    """Enlarge every text of ``fig`` that would be under :data:`MIN_TEXT_PX` pixels high once the figure,
    saved as a notebook shows it (tight box, ``fig.dpi``), is shrunk to a ``column_px``-wide column; returns
    ``fig``. Larger text widens a figure with outside legends or colour bars, so it measures again, up to
    ``rounds`` times. Call it last, on a figure laid out with ``layout="constrained"``.
    """
    pad = 2 * 0.1  # savefig's pad_inches on both sides
    for _ in range(rounds):
        fig.canvas.draw()
        image_px = (fig.get_tightbbox(fig.canvas.get_renderer()).width + pad) * fig.dpi
        need = MIN_TEXT_PX / text_px(1.0, fig.dpi, image_px, column_px)  # the size that shows MIN_TEXT_PX
        small = [t for t in _visible_texts(fig) if t.get_fontsize() < need - 1e-6]
        if not small:
            break
        for t in small:
            t.set_fontsize(need * 1.02)
    return fig


def text_px(pt: float, dpi: float, image_px: int, column_px: int = COLUMN_PX) -> float:
    """How many screen pixels high text of ``pt`` points is in a figure saved at ``dpi`` as an image
    ``image_px`` pixels wide, shown in a column ``column_px`` wide (shrunk to it when wider, never enlarged).

    >>> text_px(9, 100, 500), text_px(9, 100, 1320)
    (12.5, 6.25)
    """
    if image_px <= 0 or dpi <= 0:
        raise ValueError(f"image_px and dpi must be positive, got {image_px} and {dpi}")
    return pt * dpi / 72.0 * min(1.0, column_px / image_px)


#: What labels, colour bar and padding add to a grid's width once saved with a tight box, in inches: the
#: grids size their text for it up front, so that titles wrap at the size :func:`fit_text` would give them.
_MARGIN_IN = 0.9


def _wrap(title: str, width: float, fontsize: float) -> str:
    """``title`` broken after a space or hyphen where it would be wider than ``width`` inches at ``fontsize``
    (about 0.55 em per character): "Multivec-EigenCAM" in a narrow column reads "Multivec-\nEigenCAM"."""
    fits = max(4, int(width * 72.0 / (0.55 * fontsize)))
    lines = []
    for line in str(title).split("\n"):
        while len(line) > fits:
            cut = max(line.rfind(" ", 0, fits + 1), line.rfind("-", 0, fits))
            if cut <= 0:
                break
            head, line = (line[:cut], line[cut + 1:]) if line[cut] == " " else (line[:cut + 1], line[cut + 1:])
            lines.append(head)
        lines.append(line)
    return "\n".join(lines)


#: Line styles of the yardsticks (``tsmlib.available_methods(family="yardstick")``) in curve figures: both
#: black, told apart by the dash pattern, so that they read as references and not as methods
#: (``ax.plot(x, y, label=display_name(name), **YARDSTICK_STYLES[name])``).
YARDSTICK_STYLES = {
    "whole-image": {"color": "black", "ls": ":", "lw": 1.8},
    "centre-prior": {"color": "black", "ls": "-.", "lw": 1.4},
}


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
    cb.ax.tick_params(labelsize=fontsize)
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
                  colorbar: bool = True, colorbar_label: str = "saliency", title_fontsize: float | None = None,
                  suptitle: str | None = None, column_px: int = COLUMN_PX):
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
        The paper's look: row labels on the left, the image column titled "image".
    titles, ncols
        Gallery only: a title per image; panels per row (default ``min(N, 6)``).
    size : float, optional
        Inches per cell (default 1.55, paper 1.7, gallery 2.4).
    normalize : bool
        Min-max normalise each map before drawing (default: maps are in [0, 1] already, e.g. from
        :func:`tsmlib.saliency`, and are drawn as they are).
    colorbar : bool
        One colour bar (0..1, ``colorbar_label``) for the whole grid when it draws any map.
    title_fontsize : float, optional
        Font size of the titles (default and at least :func:`readable_size` of the figure's width); long
        titles break after a space or hyphen to fit their column.
    column_px : int
        Width of the page column the figure is shown in (:data:`FULL_WIDTH_PX` for a cell tagged
        ``full-width``); every text is sized to be readable there (:func:`fit_text`).

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
                        fontsize=title_fontsize, suptitle=suptitle, column_px=column_px)
    if not maps:
        raise ValueError("saliency_grid needs at least one method in maps")
    for name, seq in maps.items():
        if len(seq) != n:
            raise ValueError(f"maps[{name!r}] has {len(seq)} maps for {n} images")
    paper = style == "paper"
    size = size or (1.7 if paper else 1.55)
    cols = list(maps)
    width = size * (len(cols) + 1) + (0.6 if colorbar else 0)
    fontsize = readable_size(width + _MARGIN_IN, title_fontsize or 9, column_px)
    fig, axes = plt.subplots(n, len(cols) + 1, figsize=(width, size * n + 0.3 + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for i in range(n):
        img = to_numpy_image(images[i])
        outline = _outlines(masks, i)
        _panel(axes[i, 0], img, None, outline, alpha=alpha, cmap=cmap, normalize=normalize)
        if paper:
            if i == 0:
                axes[i, 0].set_title("image", fontsize=fontsize)
            if row_titles is not None:
                axes[i, 0].set_ylabel(_wrap(row_titles[i], size, fontsize), fontsize=fontsize)
        elif row_titles is not None:
            axes[i, 0].set_title(_wrap(row_titles[i], size, fontsize), fontsize=fontsize)
        for j, col in enumerate(cols, start=1):
            sal = maps[col][i]
            if sal is None:
                axes[i, j].axis("off")
                continue
            _panel(axes[i, j], img, sal, outline, alpha=alpha, cmap=cmap, normalize=normalize)
            if i == 0:
                axes[i, j].set_title(_wrap(display_name(col), size, fontsize), fontsize=fontsize)
    if colorbar:
        _colorbar(fig, axes[:, -1], cmap, colorbar_label, n, fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=readable_size(width, 11, column_px))
    return fit_text(fig, column_px)


def _gallery(images, maps, masks, titles, *, ncols, size, alpha, cmap, normalize, colorbar, colorbar_label, fontsize,
             suptitle, column_px):
    import matplotlib.pyplot as plt

    n = len(images)
    _check_lengths(n, maps=maps)
    ncols = ncols or min(n, 6)
    nrows = -(-n // ncols)
    any_map = maps is not None and any(m is not None for m in maps)
    width = size * ncols + (0.6 if any_map and colorbar else 0)
    fontsize = readable_size(width + _MARGIN_IN, fontsize or 9, column_px)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        _panel(ax, to_numpy_image(images[i]), None if maps is None else maps[i], _outlines(masks, i), alpha=alpha,
               cmap=cmap, normalize=normalize)
        if titles is not None:
            ax.set_title(_wrap(titles[i], size, fontsize), fontsize=fontsize)
    if any_map and colorbar:
        _colorbar(fig, axes.flat, cmap, colorbar_label + (" (min-max)" if normalize else ""), nrows, fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=readable_size(width, 11, column_px))
    return fit_text(fig, column_px)


def component_figure(images: Sequence, components, weights, *, combined: Sequence | None = None,
                     n: int | None = None, masks: Sequence | None = None, row_titles: Sequence[str] | None = None,
                     label: str = "p", size: float = 1.6, cmap: str | None = None, alpha: float = 0.5,
                     title_fontsize: float | None = None, colorbar: bool = True, column_px: int = COLUMN_PX):
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
    title_fontsize : float, optional
        Font size of the titles (default and at least :func:`readable_size` of the figure's width).
    column_px : int
        Width of the page column the figure is shown in (:data:`FULL_WIDTH_PX` for a full-width cell).

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
    width = size * ncols + (0.3 if row_titles else 0) + (0.6 if colorbar else 0)
    fontsize = readable_size(width + _MARGIN_IN, title_fontsize or 9, column_px)
    fig, axes = plt.subplots(N, ncols, figsize=(width, (size + 0.1 + 0.07 * fontsize) * N), squeeze=False,
                             layout="constrained")
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
            ax.set_title(f"$|{label}_{{{k + 1}}}|$\n{float(share[k]):.1%} of $\\Sigma\\sigma$\n"
                         f"$\\sigma_{{{k + 1}}}$ = {float(s[k]):.3g}", fontsize=fontsize)
        if combined is not None:
            ax = axes[i, K]
            _panel(ax, img, combined[i], outline, alpha=alpha, cmap=cmap, normalize=True)
            ax.set_title("combined", fontsize=fontsize, fontweight="bold")
        if row_titles is not None:
            axes[i, 0].set_ylabel(_wrap(display_name(row_titles[i]), size, fontsize), fontsize=fontsize)
    if colorbar:
        _colorbar(fig, axes[:, -1], cmap, f"$|{label}_k|$, min-max", N, fontsize)
    return fit_text(fig, column_px)


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
        (:func:`tsmlib.evaluation.metric_label`).
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
        ax.set_title(metric_label(metric), fontsize=readable_size(size[0], 9))
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
    legend_ax.legend(handles, labels, loc="center", fontsize=readable_size(size[0], 10), title="method")
    return fit_text(fig)


# ------------------------------------------------------------------------------- the paper's figures
def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _stack(ax, maps: Sequence[np.ndarray], cmap: str, label: str, fontsize: float, offset: float = 0.22):
    """Draw (h, w) maps as a receding stack of slices on one axis."""
    n = len(maps)
    h, w = maps[0].shape
    for i, m in reversed(list(enumerate(maps))):
        x0, y0 = i * offset * w, i * offset * h
        ax.imshow(m, cmap=cmap, extent=(x0, x0 + w, y0, y0 + h), interpolation="nearest", zorder=n - i)
        ax.add_patch(_rect((x0, y0), w, h, zorder=n - i + 0.5))
    ax.set_xlim(-0.5, w * (1 + offset * (n - 1)) + 0.5)
    ax.set_ylim(-0.5, h * (1 + offset * (n - 1)) + 0.5)
    ax.set_aspect("equal")
    _off(ax)
    ax.set_title(label, fontsize=fontsize)


def _rect(xy, w, h, zorder=1):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor="black", linewidth=0.8, zorder=zorder)


def _ticks_right(ax, fontsize: float):
    """Tick labels on the right, so that the arrow coming in from the left meets a clean edge; few of them."""
    from matplotlib.ticker import MaxNLocator, NullFormatter

    ax.yaxis.tick_right()
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(2, integer=True))
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.tick_params(labelsize=fontsize)


def _heat(ax, m, title, fontsize, cmap="viridis", aspect="equal", vmin=None, vmax=None, symmetric=False):
    m = np.asarray(m, dtype=np.float64)
    if symmetric:
        vmax = float(np.abs(m).max()) or 1.0
        vmin, cmap = -vmax, "RdBu_r"
    im = ax.imshow(m, cmap=cmap, aspect=aspect, interpolation="nearest", vmin=vmin, vmax=vmax)
    _off(ax)
    ax.set_title(title, fontsize=fontsize)
    return im


def _overlay(ax, image, m, title, fontsize, cmap=None):
    ax.imshow(overlay(image, m, alpha=0.5, cmap=cmap))
    _off(ax)
    ax.set_title(title, fontsize=fontsize)


def _extent(fig, axes):
    """Union of the drawn extents (tick labels and titles included) of ``axes``, in figure coordinates."""
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()) for ax in axes]
    return min(b.x0 for b in boxes), max(b.x1 for b in boxes)


def _arrow(fig, cell_from, cell_to, axes_from, axes_to, text, fontsize):
    """An arrow from the drawn right edge of one group of axes to the left edge of the next, at the height
    of the middle of the gridspec cell ``cell_from``."""
    a, b = cell_from.get_position(fig), cell_to.get_position(fig)
    x0, x1 = _extent(fig, axes_from)[1], _extent(fig, axes_to)[0]
    y = (a.y0 + a.y1) / 2
    fig.patches.append(_farrow(fig, (x0 + 0.002, y), (x1 - 0.002, y)))
    if text:
        fig.text((x0 + x1) / 2, y - 0.012, text, ha="center", va="top", fontsize=fontsize)


def _farrow(fig, start, end):
    from matplotlib.patches import FancyArrowPatch

    return FancyArrowPatch(start, end, transform=fig.transFigure, arrowstyle="-|>", mutation_scale=12,
                           color="0.25", linewidth=1.2)


def plot_method_schematic(image, tensors: Mapping, *, n_slices: int = 6, n_show: int = 4, cmap: str | None = None,
                          width: float = 15.0):
    """The method schematic: TSM, EigenCAM and the multivector combination on one real feature tensor.

    Parameters
    ----------
    image : tensor or array
        The input image, (3, S, S) or (S, S, 3) in [0, 1].
    tensors : dict
        The output of :func:`schematic_tensors` for this image's feature tensor.
    n_slices : int
        Channel maps drawn in the feature-tensor stack (the most active channels).
    n_show : int
        Components drawn in the multivector row (at most the number held in ``tensors``).
    cmap : str, optional
        Colour map of the saliency maps (default :data:`tsmbook.style.SALIENCY_CMAP`).
    width : float
        Figure width in inches; every text is :func:`readable_size` of it.

    Returns
    -------
    matplotlib.figure.Figure
        Three rows (TSM, EigenCAM, multivector) of six panels linked by arrows.
    """
    import matplotlib.pyplot as plt
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    from .style import SALIENCY_CMAP

    cmap = cmap or SALIENCY_CMAP
    missing = {"F", "unfolding", "core", "U1", "U2", "U3", "w", "weighted_sum", "tsm", "centred", "svd_S",
               "svd_V", "eigencam", "tsm_components", "tsm_sigma", "eigencam_components", "eigencam_sigma",
               "mtsm", "multivec_eigencam"} - set(tensors)
    if missing:
        raise KeyError(f"tensors lacks {sorted(missing)}; build it with schematic_tensors(F)")
    n_show = min(n_show, tensors["tsm_components"].shape[0])
    F = tensors["F"].numpy()
    C, H, W = F.shape
    K = tensors["core"].shape[0]
    top = np.argsort(-F.reshape(C, -1).sum(axis=1))[:n_slices]
    slices = [F[c] for c in top]
    up = lambda m: torch.as_tensor(m)  # noqa: E731 - the overlay resizes bilinearly

    fs = readable_size(width)
    # hand-placed axes: no layout engine. An explicit placeholder, since layout="none" becomes the rc default
    # (the house style's constrained layout) once a savefig with bbox_inches="tight" restores it
    fig = plt.figure(figsize=(width, width * 0.72), layout=PlaceHolderLayoutEngine(True, True))
    outer = fig.add_gridspec(3, 6, left=0.02, right=0.97, top=0.90, bottom=0.05, wspace=1.15, hspace=0.95,
                             width_ratios=[1.15, 0.8, 1.5, 1.0, 0.9, 0.9])
    # Row 1: TSM
    r = [fig.add_subplot(outer[0, j]) for j in (0, 1)]
    _stack(r[0], slices, "magma", f"feature tensor $F$\n{C}×{H}×{W} (top {n_slices} channels)", fs)
    _heat(r[1], tensors["unfolding"].numpy(), f"mode-1 unfolding $F_{{(1)}}$\n{C}×{H * W}", fs, cmap="magma",
          aspect="auto")
    tk = outer[0, 2].subgridspec(2, 3, wspace=0.35, hspace=0.6, width_ratios=[0.6, 1, 1])
    ax_u1 = fig.add_subplot(tk[:, 0])
    _heat(ax_u1, tensors["U1"].numpy(), f"$U_1$ {C}×{K}", fs, aspect="auto", symmetric=True)
    ax_core = fig.add_subplot(tk[:, 1])
    core = tensors["core"].numpy()
    _stack(ax_core, [np.abs(core[k]) for k in range(min(4, K))], "viridis",
           f"core $|G|$\n{K}×{H}×{W}\n(k = 1..4)", fs, offset=0.25)
    ax_u2, ax_u3 = fig.add_subplot(tk[0, 2]), fig.add_subplot(tk[1, 2])
    _heat(ax_u2, tensors["U2"].numpy(), f"$U_2$ {H}×{H}", fs, symmetric=True)
    _heat(ax_u3, tensors["U3"].numpy(), f"$U_3$ {W}×{W}", fs, symmetric=True)
    tucker_axes = [ax_u1, ax_core, ax_u2, ax_u3]
    ax_w = fig.add_subplot(outer[0, 3])
    w = tensors["w"].numpy()
    ax_w.plot(np.arange(C), w, lw=0.6, color="C0")
    ax_w.axhline(0, color="0.5", lw=0.5)
    ax_w.set_title("channel weights $w$\n(first column of $U_1$)", fontsize=fs)
    ax_w.set_xlabel("channel c", fontsize=fs)
    _ticks_right(ax_w, fs)
    ax_sum = fig.add_subplot(outer[0, 4])
    im = _heat(ax_sum, np.abs(tensors["weighted_sum"].numpy()), "$|\\Sigma_c\\, w_c F_c|$" + f"  ({H}×{W})", fs, cmap=cmap)
    fig.colorbar(im, ax=ax_sum, orientation="horizontal", fraction=0.06, pad=0.04).ax.tick_params(labelsize=fs)
    ax_tsm = fig.add_subplot(outer[0, 5])
    _overlay(ax_tsm, image, up(tensors["tsm"]), f"{display_name('tsm')}, upsampled", fs, cmap)

    # Row 2: EigenCAM
    e0 = fig.add_subplot(outer[1, 0])
    _stack(e0, slices, "magma", f"feature tensor $F$\n{C}×{H}×{W}", fs)
    e1 = fig.add_subplot(outer[1, 1])
    _heat(e1, tensors["centred"].numpy(), f"centred matrix $M$\n{H * W}×{C}", fs, aspect="auto", symmetric=True)
    sv = outer[1, 2].subgridspec(1, 2, wspace=0.9)
    e2 = fig.add_subplot(sv[0, 0])
    s = tensors["svd_S"].numpy()
    s = s[s > s.max() * 1e-8]  # the centred matrix has rank <= H*W - 1: its last value is ~0
    e2.semilogy(np.arange(1, len(s) + 1), s, ".-", ms=3, lw=0.8, color="C1")
    e2.set_title("SVD $M = U S V^T$:\nvalues $s_k$", fontsize=fs)
    e2.set_xlabel("k", fontsize=fs)
    _ticks_right(e2, fs)
    e2b = fig.add_subplot(sv[0, 1])
    nv = min(10, tensors["svd_V"].shape[1])
    _heat(e2b, tensors["svd_V"].numpy()[:, :nv], f"$V$, first {nv}\nof {tensors['svd_V'].shape[1]}", fs, aspect="auto",
          symmetric=True)
    e3 = fig.add_subplot(outer[1, 3])
    e3.plot(np.arange(C), tensors["svd_V"].numpy()[:, 0], lw=0.6, color="C1")
    e3.axhline(0, color="0.5", lw=0.5)
    e3.set_title("channel weights $v_1$", fontsize=fs)
    e3.set_xlabel("channel c", fontsize=fs)
    _ticks_right(e3, fs)
    e4 = fig.add_subplot(outer[1, 4])
    im = _heat(e4, tensors["eigencam"].numpy(), "ReLU$(M v_1)$, min-max", fs, cmap=cmap, vmin=0, vmax=1)
    fig.colorbar(im, ax=e4, orientation="horizontal", fraction=0.06, pad=0.04).ax.tick_params(labelsize=fs)
    e5 = fig.add_subplot(outer[1, 5])
    _overlay(e5, image, up(tensors["eigencam"]), f"{display_name('eigencam')}, upsampled", fs, cmap)

    # Row 3: multivector combination
    comp = outer[2, 0:3].subgridspec(2, n_show, wspace=0.08, hspace=0.75)
    axes_c = []
    for row, (key, name) in enumerate((("tsm_components", "mtsm"), ("eigencam_components", "multivec-eigencam"))):
        sig = tensors["tsm_sigma" if row == 0 else "eigencam_sigma"].numpy()
        for k in range(n_show):
            ax = fig.add_subplot(comp[row, k])
            _heat(ax, np.abs(tensors[key][k].numpy()), f"$|p_{{{k + 1}}}|$\n$\\sigma_{{{k + 1}}}$ = {sig[k]:.3g}",
                  fs, cmap=cmap)
            if k == 0:
                ax.set_ylabel(_wrap(display_name(name), 1.0, fs), fontsize=fs)
            axes_c.append(ax)
    m3 = fig.add_subplot(outer[2, 3])
    for key, name, colour in (("tsm_sigma", "Tucker core $\\|G[k, :, :]\\|_F$", "C0"),
                              ("eigencam_sigma", "centred SVD $s_k$", "C1")):
        sig = tensors[key].numpy()[:12]
        m3.bar(np.arange(1, len(sig) + 1) + (-0.2 if colour == "C0" else 0.2), sig / sig[0], width=0.4,
               color=colour, label=name)
    m3.set_title(f"weights $\\sigma_k / \\sigma_1$ (first 12 of {K})", fontsize=fs)
    m3.set_xlabel("component k", fontsize=fs)
    m3.legend(fontsize=fs, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=1, handlelength=1)
    _ticks_right(m3, fs)
    m4 = fig.add_subplot(outer[2, 4])
    _overlay(m4, image, up(tensors["multivec_eigencam"]), display_name("multivec-eigencam"), fs, cmap)
    m5 = fig.add_subplot(outer[2, 5])
    _overlay(m5, image, up(tensors["mtsm"]), display_name("mtsm"), fs, cmap)

    fig.canvas.draw()  # fixes the aspect-constrained axes, so that their drawn extents are known
    cells = {0: [[r[0]], [r[1]], tucker_axes, [ax_w], [ax_sum], [ax_tsm]],
             1: [[e0], [e1], [e2, e2b], [e3], [e4], [e5]],
             2: [axes_c, [m3], [m4]]}
    texts = {0: ["unfold", "Tucker\n(HOOI)", "first\ncolumn", "weighted\nsum,\n|.|", "min-max,\nupsample"],
             1: ["centre,\ntranspose", "SVD", "first\nright\nvector", "$M v_1$,\nReLU,\nmin-max", "upsample"],
             2: ["weights", "$\\Sigma_k\\,\\sigma_k$\n$N(|p_k|)$"]}
    for row, groups in cells.items():
        for j, t in enumerate(texts[row]):
            _arrow(fig, outer[row, 0], outer[row, 0], groups[j], groups[j + 1], t, fs)
    for r, name in enumerate(("(a) TSM: Tucker decomposition of the feature tensor",
                              "(b) EigenCAM: SVD of the centred matricised feature maps",
                              "(c) Multivector: all components, weighted by their singular values")):
        y = outer[r, 0].get_position(fig).y1
        fig.text(0.01, y + 0.06, name, fontsize=fs + 2, fontweight="bold", ha="left", va="bottom")
    return fit_text(fig, FULL_WIDTH_PX)


def metric_bars(summary, metrics: Sequence[str] = PAPER_METRICS, *,
                methods: Sequence[str] | None = None, hue: str | None = None, hue_order: Sequence | None = None,
                ncols: int | None = None, size: tuple[float, float] = (3.4, 2.9), title: str | None = None):
    """Grouped bar charts with confidence intervals, one panel per metric.

    Parameters
    ----------
    summary : pandas.DataFrame
        The output of :func:`tsmlib.evaluation.summarize`: columns ``method``, ``metric``, ``mean``,
        ``ci_low``, ``ci_high`` (and ``hue`` if given).
    metrics : sequence of str
        Metrics drawn, one panel each, in this order.
    methods : sequence of str, optional
        Methods on the x axis, in this order (default: as they appear).
    hue : str, optional
        A column (e.g. ``"model"``) whose values become side-by-side bars within each method.
    ncols : int, optional
        Panels per row (default: all in one row).
    size : (float, float)
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    need = {"method", "metric", "mean", "ci_low", "ci_high"} | ({hue} if hue else set())
    missing = need - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s) {sorted(missing)}; pass tsmlib.evaluation.summarize(results)")
    s = summary[summary["metric"].isin(metrics)]
    absent = [m for m in metrics if m not in set(s["metric"])]
    if absent:
        raise ValueError(f"no rows for metric(s) {absent} in the summary")
    keys = ["metric", "method"] + ([hue] if hue else [])
    if s.duplicated(keys).any():
        raise ValueError(f"the summary has several rows per {' x '.join(keys)}; select one configuration first "
                         "or split the bars by a column with hue=...")
    methods = list(methods) if methods is not None else list(dict.fromkeys(s["method"]))
    groups = list(hue_order) if hue_order is not None else (list(dict.fromkeys(s[hue])) if hue else [None])
    palette = sns.color_palette("colorblind", max(len(groups), len(methods)))
    ncols = len(metrics) if ncols is None else max(1, min(int(ncols), len(metrics)))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False,
                             layout="constrained")
    fs = readable_size(size[0] * ncols + (1.5 if hue else 0))
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    width = 0.8 / len(groups)
    for ax, metric in zip(axes.flat, metrics):
        for g, group in enumerate(groups):
            rows = s[s["metric"] == metric] if hue is None else s[(s["metric"] == metric) & (s[hue] == group)]
            rows = rows.set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (g - (len(groups) - 1) / 2) * width
            mean = rows["mean"].to_numpy(dtype=float)
            err = np.vstack([mean - rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float) - mean])
            colours = palette[g] if hue else [palette[i] for i in range(len(methods))]
            ax.bar(x, mean, width=width * 0.95, color=colours, label=None if group is None else str(group))
            ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="none", ecolor="0.2", elinewidth=0.9, capsize=2)
        ax.set_xticks(np.arange(len(methods)))
        ax.set_xticklabels([display_name(m) for m in methods], rotation=40, ha="right", fontsize=fs)
        ax.set_title(metric_info(metric).label if metric in METRICS else metric, fontsize=max(fs, 9))
        ax.tick_params(axis="y", labelsize=fs)
    if hue:
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside right center", fontsize=fs, title=hue, title_fontsize=fs)
    if title:
        fig.suptitle(title, fontsize=max(fs, 10))
    return fit_text(fig)


def cost_plot(timings, *, size: tuple[float, float] = (6.4, 3.8)):
    """Time per map for each feature-tensor shape, one line per method, log time axis.

    Parameters
    ----------
    timings : pandas.DataFrame
        Rows of :func:`tsmbook.benchmark.benchmark_methods` (``method``, ``shape`` "CxHxW", ``batch``,
        ``ms_per_batch``). Shapes go on the x axis in order of their number of elements C*H*W (equally
        spaced, labelled with the shape and the count); time per map = ``ms_per_batch / batch``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    need = {"method", "shape", "batch", "ms_per_batch"}
    if need - set(timings.columns):
        raise ValueError(f"timings lacks column(s) {sorted(need - set(timings.columns))}; "
                         "pass tsmbook.benchmark.benchmark_methods(...) rows")
    if timings.empty:
        raise ValueError("timings is empty")
    df = timings.copy()
    df["elements"] = df["shape"].map(lambda s: int(np.prod([int(v) for v in str(s).split("x")])))
    df["ms_per_map"] = df["ms_per_batch"] / df["batch"]
    shapes = df.drop_duplicates("shape").sort_values(["elements", "shape"])["shape"].tolist()
    position = {shape: i for i, shape in enumerate(shapes)}
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    methods = list(dict.fromkeys(df["method"]))
    palette = sns.color_palette("colorblind", len(methods))
    markers = "osD^vP*Xh<>"
    for i, method in enumerate(methods):
        rows = df[df["method"] == method].groupby("shape", sort=False)["ms_per_map"].median()
        rows = rows.reindex([s for s in shapes if s in rows.index])
        ax.plot([position[s] for s in rows.index], rows.to_numpy(), marker=markers[i % len(markers)],
                color=palette[i], label=display_name(method))
    ax.set_yscale("log")
    ax.set_xticks(range(len(shapes)))
    elements = df.drop_duplicates("shape").set_index("shape")["elements"]
    fs = readable_size(size[0])
    ax.set_xticklabels([f"{s}\n({elements[s]:,})" for s in shapes], fontsize=fs)
    ax.set_xlabel("feature tensor C×H×W (number of elements)")
    ax.set_ylabel("ms per map (log scale)")
    ax.legend(fontsize=fs, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fit_text(fig)


# ---------------------------------------------------------------------------------------- the data
def data_card(samples, ncols: int = 6, size: float = 2.4):
    """Every photo with its mask outline (white), boxes (yellow) and labels: the photo set's data card.

    Parameters
    ----------
    samples : sequence of :class:`tsmlib.data.Sample`
        E.g. ``tsmlib.data.load_photos()``.
    """
    import matplotlib.patches as patches

    titles = []
    for s in samples:
        label = ", ".join(s.classes[:2]) if s.classes else "/".join(s.box_labels[:2])
        titles.append(f"{s.name}\n{label}")
    fig = saliency_grid([s.image for s in samples], None, [s.mask for s in samples], titles=titles, ncols=ncols,
                        size=size)
    for ax, s in zip(fig.axes, samples):
        for (x0, y0, x1, y1) in s.boxes:
            ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                           edgecolor="yellow", linewidth=1.0, linestyle="--"))
    return fit_text(fig)


# ------------------------------------------------------------------------- the synthetic benchmark


def plot_samples(data, n: int = 8, axes=None):
    """Three rows per sample column: the image, the labelled object's mask, and all objects
    (background dark, distractors mid, labelled object bright).

    Parameters
    ----------
    data : tsmbook.synthetic.data.SyntheticSet
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
        fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.0), squeeze=False, layout="constrained")
    else:
        fig = np.asarray(axes).flat[0].figure
    axes = np.asarray(axes).reshape(3, n)
    fs = readable_size(fig.get_figwidth())
    for i in range(n):
        axes[0, i].imshow(data.images[i].permute(1, 2, 0).numpy())
        axes[0, i].set_title(data.classes[int(data.labels[i])], fontsize=fs)
        axes[1, i].imshow(data.main_masks[i].numpy(), cmap="gray", vmin=0, vmax=1)
        # 0 background, 1 distractors, 2 the labelled object
        layers = data.masks[i].int() + data.main_masks[i].int()
        axes[2, i].imshow(layers.numpy(), cmap="viridis", vmin=0, vmax=2, interpolation="nearest")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=fs)
    axes[1, 0].set_ylabel("labelled\nobject", fontsize=fs)
    axes[2, 0].set_ylabel("all objects", fontsize=fs)
    return fit_text(fig)


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

    from .synthetic.zoo import KIND_NAMES

    trained = [k for k in ("supervised", "simclr", "barlow") if "history" in manifest["models"].get(k, {})]
    if not trained:
        raise ValueError("the manifest holds no training history")
    fig, axes = plt.subplots(2, len(trained), figsize=(4 * len(trained), 5.5), squeeze=False, layout="constrained")
    for j, k in enumerate(trained):
        h = manifest["models"][k]["history"]
        axes[0, j].plot(h["epoch"], h["loss"], marker="o")
        axes[0, j].set_title(KIND_NAMES[k])
        axes[0, j].set_ylabel("training loss")
        ep, mon = list(h["epoch"]), list(h["monitor"])
        if "monitor_init" in h:  # the value at initialisation, plotted at epoch 0
            ep, mon = [0] + ep, [h["monitor_init"]] + mon
        axes[1, j].plot(ep, mon, marker="o", color="C1")
        axes[1, j].set_ylabel("val accuracy" if k == "supervised" else "k-NN val accuracy")
        axes[1, j].set_xlabel("epoch")
        axes[1, j].set_ylim(0, 1)
    return fit_text(fig)
