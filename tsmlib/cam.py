"""Model-level API: capture a layer's activations, compute any registered saliency method, upsample.

One interface for every method, ours and the baselines::

    maps = tsmlib.saliency(model, x, method="mtsm", layer="layer4")   # (B, H_in, W_in) in [0, 1]

Methods live in a registry (:func:`register_method`); this module registers the four label-free methods
of :mod:`tsmlib.methods`, and :mod:`tsmlib.baselines` registers the Grad-CAM family.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from . import methods as _methods

__all__ = [
    "ActivationCapture",
    "resolve_layer",
    "register_method",
    "available_methods",
    "method_info",
    "saliency",
    "activation_method",
]


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """The target layer: a module of ``model`` itself, or its dotted name (``"layer4"``, ``"features.29"``)."""
    if isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be an nn.Module or a dotted module name, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(layer, names, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" Top-level modules: {', '.join(n for n in names if '.' not in n)}."
        raise ValueError(f"model has no submodule {layer!r}.{hint}") from None


class ActivationCapture:
    """Context manager that records the output of one layer during forward passes.

    Parameters
    ----------
    model : nn.Module
    layer : nn.Module or str
        The target layer or its dotted name in ``model``.
    reshape_transform : callable, optional
        Applied to the layer output before it is stored, e.g. to turn ViT tokens (B, N, D) into
        (B, D, h, w) feature maps.
    detach : bool
        Store a detached tensor (default). ``False`` keeps the graph, for gradient-based methods.

    Examples
    --------
    >>> with ActivationCapture(model, "layer4") as cap:   # doctest: +SKIP
    ...     logits = model(x)
    >>> cap.activations.shape                              # doctest: +SKIP
    torch.Size([B, 2048, 7, 7])

    The hook is removed on exit (or by :meth:`release`), also when the forward pass raises.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str, reshape_transform: Callable | None = None, detach: bool = True):
        self.module = resolve_layer(model, layer)
        self.reshape_transform = reshape_transform
        self.detach = detach
        self.activations: torch.Tensor | None = None
        self._handle = None

    def _hook(self, module, inputs, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        if self.reshape_transform is not None:
            output = self.reshape_transform(output)
        self.activations = output.detach() if self.detach else output

    def __enter__(self) -> "ActivationCapture":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def release(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __exit__(self, *exc) -> None:
        self.release()


class MethodFn(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, layer, targets, **options) -> torch.Tensor: ...


@dataclass(frozen=True)
class MethodInfo:
    """A registered saliency method: ``fn(model, x, layer, targets, **options) -> (B, h, w)``."""

    name: str
    fn: MethodFn
    label_free: bool
    description: str = ""


_REGISTRY: dict[str, MethodInfo] = {}


def register_method(name: str, fn: MethodFn, *, label_free: bool, description: str = "", overwrite: bool = False) -> None:
    """Add a saliency method to the registry used by :func:`saliency`.

    ``fn(model, x, layer, targets, **options)`` returns maps (B, h, w) at any resolution, raw or
    normalised; :func:`saliency` normalises (unless told not to) and upsamples them. ``options``
    always holds ``reshape_transform`` (None unless the caller gave one). ``targets`` is None or a LongTensor (B,) of classes.
    """
    key = name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"a saliency method named {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[key] = MethodInfo(key, fn, label_free, description)


def available_methods(label_free: bool | None = None) -> list[str]:
    """Names of the registered methods (all, or only the label-free / label-dependent ones)."""
    _load_baselines()
    return [n for n, m in _REGISTRY.items() if label_free is None or m.label_free == label_free]


def method_info(name: str) -> MethodInfo:
    """The registry entry of ``name`` (case-insensitive); ``ValueError`` listing the choices otherwise."""
    _load_baselines()
    try:
        return _REGISTRY[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown saliency method {name!r}; available: {', '.join(_REGISTRY)}") from None


def _load_baselines() -> None:
    """Register the Grad-CAM-family baselines the first time the registry is queried (if present)."""
    try:
        from . import baselines  # noqa: F401  (registers on import)
    except ImportError as err:  # pragma: no cover - only if the module or grad-cam is missing
        if "baselines" not in str(err) and "pytorch_grad_cam" not in str(err):
            raise


def activation_method(map_fn: Callable[..., torch.Tensor]) -> MethodFn:
    """Wrap an activation-only map function ``f(A, **options) -> (B, H, W)`` as a registry method.

    The wrapped method runs one forward pass without gradients, captures the layer output and applies
    ``map_fn(A, normalize=False, **options)`` to it: raw maps, which :func:`saliency` normalises. It
    accepts ``reshape_transform`` like :class:`ActivationCapture`.
    """

    def run(model, x, layer, targets=None, *, reshape_transform=None, **options):
        with ActivationCapture(model, layer, reshape_transform) as cap, torch.no_grad():
            model(x)
        if cap.activations is None:
            raise RuntimeError(f"layer {layer!r} did not run during the forward pass; is it part of the model's forward?")
        return map_fn(cap.activations, normalize=False, **options)

    run.__doc__ = f"Registry wrapper of :func:`{map_fn.__module__}.{map_fn.__name__}`."
    return run


register_method("eigencam", activation_method(_methods.eigencam), label_free=True,
                description="First principal component of the centred feature matrix, deterministic sign")
register_method("tsm", activation_method(_methods.tsm), label_free=True,
                description="Tucker Saliency Map: first channel factor of the HOOI decomposition")
register_method("multivec-eigencam", activation_method(_methods.multivec_eigencam), label_free=True,
                description="All EigenCAM components, sigma-weighted")
register_method("mtsm", activation_method(_methods.mtsm), label_free=True,
                description="Multivector TSM: all Tucker channel components, weighted by the core slice norms")


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
    **options,
) -> torch.Tensor:
    """Saliency maps of ``model`` for a batch of inputs, by any registered method.

    Parameters
    ----------
    model : nn.Module
        In eval mode (this function does not change it).
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
        upsampled map can be slightly below 1).
    **options
        Passed to the method (e.g. ``ranks=(49, 4, 4)`` for TSM, ``k=5`` for MTSM).

    Returns
    -------
    (B, H_in, W_in) tensor on ``x``'s device.
    """
    info = method_info(method)
    if layer is None:
        raise ValueError("layer is required: pass the target layer or its dotted name (e.g. 'layer4' for a ResNet)")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {getattr(x, 'shape', type(x))}")
    maps = info.fn(model, x, layer, targets, reshape_transform=reshape_transform, **options)
    if normalize:
        maps = _methods.minmax_normalize(maps)
    if upsample:
        maps = _methods.upsample(maps, x.shape[-2:])
    return maps
