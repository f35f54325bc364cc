"""Model-level API: compute any registered saliency method for a batch, normalise, upsample.

One interface for every method, ours and the baselines::

    maps = tsmlib.saliency(model, x, method="mtsm", layer="layer4")   # (B, H_in, W_in) in [0, 1]
    res = tsmlib.saliency(model, x, "mtsm", layer="layer4", return_details=True)
    res.maps, res.raw, res.output                                      # final maps, raw maps, logits
    tsmlib.cam.saliency_maps(model, x, ["tsm", "mtsm", "lafam"], layer="layer4")  # one forward pass

:func:`saliency_maps` is the one path from method names (or the user's own callables) to maps: the
evaluation runner and the sanity check call it for every batch.

The registry lives in :mod:`tsmlib.registry` and the hooks in :mod:`tsmlib.hooks`; their public
names are re-exported here (``tsmlib.cam.ActivationCapture``, ``tsmlib.cam.method_info``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import torch
from torch import nn

from . import methods as _methods
from .hooks import ActivationCapture, capture_activations, in_eval_mode, layer_gradients_only, resolve_layer
from .registry import (
    MethodInfo,
    UnknownNameError,
    activation_method,
    available_methods,
    method_info,
    register_method,
    unregister_method,
)

__all__ = [
    # this module
    "SaliencyResult", "saliency", "saliency_maps", "resolve_methods", "Method",
    # re-exported from tsmlib.hooks and tsmlib.registry (their home; see the module docstring)
    "ActivationCapture", "capture_activations", "resolve_layer",
    "MethodInfo", "UnknownNameError", "register_method", "unregister_method", "available_methods", "method_info",
    "activation_method",
]


@dataclass(frozen=True)
class SaliencyResult:
    """What :func:`saliency` computed for one method.

    maps : (B, H, W)
        The final maps: normalised and upsampled as asked (what ``saliency`` returns by default).
    raw : (B, h, w)
        The method's maps before normalisation and upsampling, at the layer's resolution.
    output : tensor
        The model's output (logits) of the shared no-grad forward pass of :func:`saliency_maps` (the one
        that served the activation methods and chose the default targets).
    """

    maps: torch.Tensor
    raw: torch.Tensor
    output: torch.Tensor | None


#: A method as :func:`saliency_maps` takes it: a registry name, a registry entry, or a callable
#: ``fn(model, x, layer, targets) -> (B, H, W)`` whose maps are final.
Method = Union[str, MethodInfo, Callable[..., torch.Tensor]]


def _finish(raw: torch.Tensor, x: torch.Tensor, upsample: bool, normalize: bool) -> torch.Tensor:
    if normalize and raw.ndim >= 2 and raw.shape[-2:] == (1, 1):
        import warnings

        warnings.warn("the target layer's output is 1 x 1: a one-pixel map min-max normalises to all zeros "
                      "and says nothing about where; choose an earlier layer (one with a spatial grid, e.g. "
                      "a ResNet's 'layer4' rather than 'avgpool', or a larger input)", UserWarning, stacklevel=3)
    maps = _methods.minmax_normalize(raw) if normalize else raw
    return _methods.upsample(maps, x.shape[-2:]) if upsample else maps


def _check(x, layer, need_layer: bool = True) -> None:
    if layer is None and need_layer:
        raise ValueError("layer is required: pass the target layer or its dotted name (e.g. 'layer4' for a ResNet)")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {getattr(x, 'shape', type(x))}")


def _checked_maps(maps, x: torch.Tensor, name: str, full_size: bool, unit: bool) -> torch.Tensor:
    """A method's final maps, detached: a (B, h, w) tensor of finite values, (B, H_in, W_in) when
    ``full_size``, in [0, 1] when ``unit``; a clear error naming the method otherwise."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"method {name!r} returned {type(maps).__name__}, expected a (B, H, W) tensor")
    if maps.ndim != 3 or maps.shape[0] != x.shape[0] or (full_size and maps.shape[-2:] != x.shape[-2:]):
        want = f"({x.shape[0]}, {x.shape[-2]}, {x.shape[-1]})" if full_size else f"({x.shape[0]}, h, w)"
        raise ValueError(f"method {name!r} returned maps of shape {tuple(maps.shape)}, expected {want}")
    maps = maps.detach()
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"method {name!r} returned NaN/Inf maps")
    if unit and maps.numel():
        lo, hi = float(maps.min()), float(maps.max())
        if lo < -1e-4 or hi > 1 + 1e-4:  # the tolerance of the metrics' own range check
            raise ValueError(f"method {name!r} returned maps outside [0, 1] (values in [{lo:.4g}, {hi:.4g}]); "
                             "min-max normalise them (tsmlib.minmax_normalize)")
    return maps


