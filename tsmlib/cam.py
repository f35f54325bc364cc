"""Model-level API: compute any registered saliency method for a batch, normalise, upsample.

One interface for every method, ours and the baselines::

    maps = tsmlib.saliency(model, x, method="mtsm", layer="layer4")   # (B, H_in, W_in) in [0, 1]
    res = tsmlib.saliency(model, x, "mtsm", layer="layer4", return_details=True)
    res.maps, res.raw, res.output                                      # final maps, raw maps, logits
    tsmlib.cam.saliency_maps(model, x, ["tsm", "mtsm", "lafam"], layer="layer4")  # one forward pass

The registry lives in :mod:`tsmlib.registry` and the hooks in :mod:`tsmlib.hooks`; their public
names are re-exported here (``tsmlib.cam.ActivationCapture``, ``tsmlib.cam.method_info``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from . import methods as _methods
from .hooks import ActivationCapture, capture_activations, in_eval_mode, resolve_layer
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
    "SaliencyResult", "saliency", "saliency_maps",
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
    output : tensor or None
        The model's output (logits) of the forward pass that served the method, None if no
        forward pass of the model's full output was run for it.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    output: torch.Tensor | None


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


@in_eval_mode
def saliency_maps(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str],
    layer: nn.Module | str | None = None,
    targets: torch.Tensor | None = None,
    *,
    upsample: bool = True,
    normalize: bool = True,
    reshape_transform: Callable | None = None,
    options: Mapping[str, Mapping] | None = None,
) -> dict[str, SaliencyResult]:
    """Several methods on one batch, with one forward pass for all the activation methods.

    One no-grad forward pass records the model's output and the layer's activations; every method
    with an activation-level function (``MethodInfo.map_fn``: EigenCAM, TSM, Multivec-EigenCAM, MTSM,
    LaFAM) is computed from them. The other methods run their own passes, explaining ``targets`` or,
    when None, the class predicted by that shared forward pass.

    Parameters are those of :func:`saliency`; ``options`` maps a method name to its keyword arguments.

    Returns
    -------
    dict
        ``{method name as given: SaliencyResult}``, in the order of ``methods``.
    """
    _check(x, layer)
    infos = {m: method_info(m) for m in methods}  # unknown names fail before any work
    options = dict(options or {})
    A, output = capture_activations(model, x, layer, reshape_transform, return_output=True)
    if targets is None and not all(i.label_free for i in infos.values()) and isinstance(output, torch.Tensor) \
            and output.ndim == 2:
        targets = output.argmax(dim=1)
    out = {}
    for m, info in infos.items():
        opts = dict(options.get(m, {}))
        if info.map_fn is not None:
            raw = info.map_fn(A, normalize=False, **opts)
        else:
            raw = info.fn(model, x, layer, targets, reshape_transform=reshape_transform, **opts)
        out[m] = SaliencyResult(_finish(raw, x, upsample, normalize and not info.normalized), raw, output)
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
        return saliency_maps(model, x, [method], layer, targets, upsample=upsample, normalize=normalize,
                             reshape_transform=reshape_transform, options={method: options})[method]
    raw = info.fn(model, x, layer, targets, reshape_transform=reshape_transform, **options)
    return _finish(raw, x, upsample, normalize and not info.normalized)
