"""Helpers of the method and ablation chapters: saliency-map grids with mask outlines, component grids,
the EigenCAM orientation check, and named method variants for the evaluation runner.

* :func:`saliency_grid` -- rows of images, one column per method, maps over the image, mask outlines,
  one shared colour bar.
* :func:`component_grid` -- the component maps ``p_k`` of one image with their weights ``sigma_k``.
* :func:`orientation_scores` -- how much of a map's energy lies inside the object mask, for a map and
  for the map of the opposite sign: the computation that finds inverted EigenCAM maps.
* :func:`method_variant` -- register ``"mtsm[k=5]"`` and the like, so that
  :func:`tsmlib.evaluation.evaluate` (which takes method *names*) can sweep an option. Variants of the
  four activation methods share one forward pass per batch (the activations are memoised).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

__all__ = ["saliency_grid", "component_grid", "orientation_scores", "method_variant", "variant_name",
           "clear_activation_memo"]

# --------------------------------------------------------------------------------------- variants
#: The activation-only methods a variant can be built on, by registry name.
ACTIVATION_METHODS = ("eigencam", "tsm", "multivec-eigencam", "mtsm")

_MEMO: dict = {}


def clear_activation_memo() -> None:
    """Forget the memoised activations of :func:`method_variant` methods."""
    _MEMO.clear()


def _activations(model, x, layer, reshape_transform=None) -> torch.Tensor:
    """The layer's activations for ``x``; the last batch is memoised (same model weights, layer and pixels).

    The key holds the *content* of the model's weights (:func:`tsmlib.fingerprint.state_dict_digest`),
    not only ``id(model)``: weights re-initialised in place (the cascading randomisation) give new
    activations. Digesting the weights costs some tens of milliseconds per call.
    """
    from .cam import ActivationCapture
    from .fingerprint import state_dict_digest, tensor_digest

    key = (id(model), state_dict_digest(model), layer if isinstance(layer, str) else id(layer),
           id(reshape_transform), str(x.device), tensor_digest(x))
    if _MEMO.get("key") == key:
        return _MEMO["activations"]
    with ActivationCapture(model, layer, reshape_transform) as cap, torch.no_grad():
        model(x)
    if cap.activations is None:
        raise RuntimeError(f"layer {layer!r} did not run during the forward pass")
    _MEMO.clear()
    _MEMO.update(key=key, activations=cap.activations)
    return cap.activations


def _format_value(v) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ",".join("None" if e is None else str(e) for e in v) + ")"
    return str(v)


def variant_name(base: str, **options) -> str:
    """Canonical name of a variant: ``variant_name("mtsm", k=5, weighting="uniform")`` ->
    ``"mtsm[k=5,weighting=uniform]"`` (options sorted by name; no options gives ``base`` itself)."""
    if not options:
        return base
    return f"{base}[" + ",".join(f"{k}={_format_value(v)}" for k, v in sorted(options.items())) + "]"


def method_variant(base: str, **options) -> str:
    """Register ``base`` with fixed ``options`` as a method of its own and return its registry name.

    Parameters
    ----------
    base : {"eigencam", "tsm", "multivec-eigencam", "mtsm"}
        One of the activation-only methods of :mod:`tsmlib.methods`.
    **options
        Keyword arguments of that function (``k``, ``ranks``, ``weighting``, ``transform``,
        ``normalize_components``, ``sign``). They are checked here, on a tiny tensor, so that a typo
        fails at registration rather than in the middle of an evaluation. Without options the base
        name is returned and nothing is registered.

    Returns
    -------
    str
        :func:`variant_name` ``(base, **options)``, usable wherever a method name is (``tsmlib.saliency``,
        ``tsmlib.evaluation.evaluate``). Registering the same variant again is harmless.

    Notes
    -----
    All variants (and only they) share a memo of the last batch's activations: sweeping 20 variants
    over one batch costs one forward pass instead of 20. The memo is keyed by the model, the layer and
    a hash of the input pixels.
    """
    from . import methods
    from .cam import register_method

    functions = {"eigencam": methods.eigencam, "tsm": methods.tsm,
                 "multivec-eigencam": methods.multivec_eigencam, "mtsm": methods.mtsm}
    if base not in functions:
        raise ValueError(f"method_variant builds on {list(functions)}, got {base!r}")
    map_fn = functions[base]
    if not options:
        return base  # the registered method itself (never overwrite the registry's entry)
    import inspect

    accepted = set(inspect.signature(map_fn).parameters) - {"A", "normalize"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"invalid option(s) {unknown} for {base}; it accepts {sorted(accepted)}")
    # the value checks that do not depend on the layer's size (k and ranks do), on a tiny tensor
    map_fn(torch.rand(1, 6, 3, 3, dtype=torch.float64), **{n: v for n, v in options.items() if n not in ("k", "ranks")})

    def run(model, x, layer, targets=None, *, reshape_transform=None):
        return map_fn(_activations(model, x, layer, reshape_transform), normalize=False, **options)

    name = variant_name(base, **options)
    run.__doc__ = f"{base} with options {options} (tsmlib.figures.method_variant)."
    register_method(name, run, label_free=True, description=run.__doc__, overwrite=True)
    return name


# ----------------------------------------------------------------------------------- orientation
def orientation_scores(signed: torch.Tensor, masks: torch.Tensor) -> dict:
    """Mask energy of ``ReLU(p)`` and of ``ReLU(-p)``: which sign of a component points at the object.

    Parameters
    ----------
    signed : (B, H, W)
        Signed maps ``p`` (e.g. ``tsmlib.eigencam(A, sign=..., transform="none", normalize=False)``),
        at any resolution; they are upsampled bilinearly to the masks' size.
    masks : (B, H_m, W_m)
        Foreground masks (bool or 0/1).

    Returns
    -------
    dict of (B,) tensors
        ``energy_pos`` and ``energy_neg``: the share of the map's mass inside the mask,
        ``sum(S * mask) / sum(S)`` for ``S = ReLU(p)`` and ``S = ReLU(-p)`` (NaN for an all-zero map);
        ``inverted``: True where ``ReLU(-p)`` puts more of its mass on the object than ``ReLU(p)``.
    """
    from .methods import upsample

    if signed.ndim != 3 or masks.ndim != 3 or signed.shape[0] != masks.shape[0]:
        raise ValueError(f"expected signed maps (B, H, W) and masks (B, H, W), got {tuple(signed.shape)} "
                         f"and {tuple(masks.shape)}")
    m = masks.to(torch.float64)
    if bool((m.flatten(1).sum(1) == 0).any()):
        raise ValueError("a mask has no foreground pixel: its orientation is undefined")
    p = upsample(signed.to(torch.float64), tuple(masks.shape[-2:]))

    def energy(S):
        total = S.flatten(1).sum(1)
        inside = (S * m).flatten(1).sum(1)
        return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan")))

    pos, neg = energy(p.clamp_min(0)), energy((-p).clamp_min(0))
    return {"energy_pos": pos, "energy_neg": neg, "inverted": neg > pos}


# --------------------------------------------------------------------------------------- figures
def saliency_grid(images: Sequence, maps: Mapping[str, Sequence], masks: Sequence | None = None,
                  row_titles: Sequence[str] | None = None, *, size: float = 1.55, alpha: float = 0.5,
                  cmap: str | None = None, title_fontsize: float = 8, colorbar: bool = True):
    """Images in rows, one column per method: maps over the image, white mask outlines, one colour bar.

    Parameters
    ----------
    images : sequence of N images (PIL, (3, H, W) tensor or (H, W, 3) array)
    maps : dict column title -> sequence of N maps (H', W') in [0, 1] (or None to leave a cell empty)
        Maps of another size are resized bilinearly to the image.
    masks : sequence of N (H, W) bool masks or None, optional
    row_titles : sequence of N str, optional
        Shown above the first column (e.g. the photo's name and predicted class).
    size : float
        Inches per cell.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    from .style import SALIENCY_CMAP
    from .viz import mask_outline, overlay, to_numpy_image

    cmap = cmap or SALIENCY_CMAP
    n = len(images)
    if n == 0:
        raise ValueError("saliency_grid needs at least one image")
    for title, seq in maps.items():
        if len(seq) != n:
            raise ValueError(f"column {title!r} has {len(seq)} maps for {n} images")
    for label, seq in (("masks", masks), ("row_titles", row_titles)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{label} has {len(seq)} entries for {n} images")
    cols = ["image", *maps]
    fig, axes = plt.subplots(n, len(cols), figsize=(size * len(cols) + (0.5 if colorbar else 0), size * n + 0.3),
                             squeeze=False, layout="constrained")
    for i in range(n):
        img = to_numpy_image(images[i])
        outline = None
        if masks is not None and masks[i] is not None:
            outline = mask_outline(masks[i])
            if outline.shape != img.shape[:2]:
                raise ValueError(f"mask {i} has shape {outline.shape}, image {img.shape[:2]}")
        for j, col in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            sal = None if col == "image" else maps[col][i]
            if col != "image" and sal is None:
                ax.axis("off")
                continue
            shown = img if sal is None else overlay(img, sal, alpha=alpha, cmap=cmap, normalize=False)
            if outline is not None:
                shown = shown.copy()
                shown[outline] = (1.0, 1.0, 1.0)
            ax.imshow(shown)
            if i == 0 and col != "image":
                ax.set_title(col, fontsize=title_fontsize)
            if col == "image" and row_titles is not None:
                ax.set_title(row_titles[i], fontsize=title_fontsize)
    if colorbar:
        sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=cmap)
        fig.colorbar(sm, ax=axes[:, -1].tolist(), shrink=min(0.9, 3.0 / n + 0.3), label="saliency", pad=0.02)
    return fig


def component_grid(images: Sequence, components: torch.Tensor, weights: torch.Tensor, *,
                   masks: Sequence | None = None, row_titles: Sequence[str] | None = None, label: str = "p",
                   size: float = 1.6, cmap: str | None = None, alpha: float = 0.5, title_fontsize: float = 8):
    """The first K component maps of N images (one row each), ``|p_k|`` min-max normalised, with ``sigma_k``.

    Parameters
    ----------
    images : sequence of N images (PIL, tensor or array)
    components : (N, K, h, w)
        Signed component maps ``p_k`` (e.g. ``tsmlib.tsm_components(A, k=K).maps``).
    weights : (N, K)
        Their weights ``sigma_k``; each title also gives ``sigma_k``'s share of the row's K weights.
    masks : sequence of N (H, W) bool masks or None, optional
        Outlines drawn on every panel of the row.
    row_titles : sequence of N str, optional
        Shown as the y label of each row's first panel.

    Returns
    -------
    matplotlib.figure.Figure with N rows of K panels.
    """
    import matplotlib.pyplot as plt

    from .methods import minmax_normalize
    from .style import SALIENCY_CMAP
    from .viz import mask_outline, overlay, to_numpy_image

    if components.ndim != 4 or weights.ndim != 2 or components.shape[:2] != weights.shape:
        raise ValueError(f"expected components (N, K, h, w) and weights (N, K), got {tuple(components.shape)} "
                         f"and {tuple(weights.shape)}")
    N, K = weights.shape
    for name, seq in (("images", images), ("masks", masks), ("row_titles", row_titles)):
        if seq is not None and len(seq) != N:
            raise ValueError(f"{name} has {len(seq)} entries for {N} rows of components")
    cmap = cmap or SALIENCY_CMAP
    maps = minmax_normalize(components.abs().double())
    share = weights.double() / weights.double().sum(dim=1, keepdim=True).clamp_min(1e-300)
    fig, axes = plt.subplots(N, K, figsize=(size * K + (0.3 if row_titles else 0), (size + 0.45) * N),
                             squeeze=False, layout="constrained")
    for i in range(N):
        img = to_numpy_image(images[i])
        outline = None if masks is None or masks[i] is None else mask_outline(masks[i])
        for k, ax in enumerate(axes[i]):
            shown = overlay(img, maps[i, k].numpy(), alpha=alpha, cmap=cmap, normalize=False)
            if outline is not None:
                shown = shown.copy()
                shown[outline] = (1.0, 1.0, 1.0)
            ax.imshow(shown)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_title(f"$|{label}_{{{k + 1}}}|$, $\\sigma_{{{k + 1}}}$={float(weights[i, k]):.3g}\n"
                         f"({float(share[i, k]):.0%} of shown)", fontsize=title_fontsize)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=title_fontsize)
    return fig
