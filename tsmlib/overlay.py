"""A saliency map drawn over its image, as ``tsmlib explain`` writes it: arrays in, an RGB array out.

* :func:`overlay` -- blend a map (upsampled, min-max normalised) over an image in a colour map;
* :func:`mask_outline` -- the boundary pixels of a foreground mask, to draw over a panel;
* :func:`to_numpy_image`, :func:`to_numpy_map` -- PIL images, tensors and arrays to (H, W, 3) / (H, W).

No figure is made here (the book's figures build on these panels); matplotlib is used for its colour
maps only.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["DEFAULT_CMAP", "overlay", "mask_outline", "to_numpy_image", "to_numpy_map"]

#: Colour map of a saliency overlay: perceptually uniform (lightness rises with the value), readable in
#: grey scale and by colour-blind readers.
DEFAULT_CMAP = "inferno"


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


def overlay(image, saliency, alpha: float = 0.5, cmap: str | None = None, normalize: bool = True) -> np.ndarray:
    """Blend a saliency map over an image.

    Parameters
    ----------
    image : PIL image, tensor or array
        (H, W, 3) or (3, H, W), values in [0, 1] or uint8.
    saliency : tensor or array (H', W')
        Upsampled bilinearly to (H, W) if needed (:func:`tsmlib.methods.upsample`). Min-max normalised
        when ``normalize`` (:func:`tsmlib.methods.minmax_normalize`: a constant map shows as all zeros);
        otherwise clipped to [0, 1].
    alpha : float in [0, 1]
        Weight of the heat map.
    cmap : str, optional
        A matplotlib colour map name (default :data:`DEFAULT_CMAP`).

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float in [0, 1].
    """
    import matplotlib

    from .methods import minmax_normalize, upsample

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_numpy_image(image)
    sal = torch.from_numpy(to_numpy_map(saliency))
    sal = upsample(sal[None], img.shape[:2])[0]
    sal = minmax_normalize(sal) if normalize else sal.clamp(0.0, 1.0)
    heat = matplotlib.colormaps[cmap or DEFAULT_CMAP](sal.numpy())[..., :3].astype(np.float32)
    return (1.0 - alpha) * img + alpha * heat


def mask_outline(mask, width: int | None = None) -> np.ndarray:
    """Boundary pixels of a (H, W) bool mask, ``width`` pixels on each side of the edge, as a (H, W) bool
    array (default width: 1 pixel per 100 of the smaller side, at least 1: 2 on a 224 x 224 image)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {m.shape}")
    if width is None:
        width = max(1, min(m.shape) // 100)
    t = torch.from_numpy(m.astype(np.float32))[None, None]
    k = 2 * width + 1
    dil = torch.nn.functional.max_pool2d(t, k, stride=1, padding=width)
    ero = -torch.nn.functional.max_pool2d(-t, k, stride=1, padding=width)
    return ((dil - ero)[0, 0].numpy() > 0) & np.ones_like(m)
