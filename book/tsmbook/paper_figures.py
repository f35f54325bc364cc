"""The kinds of figure the TSM paper has, drawn from our own tensors, maps and tables.

Chapter 7 of the book ("The paper's figures") regenerates each kind of figure of Bouayed et al.
(arXiv 2410.23072) with our models. The computation behind the method schematic lives in
:func:`schematic_tensors` (plain tensors, tested against :mod:`tsmlib.methods`); everything else here
only draws:

* :func:`plot_method_schematic` - the pipeline of TSM, EigenCAM and the multivector combination on one
  real feature tensor;
* :func:`method_grid` - qualitative grid: one row per image, one column per method;
* :func:`component_grid` - the first component maps with their ``sigma_k`` and the combined map;
* :func:`metric_bars` - grouped bars with confidence intervals from :func:`tsmlib.evaluation.summarize`;
* :func:`cost_plot` - time per map against the size of the feature tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tsmlib.evaluation.metric_info import METRICS, metric_info
from tsmlib.evaluation.runner import PAPER_METRICS
from tsmlib.methods import minmax_normalize
from .plotting import component_figure, display_name, overlay, saliency_grid

__all__ = [
    "schematic_tensors",
    "plot_method_schematic",
    "method_grid",
    "component_grid",
    "metric_bars",
    "cost_plot",
    "METRIC_LABELS",
]

#: Axis labels of the evaluation metrics, with the direction that is better: derived from
#: :mod:`tsmlib.evaluation.metric_info`, their one home ("Average Drop (%, lower is better)").
METRIC_LABELS = {name: info.label for name, info in METRICS.items()}


def schematic_tensors(F: torch.Tensor, n_components: int | None = None) -> dict:
    """Every intermediate tensor of the method schematic, for one feature tensor.

    Parameters
    ----------
    F : torch.Tensor, shape (C, H, W)
        Activations of one image at the target layer (finite; not all zero).
    n_components : int, optional
        Number of leading components kept (default all ``min(C, H*W)``, those the combined maps use).

    Returns
    -------
    dict of CPU float64 tensors
        ``F`` (C, H, W); ``unfolding`` the mode-1 unfolding (C, H*W); ``core`` (R1, H, W) and
        ``U1`` (C, R1), ``U2`` (H, H), ``U3`` (W, W) of the full-rank Tucker decomposition
        (R1 = min(C, H*W)); ``sigma_tucker`` (R1,) the core slice norms ``||G[k]||_F``;
        ``w`` (C,) = ``U1[:, 0]``; ``weighted_sum`` (H, W) = ``sum_c w_c F_c`` (signed) and
        ``tsm`` (H, W) = min-max of its absolute value (TSM); ``centred`` (H*W, C) EigenCAM's
        centred matrix M; ``svd_U`` (H*W, K), ``svd_S`` (K,), ``svd_V`` (C, K) its SVD; ``eigencam``
        (H, W) EigenCAM's map (first oriented component, ReLU, min-max); ``tsm_components`` and
        ``eigencam_components`` (n, H, W) signed component maps with ``tsm_sigma`` / ``eigencam_sigma``
        (n,); ``mtsm`` and ``multivec_eigencam`` (H, W) the combined maps over all components.
    """
    import tsmlib

    if not isinstance(F, torch.Tensor) or F.ndim != 3:
        raise ValueError(f"F must be one feature tensor of shape (C, H, W), got "
                         f"{tuple(F.shape) if isinstance(F, torch.Tensor) else type(F).__name__}")
    F = F.detach().to("cpu", torch.float64)
    if not torch.isfinite(F).all():
        raise ValueError("F contains NaN or infinite values")
    if not F.abs().sum() > 0:
        raise ValueError("F is all zero: no decomposition has a meaningful first component")
    C, H, W = F.shape
    K = min(C, H * W)
    n_components = K if n_components is None else n_components
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= K:
        raise ValueError(f"n_components must be an int in [1, {K}], got {n_components!r}")
    A = F[None]
    unfolding = F.reshape(C, H * W)

    tk = tsmlib.tucker(A)
    core, (U1, U2, U3) = tk.core[0], [u[0] for u in tk.factors]
    w = U1[:, 0]
    weighted = torch.einsum("c,chw->hw", w, F)

    M = unfolding.T - unfolding.T.mean(dim=0, keepdim=True)  # (HW, C), centred channels
    svd_U, svd_S, svd_Vh = torch.linalg.svd(M, full_matrices=False)

    ec = tsmlib.eigencam_components(A, n_components)
    tc = tsmlib.tsm_components(A, k=n_components)
    return {
        "F": F,
        "unfolding": unfolding,
        "core": core,
        "U1": U1,
        "U2": U2,
        "U3": U3,
        "sigma_tucker": core.flatten(1).norm(dim=1),
        "w": w,
        "weighted_sum": weighted,
        "tsm": minmax_normalize(weighted.abs()),
        "centred": M,
        "svd_U": svd_U,
        "svd_S": svd_S,
        "svd_V": svd_Vh.T,
        "eigencam": minmax_normalize(ec.maps[0, 0].clamp_min(0)),
        "tsm_components": tc.maps[0],
        "tsm_sigma": tc.weights[0],
        "eigencam_components": ec.maps[0],
        "eigencam_sigma": ec.weights[0],
        "mtsm": tsmlib.mtsm(A)[0],
        "multivec_eigencam": tsmlib.multivec_eigencam(A)[0],
    }


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _stack(ax, maps: Sequence[np.ndarray], cmap: str, label: str, offset: float = 0.22):
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
    ax.set_title(label, fontsize=9)


def _rect(xy, w, h, zorder=1):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor="black", linewidth=0.8, zorder=zorder)


def _ticks_right(ax):
    """Tick labels on the right, so that the arrow coming in from the left meets a clean edge."""
    from matplotlib.ticker import NullFormatter

    ax.yaxis.tick_right()
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=7)


def _heat(ax, m, title, cmap="viridis", aspect="equal", vmin=None, vmax=None, symmetric=False):
    m = np.asarray(m, dtype=np.float64)
    if symmetric:
        vmax = float(np.abs(m).max()) or 1.0
        vmin, cmap = -vmax, "RdBu_r"
    im = ax.imshow(m, cmap=cmap, aspect=aspect, interpolation="nearest", vmin=vmin, vmax=vmax)
    _off(ax)
    ax.set_title(title, fontsize=9)
    return im


def _overlay(ax, image, m, title, cmap=None):
    ax.imshow(overlay(image, m, alpha=0.5, cmap=cmap))
    _off(ax)
    ax.set_title(title, fontsize=9)


def _extent(fig, axes):
    """Union of the drawn extents (tick labels and titles included) of ``axes``, in figure coordinates."""
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()) for ax in axes]
    return min(b.x0 for b in boxes), max(b.x1 for b in boxes)


def _arrow(fig, cell_from, cell_to, axes_from, axes_to, text=""):
    """An arrow from the drawn right edge of one group of axes to the left edge of the next, at the height
    of the middle of the gridspec cell ``cell_from``."""
    a, b = cell_from.get_position(fig), cell_to.get_position(fig)
    x0, x1 = _extent(fig, axes_from)[1], _extent(fig, axes_to)[0]
    y = (a.y0 + a.y1) / 2
    fig.patches.append(_farrow(fig, (x0 + 0.002, y), (x1 - 0.002, y)))
    if text:
        fig.text((x0 + x1) / 2, y - 0.012, text, ha="center", va="top", fontsize=8)


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
        Figure width in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Three rows (TSM, EigenCAM, multivector) of six panels linked by arrows.
    """
    import matplotlib.pyplot as plt

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

    fig = plt.figure(figsize=(width, width * 0.62), layout="none")
    outer = fig.add_gridspec(3, 6, left=0.02, right=0.99, top=0.90, bottom=0.04, wspace=0.8, hspace=0.75,
                             width_ratios=[1.15, 0.8, 1.5, 1.0, 0.9, 0.9])
    # Row 1: TSM
    r = [fig.add_subplot(outer[0, j]) for j in (0, 1)]
    _stack(r[0], slices, "magma", f"feature tensor $F$\n{C}×{H}×{W} (top {n_slices} channels)")
    _heat(r[1], tensors["unfolding"].numpy(), f"mode-1 unfolding $F_{{(1)}}$\n{C}×{H * W}", cmap="magma",
          aspect="auto")
    tk = outer[0, 2].subgridspec(2, 3, wspace=0.35, hspace=0.6, width_ratios=[0.6, 1, 1])
    ax_u1 = fig.add_subplot(tk[:, 0])
    _heat(ax_u1, tensors["U1"].numpy(), f"$U_1$ {C}×{K}", aspect="auto", symmetric=True)
    ax_core = fig.add_subplot(tk[:, 1])
    core = tensors["core"].numpy()
    _stack(ax_core, [np.abs(core[k]) for k in range(min(4, K))], "viridis",
           f"core $|G|$\n{K}×{H}×{W}\n(k = 1..4)", offset=0.25)
    ax_u2, ax_u3 = fig.add_subplot(tk[0, 2]), fig.add_subplot(tk[1, 2])
    _heat(ax_u2, tensors["U2"].numpy(), f"$U_2$ {H}×{H}", symmetric=True)
    _heat(ax_u3, tensors["U3"].numpy(), f"$U_3$ {W}×{W}", symmetric=True)
    tucker_axes = [ax_u1, ax_core, ax_u2, ax_u3]
    ax_w = fig.add_subplot(outer[0, 3])
    w = tensors["w"].numpy()
    ax_w.plot(np.arange(C), w, lw=0.6, color="C0")
    ax_w.axhline(0, color="0.5", lw=0.5)
    ax_w.set_title("channel weights $w$\n(first column of $U_1$)", fontsize=9)
    ax_w.set_xlabel("channel c", fontsize=8)
    _ticks_right(ax_w)
    ax_sum = fig.add_subplot(outer[0, 4])
    im = _heat(ax_sum, np.abs(tensors["weighted_sum"].numpy()), "$|\\Sigma_c\\, w_c F_c|$" + f"  ({H}×{W})", cmap=cmap)
    fig.colorbar(im, ax=ax_sum, orientation="horizontal", fraction=0.06, pad=0.04).ax.tick_params(labelsize=7)
    ax_tsm = fig.add_subplot(outer[0, 5])
    _overlay(ax_tsm, image, up(tensors["tsm"]), "TSM, upsampled", cmap)

    # Row 2: EigenCAM
    e0 = fig.add_subplot(outer[1, 0])
    _stack(e0, slices, "magma", f"feature tensor $F$\n{C}×{H}×{W}")
    e1 = fig.add_subplot(outer[1, 1])
    _heat(e1, tensors["centred"].numpy(), f"centred matrix $M$\n{H * W}×{C}", aspect="auto", symmetric=True)
    sv = outer[1, 2].subgridspec(1, 2, wspace=0.6)
    e2 = fig.add_subplot(sv[0, 0])
    s = tensors["svd_S"].numpy()
    s = s[s > s.max() * 1e-8]  # the centred matrix has rank <= H*W - 1: its last value is ~0
    e2.semilogy(np.arange(1, len(s) + 1), s, ".-", ms=3, lw=0.8, color="C1")
    e2.set_title("SVD $M = U S V^T$:\nsingular values $s_k$", fontsize=9)
    e2.set_xlabel("k", fontsize=8)
    _ticks_right(e2)
    e2b = fig.add_subplot(sv[0, 1])
    nv = min(10, tensors["svd_V"].shape[1])
    _heat(e2b, tensors["svd_V"].numpy()[:, :nv], f"$V$ (first {nv} of {tensors['svd_V'].shape[1]})", aspect="auto",
          symmetric=True)
    e3 = fig.add_subplot(outer[1, 3])
    e3.plot(np.arange(C), tensors["svd_V"].numpy()[:, 0], lw=0.6, color="C1")
    e3.axhline(0, color="0.5", lw=0.5)
    e3.set_title("channel weights $v_1$", fontsize=9)
    e3.set_xlabel("channel c", fontsize=8)
    _ticks_right(e3)
    e4 = fig.add_subplot(outer[1, 4])
    im = _heat(e4, tensors["eigencam"].numpy(), "ReLU$(M v_1)$, min-max", cmap=cmap, vmin=0, vmax=1)
    fig.colorbar(im, ax=e4, orientation="horizontal", fraction=0.06, pad=0.04).ax.tick_params(labelsize=7)
    e5 = fig.add_subplot(outer[1, 5])
    _overlay(e5, image, up(tensors["eigencam"]), "EigenCAM, upsampled", cmap)

    # Row 3: multivector combination
    comp = outer[2, 0:3].subgridspec(2, n_show, wspace=0.08, hspace=0.45)
    axes_c = []
    for row, (key, name) in enumerate((("tsm_components", "MTSM"), ("eigencam_components", "Multivec-EigenCAM"))):
        sig = tensors["tsm_sigma" if row == 0 else "eigencam_sigma"].numpy()
        for k in range(n_show):
            ax = fig.add_subplot(comp[row, k])
            _heat(ax, np.abs(tensors[key][k].numpy()), f"$|p_{{{k + 1}}}|$, $\\sigma_{{{k + 1}}}$ = {sig[k]:.3g}",
                  cmap=cmap)
            if k == 0:
                ax.set_ylabel(name, fontsize=9)
            axes_c.append(ax)
    m3 = fig.add_subplot(outer[2, 3])
    for key, name, colour in (("tsm_sigma", "Tucker core $\\|G[k, :, :]\\|_F$", "C0"),
                              ("eigencam_sigma", "centred SVD $s_k$", "C1")):
        sig = tensors[key].numpy()[:12]
        m3.bar(np.arange(1, len(sig) + 1) + (-0.2 if colour == "C0" else 0.2), sig / sig[0], width=0.4,
               color=colour, label=name)
    m3.set_title(f"weights $\\sigma_k / \\sigma_1$ (first 12 of {K})", fontsize=9)
    m3.set_xlabel("component k", fontsize=8)
    m3.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, handlelength=1)
    _ticks_right(m3)
    m4 = fig.add_subplot(outer[2, 4])
    _overlay(m4, image, up(tensors["multivec_eigencam"]), "Multivec-EigenCAM", cmap)
    m5 = fig.add_subplot(outer[2, 5])
    _overlay(m5, image, up(tensors["mtsm"]), "MTSM", cmap)

    fig.canvas.draw()  # fixes the aspect-constrained axes, so that their drawn extents are known
    cells = {0: [[r[0]], [r[1]], tucker_axes, [ax_w], [ax_sum], [ax_tsm]],
             1: [[e0], [e1], [e2, e2b], [e3], [e4], [e5]],
             2: [axes_c, [m3], [m4]]}
    texts = {0: ["unfold", "Tucker\n(HOOI)", "first\ncolumn", "weighted\nsum, |.|", "min-max,\nupsample"],
             1: ["centre,\ntranspose", "SVD", "first right\nvector", "M v1, ReLU,\nmin-max", "upsample"],
             2: ["weights", "$\\Sigma_k\\,\\sigma_k N(|p_k|)$"]}
    for row, groups in cells.items():
        for j, t in enumerate(texts[row]):
            _arrow(fig, outer[row, 0], outer[row, 0], groups[j], groups[j + 1], t)
    for r, name in enumerate(("(a) TSM: Tucker decomposition of the feature tensor",
                              "(b) EigenCAM: SVD of the centred matricised feature maps",
                              "(c) Multivector: all components, weighted by their singular values")):
        y = outer[r, 0].get_position(fig).y1
        fig.text(0.01, y + 0.055, name, fontsize=11, fontweight="bold", ha="left", va="bottom")
    return fig