def resolve_methods(methods, options: Mapping[str, Mapping] | None = None) -> dict[str, MethodInfo | Callable]:
    """Methods as :func:`saliency_maps` runs them: ``{key: registry entry or callable}``.

    Parameters
    ----------
    methods : str, callable, sequence of them, or mapping key -> :data:`Method`
        Registry names (looked up here, once: an unknown name raises :class:`UnknownNameError` listing
        the registered ones), registry entries (:class:`MethodInfo`, kept), and callables
        ``fn(model, x, layer, targets) -> (B, H, W)`` (kept). A name is its own key, a callable is keyed
        by its ``__name__``; a mapping gives the keys (``{"TSM, k=2": "tsm"}``).
    options : mapping key -> dict, optional
        Keyword arguments per registry method, checked here: a key that is not among the methods, or
        that names a callable (which takes no options), raises ``ValueError``.

    Returns
    -------
    dict
        In the order given. Already resolved methods pass through unchanged, so resolving once and
        handing the result to :func:`saliency_maps` for every batch looks nothing up again.
    """
    if isinstance(methods, (str, MethodInfo)) or callable(methods):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        items = [(m if isinstance(m, str) else m.name if isinstance(m, MethodInfo) else getattr(m, "__name__", repr(m)), m)
                 for m in methods]
    out: dict[str, MethodInfo | Callable] = {}
    for key, m in items:
        if key in out:
            raise ValueError(f"method {key!r} is listed twice")
        if isinstance(m, str):
            out[key] = method_info(m)
        elif isinstance(m, MethodInfo) or callable(m):
            out[key] = m
        else:
            raise TypeError(f"a method must be a registry name, a MethodInfo or a callable, got {type(m).__name__}")
    for key in options or {}:
        if key not in out:
            raise ValueError(f"options given for {key!r}, which is not among the methods {list(out)}")
        if not isinstance(out[key], MethodInfo):
            raise ValueError(f"options given for {key!r}, a callable: only registry methods take options")
    return out


@in_eval_mode
def saliency_maps(
    model: nn.Module,
    x: torch.Tensor,
    methods,
    layer: nn.Module | str | None = None,
    targets: torch.Tensor | None = None,
    *,
    upsample: bool = True,
    normalize: bool = True,
    reshape_transform: Callable | None = None,
    options: Mapping[str, Mapping] | None = None,
    layer_gradients: bool = False,
) -> dict[str, SaliencyResult]:
    """Several methods on one batch, with one forward pass for all the activation methods.

    One no-grad forward pass records the model's output and the layer's activations; every method
    with an activation-level function (``MethodInfo.map_fn``: EigenCAM, TSM, Multivec-EigenCAM, MTSM,
    LaFAM and their variants) is computed from them. The other registry methods run their own passes,
    explaining ``targets``; callables run as ``fn(model, x, layer, targets)``. Without activation
    methods, the shared pass records the output alone.

    Parameters
    ----------
    model, x, layer, upsample, normalize, reshape_transform
        As for :func:`saliency`. ``layer`` may be None only when every method is a yardstick or a
        callable.
    methods : str, callable, sequence of them, or mapping key -> name, :class:`MethodInfo` or callable
        See :func:`resolve_methods`. A callable's maps are taken as final: validated, neither normalised
        nor upsampled.
    targets : LongTensor (B,), optional
        Classes explained by the label-dependent methods and passed to callables. Default: the class
        predicted by the shared forward pass (when the model's output is (B, K)).
    options : mapping key -> dict, optional
        Keyword arguments per registry method (``{"mtsm": {"k": 5}}``).
    layer_gradients : bool
        Run the registry methods that need their own passes under
        :class:`tsmlib.hooks.layer_gradients_only`: their backward passes stop at ``layer``. Exact for
        every built-in method (the Grad-CAM family needs gradients at the layer only) and about three
        times cheaper for a late layer. Callables always run without it (they may need input gradients).

    Returns
    -------
    dict
        ``{key: SaliencyResult}`` in the order of ``methods``; every result holds the output of the
        shared forward pass. Maps are detached and checked: (B, h, w), finite, (B, H_in, W_in) when
        ``upsample`` (callables always), in [0, 1] when ``normalize`` (callables' too: their maps are final).
    """
    resolved = resolve_methods(methods, options)
    registry = [m for m in resolved.values() if isinstance(m, MethodInfo)]
    _check(x, layer, need_layer=any(m.family != "yardstick" for m in registry))
    options = dict(options or {})
    shared = any(m.map_fn is not None for m in registry)
    label_dependent = len(registry) < len(resolved) or not all(m.label_free for m in registry)  # callables may be
    if shared:
        A, output = capture_activations(model, x, layer, reshape_transform, return_output=True)
    elif model is None:  # the yardsticks look at no model
        A, output = None, None
    else:  # no activation method: the output alone (the layer need not even be a module name here)
        with torch.no_grad():
            A, output = None, model(x)
    if targets is None and label_dependent and isinstance(output, torch.Tensor) and output.ndim == 2:
        targets = output.argmax(dim=1)
    out = {}
    for key, m in resolved.items():
        if not isinstance(m, MethodInfo):
            maps = _checked_maps(m(model, x, layer, targets), x, key, full_size=True, unit=normalize)
            out[key] = SaliencyResult(maps, maps, output)
            continue
        opts = dict(options.get(key, {}))
        if m.map_fn is not None:
            raw = m.map_fn(A, normalize=False, **opts)
        elif layer_gradients and layer is not None:
            with layer_gradients_only(model, layer):
                raw = m.fn(model, x, layer, targets, reshape_transform=reshape_transform, **opts)
        else:
            raw = m.fn(model, x, layer, targets, reshape_transform=reshape_transform, **opts)
        maps = _checked_maps(_finish(raw, x, upsample, normalize and not m.normalized), x, key, full_size=upsample,
                             unit=normalize)
        out[key] = SaliencyResult(maps, raw, output)
    return out


