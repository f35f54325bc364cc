"""Helpers of the method and ablation chapters: the EigenCAM orientation check, and named method variants
for the evaluation runner.

* :func:`saliency_grid`, :func:`component_grid` -- :func:`tsmlib.plotting.saliency_grid` and
  :func:`tsmlib.plotting.component_figure` under their old names.
* :func:`orientation_scores` -- how much of a map's energy lies inside the object mask, for a map and
  for the map of the opposite sign: the computation that finds inverted EigenCAM maps.
* :func:`method_variant` -- register ``"mtsm[k=5]"`` and the like, so that
  :func:`tsmlib.evaluation.evaluate` (which takes method *names*) can sweep an option. Variants of the
  four activation methods share one forward pass per batch (the activations are memoised).
"""

from __future__ import annotations

import torch

__all__ = ["saliency_grid", "component_grid", "orientation_scores", "method_variant", "variant_name",
           "clear_activation_memo"]

# --------------------------------------------------------------------------------------- variants
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
# The grids live in tsmlib.plotting (one figure module); the old names stay for the notebooks.
from .plotting import component_figure as component_grid  # noqa: E402
from .plotting import saliency_grid  # noqa: E402
