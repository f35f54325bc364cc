"""The saliency-method registry: one entry per name, ours and the baselines, loaded on first use.

Built-in entries are declared here as ``"module:function"`` strings and imported only when a method's
function is needed, so importing tsmlib never imports :mod:`tsmlib.baselines` (nor pytorch-grad-cam),
and nothing re-registers behind the user's back: a user's ``register_method("lafam", ...,
overwrite=True)`` stays until the user changes it again. Names follow the lookup rule of
:mod:`tsmlib._names` (case-insensitive, ``_`` = ``-``), shared with the model registry.

A method is ``fn(model, x, layer, targets, **options) -> (B, h, w)`` raw maps; an *activation* method
also has ``map_fn(A, normalize=False, **options)``, a function of the layer's activations alone, which
lets :func:`tsmlib.cam.saliency_maps` serve several such methods from one forward pass.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Callable, Protocol, Union

import torch
from torch import nn

from ._names import UnknownNameError, normalize_name, unknown_name
from .hooks import capture_activations

__all__ = [
    "MethodInfo",
    "UnknownNameError",
    "register_method",
    "unregister_method",
    "available_methods",
    "method_info",
    "activation_method",
    "BUILTIN_DESCRIPTIONS",
]


class MethodFn(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, layer, targets, **options) -> torch.Tensor: ...


#: A function, or where to import it from: ``"package.module:attribute"``.
Target = Union[Callable, str]


def _load(target: Target | None):
    if target is None or callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True, eq=False)
class MethodInfo:
    """A registered saliency method.

    ``fn(model, x, layer, targets, **options) -> (B, h, w)``; ``map_fn(A, normalize=False, **options)``
    for activation methods (None otherwise). Both are imported on first access when registered as
    ``"module:function"`` strings.
    """

    name: str
    target: Target | None
    label_free: bool
    description: str = ""
    map_target: Target | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def map_fn(self) -> Callable[..., torch.Tensor] | None:
        """The activation-level function, or None for methods that need more than one forward pass."""
        if "map_fn" not in self._cache:
            self._cache["map_fn"] = _load(self.map_target)
        return self._cache["map_fn"]

    @property
    def fn(self) -> MethodFn:
        if "fn" not in self._cache:
            fn = _load(self.target)
            self._cache["fn"] = fn if fn is not None else activation_method(self.map_fn)
        return self._cache["fn"]


_REGISTRY: dict[str, MethodInfo] = {}


def register_method(name: str, fn: Target | None = None, *, label_free: bool, description: str = "",
                    overwrite: bool = False, map_fn: Target | None = None) -> MethodInfo:
    """Add a saliency method to the registry used by :func:`tsmlib.saliency`; returns its entry.

    ``fn(model, x, layer, targets, **options)`` returns maps (B, h, w) at any resolution, raw or
    normalised; :func:`tsmlib.saliency` normalises (unless told not to) and upsamples them. ``options``
    always holds ``reshape_transform`` (None unless the caller gave one). ``targets`` is None or a
    LongTensor (B,) of classes. Give ``map_fn(A, normalize=False, **options)`` instead of (or with)
    ``fn`` for a method computed from the layer's activations alone. Either may be a
    ``"module:function"`` string, imported on first use.

    A name already registered (built-ins included; compared by the lookup rule of
    :mod:`tsmlib._names`) raises ``ValueError`` unless ``overwrite=True``; the new entry then stays.
    """
    if fn is None and map_fn is None:
        raise TypeError("register_method needs fn or map_fn")
    key = normalize_name(name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"a saliency method named {_REGISTRY[key].name!r} is already registered (pass overwrite=True)")
    info = MethodInfo(name, fn, bool(label_free), description, map_fn)
    _REGISTRY[key] = info
    return info


def unregister_method(name: str) -> None:
    """Remove a method from the registry (no error if absent)."""
    _REGISTRY.pop(normalize_name(name), None)


def available_methods(label_free: bool | None = None) -> list[str]:
    """Names of the registered methods (all, or only the label-free / label-dependent ones)."""
    return [m.name for m in _REGISTRY.values() if label_free is None or m.label_free == label_free]


def method_info(name: str) -> MethodInfo:
    """The registry entry of ``name``; :class:`UnknownNameError` (a ``KeyError`` and ``ValueError``)
    listing the registered names otherwise."""
    try:
        return _REGISTRY[normalize_name(name)]
    except (KeyError, TypeError):
        raise unknown_name("saliency method", name, available_methods()) from None


def activation_method(map_fn: Callable[..., torch.Tensor]) -> MethodFn:
    """Wrap an activation-only map function ``f(A, **options) -> (B, H, W)`` as a registry method.

    The wrapped method runs one forward pass without gradients (:func:`tsmlib.hooks.capture_activations`)
    and applies ``map_fn(A, normalize=False, **options)`` to the layer output: raw maps, which
    :func:`tsmlib.saliency` normalises. It accepts ``reshape_transform`` like ``ActivationCapture``.
    """

    def run(model, x, layer, targets=None, *, reshape_transform=None, **options):
        return map_fn(capture_activations(model, x, layer, reshape_transform), normalize=False, **options)

    run.__doc__ = f"Registry wrapper of :func:`{map_fn.__module__}.{map_fn.__name__}`."
    run.map_fn = map_fn
    return run


# ---------------------------------------------------------------------------------------------------
# Built-in entries (lazy: nothing below imports tsmlib.methods or tsmlib.baselines)

_OURS = {
    "eigencam": ("eigencam", "First principal component of the centred feature matrix, deterministic sign"),
    "tsm": ("tsm", "Tucker Saliency Map: first channel factor of the HOOI decomposition"),
    "multivec-eigencam": ("multivec_eigencam", "All EigenCAM components, sigma-weighted"),
    "mtsm": ("mtsm", "Multivector TSM: all Tucker channel components, weighted by the core slice norms"),
}

#: The baselines of :mod:`tsmlib.baselines`: name -> (function there, label-free, description).
BUILTIN_BASELINES = {
    "gradcam": ("gradcam", False, "Grad-CAM (pytorch-grad-cam): channel weights = spatial mean of the class-logit gradients"),
    "gradcam++": ("gradcampp", False, "Grad-CAM++ (pytorch-grad-cam): second-order weighting of positive gradients"),
    "xgradcam": ("xgradcam", False, "XGrad-CAM (pytorch-grad-cam): activation-normalised gradient weights"),
    "layercam": ("layercam", False, "LayerCAM (pytorch-grad-cam): element-wise ReLU(gradient) x activation"),
    "hirescam": ("hirescam", False, "HiResCAM (pytorch-grad-cam): element-wise gradient x activation"),
    "scorecam": ("scorecam", False, "Score-CAM (pytorch-grad-cam): weights = softmax of masked-input scores, one forward per channel"),
    "ablationcam": ("ablationcam", False, "Ablation-CAM (pytorch-grad-cam): weights = score drop when a channel is zeroed, one forward per channel"),
    "gradcam-eigencam": ("gradcam_eigencam", True, "pytorch-grad-cam's EigenCAM as is (per-image NumPy SVD, LAPACK's sign)"),
    "lafam": ("lafam", True, "LaFAM: channel mean of the target layer's activations (label-free)"),
}
#: name -> description of every built-in method.
BUILTIN_DESCRIPTIONS = {**{n: d for n, (_, d) in _OURS.items()}, **{n: d for n, (_, _, d) in BUILTIN_BASELINES.items()}}


def _declare_builtins() -> None:
    for name, (fn_name, description) in _OURS.items():
        register_method(name, map_fn=f"tsmlib.methods:{fn_name}", label_free=True, description=description)
    if importlib.util.find_spec("pytorch_grad_cam") is None:  # pragma: no cover - grad-cam is a dependency
        return
    for name in BUILTIN_BASELINES:
        register_method(name, **baseline_entry(name))


def baseline_entry(name: str) -> dict:
    """The :func:`register_method` keyword arguments of the built-in baseline ``name`` (lazy targets)."""
    fn_name, label_free, description = BUILTIN_BASELINES[name]
    return {"fn": f"tsmlib.baselines:{fn_name}", "label_free": label_free, "description": description,
            "map_fn": "tsmlib.baselines:lafam_map" if name == "lafam" else None}


_declare_builtins()