@in_eval_mode
def saliency(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "tsm",
    layer: nn.Module | str | None = None,
    targets: torch.Tensor | None = None,
    *,
    upsample: bool = True,
    normalize: bool = True,
    reshape_transform: Callable | None = None,
    return_details: bool = False,
    **options,
):
    """Saliency maps of ``model`` for a batch of inputs, by any registered method.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode for the call, whatever its mode (:func:`tsmlib.hooks.eval_mode`: BatchNorm with
        its running statistics, no dropout); every module's mode is restored after, its buffers and the
        parameters' ``.grad`` are left as they were.
    x : (B, 3, H_in, W_in)
        Model input.
    method : str
        A name from :func:`available_methods`: "eigencam", "tsm", "multivec-eigencam", "mtsm", and the
        baselines ("gradcam", "gradcam++", ..., "lafam").
    layer : nn.Module or str
        The target layer (required); registry models carry theirs as ``LoadedModel.target_layer``.
    targets : LongTensor (B,), optional
        Classes for label-dependent methods (default: the class predicted on ``x``). Ignored by
        label-free methods.
    upsample : bool
        Bilinearly upsample to (H_in, W_in) (default) or keep the layer's resolution.
    normalize : bool
        Min-max normalise each map to [0, 1] at the layer's resolution (default), before upsampling, as
        the evaluation protocol does; bilinear upsampling keeps the values in [0, 1] (the maximum of the
        upsampled map can be slightly below 1). Methods registered with ``normalized=True`` (the
        whole-image yardstick, whose constant map min-max normalisation would turn into zeros) are
        returned as they are.
    return_details : bool
        Return a :class:`SaliencyResult` (final maps, raw maps, model output) instead of the maps.
        The model output comes from the same forward pass as the activations (one more no-grad
        pass for label-dependent methods, whose targets then default to its prediction).
    **options
        Passed to the method (e.g. ``ranks=(49, 4, 4)`` for TSM, ``k=5`` for MTSM).

    Returns
    -------
    (B, H_in, W_in) tensor on ``x``'s device, or a :class:`SaliencyResult`.
    """
    info = method_info(method)
    _check(x, layer, need_layer=info.family != "yardstick")  # the yardsticks look at no layer
    if return_details:
        return saliency_maps(model, x, {method: info}, layer, targets, upsample=upsample, normalize=normalize,
                             reshape_transform=reshape_transform, options={method: options})[method]
    raw = info.fn(model, x, layer, targets, reshape_transform=reshape_transform, **options)
    return _finish(raw, x, upsample, normalize and not info.normalized)
