"""Figures of the data chapters: the data card; the panels and the grid are :mod:`tsmbook.plotting`'s
(re-exported here under their old names)."""

from __future__ import annotations

from collections.abc import Sequence

from .plotting import mask_outline, overlay, saliency_grid, to_numpy_image, to_numpy_map

__all__ = ["to_numpy_image", "to_numpy_map", "overlay", "mask_outline", "figure_grid", "data_card"]


def figure_grid(images: Sequence, maps: Sequence | None = None, titles: Sequence[str] | None = None,
                ncols: int | None = None, alpha: float = 0.5, cmap: str | None = None, size: float = 2.4,
                masks: Sequence | None = None, suptitle: str | None = None):
    """A gallery of images with optional (min-max normalised) maps and mask outlines: the gallery form of
    :func:`tsmbook.plotting.saliency_grid` (``maps`` a sequence, one map or None per image)."""
    return saliency_grid(images, list(maps) if maps is not None else None, masks, titles=titles, ncols=ncols,
                         alpha=alpha, cmap=cmap, size=size, normalize=True, suptitle=suptitle)


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
    fig = figure_grid([s.image for s in samples], titles=titles, masks=[s.mask for s in samples],
                      ncols=ncols, size=size)
    for ax, s in zip(fig.axes, samples):
        for (x0, y0, x1, y1) in s.boxes:
            ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                           edgecolor="yellow", linewidth=1.0, linestyle="--"))
    return fig
