"""Saliency-map metrics as pure, batched tensor functions.

Every function takes a batch and returns **one value per image** (shape ``(B,)``), on the device of its
input; the paper's numbers are the means of these per-image terms (:mod:`tsmlib.evaluation.summary`
averages them and gives bootstrap confidence intervals). The formulas follow the project's protocol
(the book's "Method specification" page, after Chattopadhay et al. 2018, "Grad-CAM++"):

* Average Drop %            ``100 * max(0, Y - O) / Y``          (lower is better)
* Increase in Confidence %  ``100 * [O > Y]``                    (higher is better)
* Average Gain %            ``100 * max(0, O - Y) / (1 - Y)``    (higher is better)

where ``Y`` is the score of the target on the full image and ``O`` the score on the explanation-masked
image :func:`masked_input`. Against ground-truth foreground masks: :func:`iou` (and :func:`iou_curve`,
its threshold-free summary :func:`iou_auc`), :func:`mse`, :func:`energy_pointing_game`,
:func:`pointing_game`, and the threshold-free :func:`relevance_mass_accuracy` and
:func:`relevance_rank_accuracy` (Arras et al. 2022, CLEVR-XAI). Perturbation curves:
:func:`deletion_insertion_auc` (Petsiuk et al. 2018, RISE).

Masks are integer label images ``(B, H, W)``: 0 is background, any positive value is foreground, and
``void`` (255 in Pascal VOC) marks pixels ignored by every mask metric; a negative label other than
``void`` raises ``ValueError`` (an "ignore" label such as -1 is not silently foreground).

Undefined values are reported as NaN, never as a division by zero and never silently as 0:
IoU when neither the mask nor the binarised map has a foreground pixel (or every pixel is void),
MSE when every pixel is void; the IoU AUC, the two pointing games and the two relevance accuracies when
the mask has no foreground on the valid pixels (there is nothing to find); the energy pointing game and
the relevance accuracies also when the map has no positive value on them, and the pointing game when the
map is constant on them (an all-zero or all-one map has no peak to point with). A batch of 0 images
gives empty results, shape ``(0,)`` (``(0, T)`` for :func:`iou_curve`).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F

from ..data.common import IMAGENET_MEAN

Baseline = Literal["black", "mean", "blur"]

#: VOC's "void" label (object borders, difficult regions), ignored by the mask metrics.
VOID = 255


# --------------------------------------------------------------------------------------------- checks
def _check_scores(Y: torch.Tensor, O: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    Y = torch.as_tensor(Y)
    O = torch.as_tensor(O)
    if Y.shape != O.shape or Y.ndim != 1:
        raise ValueError(
            f"scores Y (full image) and O (masked image) must both have shape (B,), got {tuple(Y.shape)} "
            f"and {tuple(O.shape)}"
        )
    if not (Y.is_floating_point() and O.is_floating_point()):
        Y, O = Y.double(), O.double()
    if not bool(torch.isfinite(Y).all() & torch.isfinite(O).all()):
        raise ValueError("scores contain NaN/Inf; check the model output (a NaN map gives a NaN masked input)")
    return Y, O


def _check_maps(saliency: torch.Tensor, name: str = "saliency") -> torch.Tensor:
    if not isinstance(saliency, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, W), got {type(saliency).__name__}")
    if saliency.ndim != 3:
        hint = " For a single map use S[None]." if saliency.ndim == 2 else ""
        raise ValueError(f"{name} must have shape (B, H, W), got {tuple(saliency.shape)}.{hint}")
    if not saliency.is_floating_point():
        saliency = saliency.float()
    if not bool(torch.isfinite(saliency).all()):
        bad = int((~torch.isfinite(saliency)).sum())
        raise ValueError(
            f"{name} contains {bad} NaN/Inf value(s); a saliency map must be finite (normalise it with "
            "tsmlib.minmax_normalize, which maps a constant map to zeros)"
        )
    return saliency


def _check_images_and_maps(x: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) and maps (B, H, W) of one batch: the checked maps, or ``ValueError``."""
    saliency = _check_maps(saliency)
    if x.ndim != 4 or x.shape[0] != saliency.shape[0] or x.shape[-2:] != saliency.shape[-2:]:
        raise ValueError(f"images {tuple(x.shape)} and maps {tuple(saliency.shape)} do not match")
    return saliency


