"""Figures shared by the notebooks and the CLI: heat-map overlays, grids, mask outlines, data card."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["to_numpy_image", "to_numpy_map", "overlay", "mask_outline", "figure_grid", "show_grid", "data_card"]


def to_numpy_image(image) -> np.ndarray:
    """PIL image, (3, H, W) / (H, W, 3) tensor or array in [0, 1] or uint8 -> (H, W, 3) float in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected an RGB image (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr.astype(np.float32)
    if arr.max() > 1.0 + 1e-6:
        arr = arr / 255.0
    return np.clip(arr, 0.0, 1.0)


def to_numpy_map(saliency) -> np.ndarray:
    """(H, W) or (1, H, W) tensor/array -> (H, W) float array (NaN rejected)."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().float().cpu().numpy()
    arr = np.asarray(saliency, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a saliency map must be (H, W), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("the saliency map contains NaN or infinite values")
    return arr


def _resize_map(sal: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if sal.shape == hw:
        return sal
    t = torch.from_numpy(sal)[None, None]
    return torch.nn.functional.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(image, saliency, alpha: float = 0.5, cmap: str = "jet", normalize: bool = True) -> np.ndarray:
    """Blend a saliency map over an image.

    Parameters
    ----------
    image : PIL image, tensor or array
        (H, W, 3) or (3, H, W), values in [0, 1] or uint8.
    saliency : tensor or array (H', W')
        Resized bilinearly to (H, W) if needed. Values are min-max normalised when
        ``normalize`` (a constant map shows as all zeros); otherwise clipped to [0, 1].
    alpha : float in [0, 1]
        Weight of the heat map.
    cmap : str
        A matplotlib colormap name.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float in [0, 1].
    """
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_numpy_image(image)
    sal = _resize_map(to_numpy_map(saliency), img.shape[:2])
    if normalize:
        lo, hi = float(sal.min()), float(sal.max())
        sal = (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)
    else:
        sal = np.clip(sal, 0.0, 1.0)
    heat = matplotlib.colormaps[cmap](sal)[..., :3].astype(np.float32)
    return (1.0 - alpha) * img + alpha * heat


def mask_outline(mask, width: int = 2) -> np.ndarray:
    """Boundary pixels of a (H, W) bool mask, ``width`` pixels thick, as a (H, W) bool array."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {m.shape}")
    t = torch.from_numpy(m.astype(np.float32))[None, None]
    k = 2 * width + 1
    dil = torch.nn.functional.max_pool2d(t, k, stride=1, padding=width)
    ero = -torch.nn.functional.max_pool2d(-t, k, stride=1, padding=width)
    return ((dil - ero)[0, 0].numpy() > 0) & np.ones_like(m)


def figure_grid(images: Sequence, maps: Sequence | None = None, titles: Sequence[str] | None = None,
                ncols: int | None = None, alpha: float = 0.5, cmap: str = "jet", size: float = 2.4,
                masks: Sequence | None = None, suptitle: str | None = None):
    """A grid of images, optionally with saliency overlays and mask outlines.

    Parameters
    ----------
    images : sequence of images (PIL, tensor or array)
    maps : sequence of (H, W) maps or None, optional
        Same length as ``images``; ``None`` entries show the plain image.
    titles : sequence of str, optional
    ncols : int, optional
        Default: ``min(len(images), 6)``.
    masks : sequence of (H, W) bool or None, optional
        Drawn as a white outline.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError("figure_grid needs at least one image")
    for name, seq in (("maps", maps), ("titles", titles), ("masks", masks)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} images")
    ncols = ncols or min(n, 6)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        img = to_numpy_image(images[i])
        shown = overlay(img, maps[i], alpha=alpha, cmap=cmap) if maps is not None and maps[i] is not None else img
        if masks is not None and masks[i] is not None:
            outline = mask_outline(masks[i])
            if outline.shape != shown.shape[:2]:
                raise ValueError(f"mask {i} has shape {outline.shape}, image {shown.shape[:2]}")
            shown = shown.copy()
            shown[outline] = (1.0, 1.0, 1.0)
        ax.imshow(shown)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_grid(*args, **kwargs):
    """:func:`figure_grid`, then ``plt.show()``; returns the figure."""
    import matplotlib.pyplot as plt

    fig = figure_grid(*args, **kwargs)
    plt.show()
    return fig


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
