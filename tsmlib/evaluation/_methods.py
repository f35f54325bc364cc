"""Resolve a saliency method given by name (the ``tsmlib.cam`` registry) or as a callable."""

from __future__ import annotations

from typing import Callable, Mapping

import torch

#: ``fn(model, x, layer, targets) -> (B, H_in, W_in)`` maps in [0, 1] at the input resolution.
MapFunction = Callable[..., torch.Tensor]


def _registry_saliency(name: str, options: Mapping) -> MapFunction:
    from tsmlib.cam import method_info, saliency

    method_info(name)  # unknown names fail here, listing the registered ones, before any work is done

    def fn(model, x, layer, targets):
        return saliency(model, x, method=name, layer=layer, targets=targets, upsample=True, **options)

    fn.__name__ = name
    fn.registry_name = name          # lets the runner serve activation methods from one shared capture
    fn.registry_options = dict(options)
    return fn


def resolve_methods(methods, options: Mapping[str, Mapping] | None = None) -> dict[str, MapFunction]:
    """``{name: fn}`` from a list of registry names and/or callables, or a ``{name: callable}`` dict.

    ``options`` maps a method name to keyword arguments passed to ``tsmlib.saliency`` for that method
    (e.g. ``{"mtsm": {"k": 5}}``). Callables are used as given: ``fn(model, x, layer, targets)``.
    """
    options = dict(options or {})
    if isinstance(methods, (str, bytes)) or callable(methods):
        methods = [methods]
    items = methods.items() if isinstance(methods, Mapping) else [
        (m if isinstance(m, str) else getattr(m, "__name__", repr(m)), m) for m in methods
    ]
    out: dict[str, MapFunction] = {}
    for name, m in items:
        if name in out:
            raise ValueError(f"method {name!r} is listed twice")
        if isinstance(m, str):
            out[name] = _registry_saliency(m, options.get(name, {}))
        elif callable(m):
            out[name] = m
        else:
            raise TypeError(f"a method must be a registry name or a callable, got {type(m).__name__}")
    unknown = set(options) - set(out)
    if unknown:
        raise ValueError(f"options given for methods that are not evaluated: {sorted(unknown)}")
    return out


def check_map_batch(maps: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a method's output: (B, H_in, W_in), finite, in [0, 1]."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"method {name!r} returned {type(maps).__name__}, expected a (B, H, W) tensor")
    want = (x.shape[0], *x.shape[-2:])
    if tuple(maps.shape) != want:
        raise ValueError(f"method {name!r} returned maps of shape {tuple(maps.shape)}, expected {want}")
    maps = maps.detach()
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"method {name!r} returned NaN/Inf maps")
    if maps.numel():
        lo, hi = float(maps.min()), float(maps.max())
        if lo < -1e-4 or hi > 1 + 1e-4:  # the tolerance of the metrics' own range check
            raise ValueError(f"method {name!r} returned maps outside [0, 1] (values in [{lo:.4g}, {hi:.4g}]); "
                             "min-max normalise them (tsmlib.minmax_normalize)")
    return maps


def method_maps(model, x: torch.Tensor, fns: Mapping[str, MapFunction], layer, targets=None, *,
                layer_gradients: bool = False) -> dict[str, torch.Tensor]:
    """Every method's maps for one batch, the activation methods served by one shared capture.

    Registry methods resolved by name (:func:`resolve_methods`) that have an activation-level function
    (``MethodInfo.map_fn``: EigenCAM, TSM, Multivec-EigenCAM, MTSM, LaFAM and their variants) are computed
    from one no-grad forward pass of ``model`` on ``x`` (:func:`tsmlib.hooks.capture_activations`),
    normalised and upsampled exactly as :func:`tsmlib.saliency` does; every other method runs as
    ``fn(model, x, layer, targets)``.

    Parameters
    ----------
    model : nn.Module
    x : torch.Tensor, shape (B, 3, H, W)
    fns : dict name -> callable
        As returned by :func:`resolve_methods`.
    layer : str or nn.Module
    targets : LongTensor (B,), optional
        Classes for the label-dependent methods.
    layer_gradients : bool
        Run the registry's other methods under :class:`tsmlib.hooks.layer_gradients_only`: their
        backward passes stop at ``layer``. Exact for every registered method (the Grad-CAM family needs
        gradients at the layer only; the rest use none) and about three times cheaper for a late layer;
        callables given by the user always run without it (they may need input gradients).

    Returns
    -------
    dict name -> torch.Tensor, shape (B, H, W), detached, validated by :func:`check_map_batch`
    """
    from tsmlib.cam import _finish, method_info
    from tsmlib.hooks import capture_activations, layer_gradients_only

    shared = {}
    for name, fn in fns.items():
        registry_name = getattr(fn, "registry_name", None)
        if registry_name is not None and method_info(registry_name).map_fn is not None:
            shared[name] = method_info(registry_name).map_fn
    A = capture_activations(model, x, layer) if shared else None
    out = {}
    for name, fn in fns.items():
        if name in shared:
            maps = _finish(shared[name](A, normalize=False, **fn.registry_options), x, True, True)
        elif layer_gradients and getattr(fn, "registry_name", None) is not None:
            with layer_gradients_only(model, layer):
                maps = fn(model, x, layer, targets)
        else:
            maps = fn(model, x, layer, targets)
        out[name] = check_map_batch(maps, x, name)
    return out