def _check_unit_range(saliency: torch.Tensor, name: str = "saliency", tol: float = 1e-4) -> None:
    if saliency.numel() == 0:
        return  # a batch of 0 maps: nothing to check (and min()/max() of an empty tensor raise)
    lo, hi = float(saliency.min()), float(saliency.max())
    if lo < -tol or hi > 1 + tol:
        raise ValueError(
            f"{name} must lie in [0, 1] (min-max normalised), got values in [{lo:.4g}, {hi:.4g}]; "
            "use tsmlib.minmax_normalize first"
        )


def _check_mask(mask: torch.Tensor, saliency: torch.Tensor, void: int | None = VOID) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of shape (B, H, W), got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape != saliency.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match saliency shape {tuple(saliency.shape)}; "
            "resize the mask with nearest-neighbour interpolation (or upsample the map) to the same size"
        )
    if mask.is_floating_point() and not bool((mask == mask.round()).all()):
        raise ValueError("mask must hold integer labels (0 background, >0 foreground, 255 void)")
    if mask.dtype != torch.bool and bool(((mask < 0) & (mask != (0 if void is None else void))).any()):
        raise ValueError(
            f"mask holds negative labels (min {int(mask.min())}); labels are 0 background, >0 foreground and "
            f"void={void} ignored. Map an 'ignore' label such as -1 to {VOID}, or pass void=-1"
        )
    return mask.to(saliency.device)