def method_grid(images: Sequence, maps: Mapping[str, Sequence], *, masks: Sequence | None = None,
                row_labels: Sequence[str] | None = None, size: float = 1.7, cmap: str | None = None,
                colorbar: bool = True):
    """Qualitative grid in the paper's style: :func:`tsmbook.plotting.saliency_grid` with ``style="paper"``
    (row labels on the left) and each map min-max normalised."""
    return saliency_grid(images, maps, masks, row_labels, style="paper", size=size, cmap=cmap, colorbar=colorbar,
                         normalize=True)


def component_grid(image, components: Mapping[str, tuple], combined: Mapping[str, torch.Tensor], *,
                   n: int = 8, size: float = 1.55, cmap: str | None = None):
    """Per-component maps with their weights, then the combined map; one row per method:
    :func:`tsmbook.plotting.component_figure` of one image.

    Parameters
    ----------
    image : tensor or array, (3, S, S) or (S, S, 3) in [0, 1]
    components : dict method name -> (maps, sigma)
        ``maps`` (K, h, w) signed component maps, ``sigma`` (K,) their weights (K >= n).
    combined : dict method name -> (h, w) map
        The combined (multivector) map of the same method.
    n : int
        Components shown; the titles give ``sigma_k`` and its share of all K weights.
    """
    if set(components) != set(combined):
        raise ValueError(f"components ({sorted(components)}) and combined ({sorted(combined)}) name different methods")
    names = list(components)
    return component_figure([image] * len(names), [components[m][0] for m in names], [components[m][1] for m in names],
                            combined=[combined[m] for m in names], n=n, row_titles=names, size=size, cmap=cmap,
                            alpha=0.55)


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
        ax.set_xticklabels([display_name(m) for m in methods], rotation=40, ha="right", fontsize=8)
        ax.set_title(metric_info(metric).label if metric in METRICS else metric, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    if hue:
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside right center", fontsize=8, title=hue, title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


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
    ax.set_xticklabels([f"{s}\n({elements[s]:,})" for s in shapes], fontsize=8)
    ax.set_xlabel("feature tensor C×H×W (number of elements)")
    ax.set_ylabel("ms per map (log scale)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