def foreground_and_valid(mask: torch.Tensor, void: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(foreground, valid)`` bool masks of a label mask: valid = not ``void``, foreground = valid and non-zero."""
    valid = torch.ones_like(mask, dtype=torch.bool) if void is None else mask != void
    foreground = (mask != 0) & valid
    return foreground, valid


# ----------------------------------------------------------------------------- score-based metrics
def average_drop(Y: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    """Per-image Average Drop term, in percent: ``100 * max(0, Y - O) / Y``.

    Parameters
    ----------
    Y : torch.Tensor, shape (B,)
        Score of the target on the full image. Must be positive (a probability or a cosine
        similarity); Average Drop is meaningless for logits that can be negative.
    O : torch.Tensor, shape (B,)
        Score of the same target on the explanation-masked image.

    Returns
    -------
    torch.Tensor, shape (B,)
        Values in ``[0, 100]`` when ``O >= 0``; the metric is their mean (lower is better).
    """
    Y, O = _check_scores(Y, O)
    if bool((Y <= 0).any()):
        raise ValueError(
            "Average Drop divides by the full-image score Y, which must be > 0; got "
            f"min(Y) = {float(Y.min()):.4g}. Use a probability score space (score='softmax') rather than logits."
        )
    return 100.0 * torch.clamp(Y - O, min=0) / Y


def increase_in_confidence(Y: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    """Per-image Increase-in-Confidence indicator, in percent: ``100 * [O > Y]``.

    Parameters
    ----------
    Y, O : torch.Tensor, shape (B,)
        Scores on the full and on the explanation-masked image.

    Returns
    -------
    torch.Tensor, shape (B,)
        0 or 100; the metric is their mean (higher is better). A tie ``O == Y`` is not an increase.
    """
    Y, O = _check_scores(Y, O)
    return 100.0 * (O > Y).to(Y.dtype)


def average_gain(Y: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    """Per-image Average Gain term, in percent: ``100 * max(0, O - Y) / (1 - Y)``.

    Parameters
    ----------
    Y, O : torch.Tensor, shape (B,)
        Scores on the full and on the explanation-masked image, at most 1 (probabilities or cosine
        similarities); a score above 1 (a logit) raises ``ValueError``, for ``Y`` and ``O`` alike. ``O``
        may exceed 1 by float rounding (up to ``1e-6``, a cosine of two equal vectors): it counts as 1.

    Returns
    -------
    torch.Tensor, shape (B,)
        Values in ``[0, 100]``; the metric is their mean (higher is better). When ``Y == 1`` no gain is
        possible and the term is defined as 0 (the cosine score space always has ``Y == 1``).
    """
    Y, O = _check_scores(Y, O)
    for name, v, limit in (("Y", Y, 1.0), ("O", O, 1.0 + 1e-6)):
        if bool((v > limit).any()):
            raise ValueError(
                f"Average Gain needs scores in [0, 1] (probabilities); got max({name}) = {float(v.max()):.4g}. "
                "Use score='softmax' rather than logits."
            )
    headroom = 1 - Y
    gain = torch.clamp(O.clamp(max=1) - Y, min=0)
    return torch.where(headroom > 0, 100.0 * gain / headroom.clamp(min=torch.finfo(Y.dtype).tiny), torch.zeros_like(Y))


# ------------------------------------------------------------------------------------ masked input
def blur(x: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur of a batch of images ``(B, 3, H, W)`` (kernel ``2 * ceil(3 sigma) + 1``, reflect padding)."""
    if sigma <= 0:
        return x
    radius = int(torch.ceil(torch.tensor(3.0 * sigma)).item())
    radius = min(radius, (min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
    return y


def baseline_image(x: torch.Tensor, baseline: Baseline | float | torch.Tensor = "black", *,
                   mean: Sequence[float] = IMAGENET_MEAN, blur_sigma: float = 5.0) -> torch.Tensor:
    """The image that replaces the removed pixels, shape ``(B, 3, H, W)`` like ``x``.

    ``"black"``: zeros. ``"mean"``: the constant colour ``mean`` (ImageNet's by default). ``"blur"``: a
    Gaussian blur of ``x`` (``blur_sigma`` pixels). A number or a tensor broadcastable to ``x`` is used as is.
    """
    if isinstance(baseline, str):
        if baseline == "black":
            return torch.zeros_like(x)
        if baseline == "mean":
            colour = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            if colour.shape[1] != x.shape[1]:
                raise ValueError(f"mean colour has {colour.shape[1]} channels, images have {x.shape[1]}")
            return colour.expand_as(x)
        if baseline == "blur":
            return blur(x, blur_sigma)
        raise ValueError(f"baseline must be 'black', 'mean', 'blur', a number or a tensor; got {baseline!r}")
    return torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)


def masked_input(x: torch.Tensor, saliency: torch.Tensor, baseline: Baseline | float | torch.Tensor = "black",
                 **baseline_options) -> torch.Tensor:
    """Explanation-masked images ``S * x + (1 - S) * baseline``.

    Parameters
    ----------
    x : torch.Tensor, shape (B, 3, H, W)
        Images in [0, 1] RGB (the model contract: preprocessing happens inside the model).
    saliency : torch.Tensor, shape (B, H, W)
        Maps in [0, 1] at the input resolution.
    baseline : {"black", "mean", "blur"} or float or torch.Tensor
        What removed pixels become (see :func:`baseline_image`); ``"black"`` gives ``x * S``, the protocol's
        default (Chattopadhay et al.).
    **baseline_options
        ``mean=`` colour or ``blur_sigma=`` for :func:`baseline_image`.

    Returns
    -------
    torch.Tensor, shape (B, 3, H, W)
    """
    saliency = _check_maps(saliency)
    _check_unit_range(saliency)
    if x.ndim != 4 or x.shape[0] != saliency.shape[0] or x.shape[-2:] != saliency.shape[-2:]:
        raise ValueError(
            f"images {tuple(x.shape)} and maps {tuple(saliency.shape)} do not match: expected images "
            "(B, 3, H, W) and maps (B, H, W) at the same resolution (use upsample=True in tsmlib.saliency)"
        )
    S = saliency.to(device=x.device, dtype=x.dtype).clamp(0, 1)[:, None]
    base = baseline_image(x, baseline, **baseline_options)
    return S * x + (1 - S) * base


# ------------------------------------------------------------------------------------ mask metrics
def iou(saliency: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5, *, void: int | None = VOID) -> torch.Tensor:
    """Per-image IoU of the binarised map ``S >= threshold`` with the foreground of ``mask``.

    Parameters
    ----------
    saliency : torch.Tensor, shape (B, H, W)
        Maps in [0, 1] (min-max normalised); values outside, NaN or Inf raise ``ValueError``.
    mask : torch.Tensor, shape (B, H, W)
        Integer labels: 0 background, anything else foreground (the union of objects), ``void`` ignored.
    threshold : float
        Binarisation threshold (default 0.5).
    void : int or None
        Label of ignored pixels (255, VOC's convention); ``None`` ignores nothing.

    Returns
    -------
    torch.Tensor, shape (B,)
        IoU in [0, 1]; NaN where the union is empty (no foreground in the mask and none predicted, or every
        pixel void), since IoU is then undefined.
    """
    return iou_curve(saliency, mask, [threshold], void=void)[:, 0]


def iou_curve(saliency: torch.Tensor, mask: torch.Tensor, thresholds: Sequence[float] | torch.Tensor | None = None,
              *, void: int | None = VOID) -> torch.Tensor:
    """Per-image IoU at several thresholds (see :func:`iou`).

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        As in :func:`iou` (maps in [0, 1]).
    thresholds : sequence of float, length T
        Default: ``0.0, 0.05, ..., 1.0`` (21 values).

    Returns
    -------
    torch.Tensor, shape (B, T)
        NaN where the union is empty. :func:`best_threshold` picks the threshold of highest mean IoU.
    """
    saliency = _check_maps(saliency)
    _check_unit_range(saliency)
    mask = _check_mask(mask, saliency, void)
    if thresholds is None:
        thresholds = default_thresholds()
    t = torch.as_tensor(thresholds, dtype=saliency.dtype, device=saliency.device).reshape(-1)
    fg, valid = foreground_and_valid(mask, void)
    fg = fg.flatten(1)[:, None]  # (B, 1, N)
    valid = valid.flatten(1)[:, None]
    pred = (saliency.flatten(1)[:, None] >= t[None, :, None]) & valid  # (B, T, N)
    inter = (pred & fg).sum(-1).to(saliency.dtype)
    union = (pred | fg).sum(-1).to(saliency.dtype)
    nan = torch.full_like(inter, float("nan"))
    return torch.where(union > 0, inter / union.clamp(min=1), nan)


def default_thresholds(n: int = 21) -> torch.Tensor:
    """``n`` evenly spaced thresholds from 0 to 1 (default 0, 0.05, ..., 1)."""
    return torch.linspace(0, 1, n, dtype=torch.float64)


def best_threshold(curves: torch.Tensor, thresholds: Sequence[float] | torch.Tensor) -> tuple[float, float]:
    """Threshold of highest mean IoU over images.

    Parameters
    ----------
    curves : torch.Tensor, shape (B, T)
        Output of :func:`iou_curve`; NaN entries (undefined IoU) are left out of the means.
    thresholds : sequence of float, length T

    Returns
    -------
    (threshold, mean IoU) : tuple of float
        The smallest threshold attaining the maximum. ``(nan, nan)`` if every entry is NaN.
    """
    t = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if curves.ndim != 2 or curves.shape[1] != t.numel():
        raise ValueError(f"curves must have shape (B, {t.numel()}), got {tuple(curves.shape)}")
    means = curves.double().nanmean(0).cpu()
    if bool(torch.isnan(means).all()):
        return float("nan"), float("nan")
    i = int(torch.nan_to_num(means, nan=-1.0).argmax())
    return float(t[i]), float(means[i])


def iou_auc(saliency: torch.Tensor, mask: torch.Tensor, thresholds: Sequence[float] | torch.Tensor | None = None,
            *, void: int | None = VOID) -> torch.Tensor:
    """Per-image area under the IoU-threshold curve: mask agreement at every threshold at once.

    The IoU of ``S >= t`` with the mask (:func:`iou_curve`) is integrated over ``t`` by the trapezoid
    rule and divided by the span of the thresholds, so the result is the curve's mean height in [0, 1].
    With the default thresholds ``0, 0.05, ..., 1`` it is the area under the curve on [0, 1]. The
    all-ones map scores the mask's share ``f`` of the valid pixels (its IoU is ``f`` at every threshold);
    a binary map equal to the mask scores ``1 - (1 - f) * dt / 2`` with ``dt`` the first threshold step
    (at ``t = 0`` every pixel is predicted, so the IoU there is ``f`` for any map): 1 up to that step.

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        As in :func:`iou` (maps in [0, 1]).
    thresholds : sequence of float, length T >= 2
        Increasing values in [0, 1]; default :func:`default_thresholds` (21 values).
    void : int or None
        Label of ignored pixels.

    Returns
    -------
    torch.Tensor, shape (B,)
        In [0, 1] (higher is better); NaN where the mask has no foreground on the valid pixels (the IoU is
        then 0 or undefined at every threshold, whatever the map).
    """
    t = default_thresholds() if thresholds is None else torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if t.numel() < 2 or bool((t[1:] <= t[:-1]).any()) or float(t[0]) < 0 or float(t[-1]) > 1:
        raise ValueError(f"iou_auc needs at least two increasing thresholds in [0, 1], got {t.tolist()}")
    saliency = _check_maps(saliency)
    curves = iou_curve(saliency, mask, t, void=void).double()  # (B, T); checks the range and the mask
    fg, _ = foreground_and_valid(_check_mask(mask, saliency, void), void)
    t = t.to(curves.device)
    area = ((curves[:, 1:] + curves[:, :-1]) * (t[1:] - t[:-1]) / 2).sum(-1) / (t[-1] - t[0])
    area = torch.where(fg.flatten(1).any(-1), area, torch.full_like(area, float("nan")))
    return area.to(saliency.dtype)


def _positive_relevance(saliency: torch.Tensor, mask: torch.Tensor, void: int | None):
    """Shared set-up of the relevance accuracies: positive part of the map, foreground, valid pixels."""
    saliency = _check_maps(saliency)
    mask = _check_mask(mask, saliency, void)
    fg, valid = foreground_and_valid(mask, void)
    R = saliency.clamp(min=0) * valid
    return R.flatten(1), fg.flatten(1), valid.flatten(1)


def relevance_mass_accuracy(saliency: torch.Tensor, mask: torch.Tensor, *, void: int | None = VOID) -> torch.Tensor:
    """Per-image relevance mass accuracy (Arras et al. 2022, CLEVR-XAI): ``sum_fg R / sum R``.

    ``R`` is the positive part of the map on the valid (non-void) pixels: the share of the map's positive
    relevance that falls inside the mask. No threshold. On a non-negative map (every map of the book, in
    [0, 1]) it equals :func:`energy_pointing_game` computed against the same mask; the two names come
    from two literatures (CLEVR-XAI, Score-CAM's bounding-box version).

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        Finite maps (any sign; negative values count as 0); integer masks as in :func:`iou`.

    Returns
    -------
    torch.Tensor, shape (B,)
        In [0, 1] (higher is better). The all-ones map scores the mask's share of the valid pixels, a map
        that is zero outside the mask scores 1. NaN where the mask has no foreground on the valid pixels, or
        where the map has no positive value on them (an all-zero map ranks nothing).
    """
    R, fg, _ = _positive_relevance(saliency, mask, void)
    total = R.sum(-1)
    inside = (R * fg).sum(-1)
    ok = (total > 0) & fg.any(-1)
    return torch.where(ok, inside / total.clamp(min=torch.finfo(total.dtype).tiny), torch.full_like(total, float("nan")))


def relevance_rank_accuracy(saliency: torch.Tensor, mask: torch.Tensor, *, void: int | None = VOID) -> torch.Tensor:
    """Per-image relevance rank accuracy (Arras et al. 2022, CLEVR-XAI): share of the top-K pixels in the mask.

    With ``K`` the number of foreground pixels (valid ones), the ``K`` valid pixels of highest relevance
    ``R`` (the map's positive part) are taken, and the accuracy is the fraction of them inside the mask.
    No threshold. **Ties** at the K-th value are shared out evenly (the expected value when ties are
    broken at random), not in raster order: with ``t`` the K-th largest value,

    ``(#{fg : R > t} + (K - #{R > t}) * #{fg : R = t} / #{R = t}) / K``.

    So a constant positive map (the all-ones map) scores the mask's share of the valid pixels, the chance
    level, and a map whose K largest values are exactly the mask scores 1.

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        Finite maps (negative values count as 0); integer masks as in :func:`iou`.

    Returns
    -------
    torch.Tensor, shape (B,)
        In [0, 1] (higher is better); NaN where the mask has no foreground on the valid pixels (K = 0) or the
        map has no positive value on them.
    """
    R, fg, valid = _positive_relevance(saliency, mask, void)
    # void pixels rank below every valid one (even a zero-relevance one)
    ranked = R.masked_fill(~valid, float("-inf"))
    K = fg.sum(-1)
    k_idx = (K - 1).clamp(min=0)
    t = torch.sort(ranked, dim=-1, descending=True).values.gather(-1, k_idx[:, None])  # (B, 1): K-th value
    above = ranked > t
    tied = ranked == t
    n_tied = tied.sum(-1).to(R.dtype)
    hits = (above & fg).sum(-1).to(R.dtype) + (K - above.sum(-1)).to(R.dtype) * (tied & fg).sum(-1).to(R.dtype) \
        / n_tied.clamp(min=1)
    ok = (K > 0) & (R.sum(-1) > 0)
    return torch.where(ok, hits / K.clamp(min=1).to(R.dtype), torch.full_like(hits, float("nan")))


def mse(saliency: torch.Tensor, mask: torch.Tensor, *, void: int | None = VOID) -> torch.Tensor:
    """Per-image mean squared error ``mean((S - [mask > 0])^2)`` over the non-void pixels.

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        Maps in [0, 1] (outside, NaN or Inf raise ``ValueError``); integer masks as in :func:`iou`.

    Returns
    -------
    torch.Tensor, shape (B,)
        In [0, 1] (lower is better). An image whose mask has no foreground is defined (the mean of
        ``S^2``); NaN only where every pixel is void.
    """
    saliency = _check_maps(saliency)
    _check_unit_range(saliency)
    mask = _check_mask(mask, saliency, void)
    fg, valid = foreground_and_valid(mask, void)
    err = (saliency - fg.to(saliency.dtype)) ** 2 * valid
    n = valid.flatten(1).sum(-1).to(saliency.dtype)
    total = err.flatten(1).sum(-1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("nan")))


def energy_pointing_game(saliency: torch.Tensor, mask: torch.Tensor, *, void: int | None = VOID) -> torch.Tensor:
    """Per-image energy-based pointing game (Wang et al. 2020, Score-CAM): ``sum_fg S / sum S``.

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        Non-negative maps; integer masks as in :func:`iou` (void pixels leave both sums).

    Returns
    -------
    torch.Tensor, shape (B,)
        Fraction of the map's energy inside the foreground, in [0, 1] (higher is better); NaN where the
        map is zero on every valid pixel, and where the mask has no foreground on them (nothing to find:
        as :func:`relevance_mass_accuracy`, which it equals on these non-negative maps).
    """
    saliency = _check_maps(saliency)
    if bool((saliency < 0).any()):
        raise ValueError("the energy pointing game needs a non-negative map (min-max normalise it first)")
    mask = _check_mask(mask, saliency, void)
    fg, valid = foreground_and_valid(mask, void)
    total = (saliency * valid).flatten(1).sum(-1)
    inside = (saliency * fg).flatten(1).sum(-1)
    ok = (total > 0) & fg.flatten(1).any(-1)
    return torch.where(ok, inside / total.clamp(min=torch.finfo(total.dtype).tiny),
                       torch.full_like(total, float("nan")))


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor, *, void: int | None = VOID,
                  tolerance: float = 0) -> torch.Tensor:
    """Per-image pointing game hit (Zhang et al. 2016): is the map's maximum on the foreground?

    The maximum is taken over non-void pixels; ties count as a hit if any maximal pixel is foreground.
    A map that is constant on the valid pixels (an all-zero map, a dead Grad-CAM, the all-ones map) has
    no peak: every pixel ties, and such a map would "hit" any non-empty mask, so it scores NaN instead
    (as :func:`energy_pointing_game` and the relevance accuracies do for an all-zero map).

    Parameters
    ----------
    saliency, mask : torch.Tensor, shape (B, H, W)
        Finite maps; integer masks as in :func:`iou`.
    void : int or None
        Label of ignored pixels.
    tolerance : float
        A peak also hits when a foreground pixel lies within this Euclidean distance, in pixels of the
        map (a disk around the peak, as TorchRay's ``pointing_game``). Zhang et al. allow 15 px, to absorb
        the offset of a coarse map's peak; ``tolerance=15`` gives their setting. The default, 0, is the
        rule the book's published numbers use: the maps are upsampled to the mask's resolution and the
        masks are hand-checked segmentations, so a hit means the peak is on the object itself.

    Returns
    -------
    torch.Tensor, shape (B,)
        1.0 for a hit, 0.0 for a miss, NaN where the mask has no foreground (the game cannot be played)
        or the map is constant on the valid pixels (no peak to point with).
    """
    saliency = _check_maps(saliency)
    mask = _check_mask(mask, saliency, void)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a distance >= 0 in pixels, got {tolerance}")
    fg, valid = foreground_and_valid(mask, void)
    s = saliency.masked_fill(~valid, float("-inf")).flatten(1)
    top = s.max(-1, keepdim=True).values if s.shape[-1] else s[:, :1]
    peak = s == top
    lowest = saliency.masked_fill(~valid, float("inf")).flatten(1)
    constant = (lowest.min(-1).values == top[:, 0]) if s.shape[-1] else torch.ones(s.shape[0], dtype=torch.bool,
                                                                                      device=s.device)
    target = fg
    if tolerance > 0:
        r = int(tolerance)
        t = torch.arange(-r, r + 1, device=saliency.device, dtype=torch.float64)
        disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= float(tolerance) ** 2).to(saliency.dtype)
        near = F.conv2d(fg[:, None].to(saliency.dtype), disk[None, None], padding=r)[:, 0] > 0
        target = near
    hit = (peak & target.flatten(1)).any(-1).to(saliency.dtype)
    ok = fg.flatten(1).any(-1) & ~constant
    return torch.where(ok, hit, torch.full_like(hit, float("nan")))


# ------------------------------------------------------------------------------- deletion/insertion
def _trapezoid(curve: torch.Tensor) -> torch.Tensor:
    """Area under ``curve`` (B, K+1) sampled at K+1 evenly spaced points of [0, 1]."""
    k = curve.shape[-1] - 1
    return (curve[..., 1:] + curve[..., :-1]).sum(-1) / (2 * k)


def deletion_insertion_auc(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, saliency: torch.Tensor,
                           *, steps: int = 20, deletion_baseline: Baseline | float = "black",
                           insertion_baseline: Baseline | float = "blur", chunk_size: int = 64,
                           return_curves: bool = False, **baseline_options):
    """Deletion and insertion AUC (Petsiuk et al. 2018, RISE), batched over images and steps.

    Pixels are ranked by decreasing saliency (ties in raster order). At step ``k = 0..steps`` the top
    ``round(k * N / steps)`` pixels (``N = H * W``) are *deleted* (replaced by ``deletion_baseline``) or
    *inserted* (copied from ``x`` onto ``insertion_baseline``); the score is recorded and the area under
    the curve is taken by the trapezoid rule over the removed fraction in [0, 1].

    Parameters
    ----------
    score_fn : callable
        ``score_fn(images (n, 3, H, W), index (n,)) -> (n,)``: the score of each image for the target of
        image ``index[j]`` of the batch (``index`` is a LongTensor of indices into ``x``). It is called on
        chunks of up to ``chunk_size`` images that mix images and steps, under ``torch.no_grad()``.
    x : torch.Tensor, shape (B, 3, H, W)
    saliency : torch.Tensor, shape (B, H, W)
    steps : int
        Number of intervals; ``steps + 1`` scores per image and curve.
    deletion_baseline, insertion_baseline : see :func:`baseline_image`
        Defaults follow RISE: delete to black, insert onto a blurred copy.

    Returns
    -------
    dict
        ``{"deletion": (B,), "insertion": (B,)}`` AUCs (deletion: lower is better, insertion: higher);
        with ``return_curves=True`` also ``"deletion_curve"`` and ``"insertion_curve"``, shape (B, steps+1).
    """
    saliency = _check_images_and_maps(x, saliency)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    B, _, H, W = x.shape
    N = H * W
    order = torch.sort(saliency.flatten(1).to(x.device), dim=1, descending=True, stable=True).indices
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(N, device=x.device).expand(B, N))  # rank of each pixel
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * N / steps).long().to(x.device)

    out = {}
    for kind, base_spec in (("deletion", deletion_baseline), ("insertion", insertion_baseline)):
        base = baseline_image(x, base_spec, **baseline_options)
        scores = torch.empty(B, steps + 1, dtype=torch.float64, device=x.device)
        pairs = [(b, k) for b in range(B) for k in range(steps + 1)]
        for start in range(0, len(pairs), chunk_size):
            chunk = pairs[start:start + chunk_size]
            bi = torch.tensor([b for b, _ in chunk], device=x.device)
            ki = torch.tensor([k for _, k in chunk], device=x.device)
            top = (position[bi] < counts[ki][:, None]).view(-1, 1, H, W).to(x.dtype)  # 1 = among top-k
            keep = 1 - top if kind == "deletion" else top
            imgs = keep * x[bi] + (1 - keep) * base[bi]
            s = _call_score(score_fn, imgs, bi)
            scores[bi, ki] = s.detach().to(torch.float64)
        out[kind] = _trapezoid(scores)
        if return_curves:
            out[f"{kind}_curve"] = scores
    return out


def _call_score(score_fn, imgs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        s = score_fn(imgs, index)
    s = torch.as_tensor(s).reshape(-1)
    if s.numel() != imgs.shape[0]:
        raise ValueError(f"score_fn returned {s.numel()} scores for {imgs.shape[0]} images")
    return s
