"""The saliency-method registry: one entry per name, ours and the baselines, loaded on first use.

Built-in entries are declared here as ``"module:function"`` strings and imported only when a method's
function is needed, so importing tsmlib never imports :mod:`tsmlib.baselines` (nor pytorch-grad-cam),
and nothing re-registers behind the user's back: a user's ``register_method("lafam", ...,
overwrite=True)`` stays until the user changes it again. Names follow the lookup rule of
:mod:`tsmlib._names` (case-insensitive, ``_`` = ``-``), shared with the model registry.

A method is ``fn(model, x, layer, targets, **options) -> (B, h, w)`` raw maps; an *activation* method
also has ``map_fn(A, normalize=False, **options)``, a function of the layer's activations alone, which
lets :func:`tsmlib.cam.saliency_maps` serve several such methods from one forward pass.

Every entry belongs to a *family* (:data:`FAMILIES`): ``"ours"`` (the paper's four methods),
``"baseline"`` (the Grad-CAM family, LaFAM, pytorch-grad-cam's EigenCAM), ``"variant"`` (one of ours with
options fixed), ``"yardstick"`` (maps that know neither model nor image, :mod:`tsmlib.yardsticks`:
``"whole-image"``, ``"centre-prior"``), and ``"user"`` for what a user registers.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
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
    "variant_name",
    "parse_variant_name",
    "register_variant",
    "restore_builtin_methods",
    "VARIANT_BASES",
    "BUILTIN_DESCRIPTIONS",
    "BUILTIN_YARDSTICKS",
    "FAMILIES",
]

#: The families of registry entries (see the module docstring).
FAMILIES = ("ours", "baseline", "variant", "yardstick", "user")


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
    ``"module:function"`` strings. ``family`` is one of :data:`FAMILIES`; ``normalized`` marks a method
    whose maps are already final in [0, 1] at the input resolution (the whole-image yardstick), which
    :func:`tsmlib.saliency` returns without min-max normalisation. ``display_name`` is the name a reader
    sees in a figure or table ("Multivec-EigenCAM", a variant "MTSM (k=5)"; default: ``name``).
    """

    name: str
    target: Target | None
    label_free: bool
    description: str = ""
    map_target: Target | None = None
    #: For a variant (:func:`register_variant`): the method it fixes options of, and those options.
    base: str | None = None
    options: tuple = ()
    family: str = "user"
    normalized: bool = False
    display_name: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)

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
                    overwrite: bool = False, map_fn: Target | None = None, family: str = "user",
                    normalized: bool = False, display_name: str | None = None) -> MethodInfo:
    """Add a saliency method to the registry used by :func:`tsmlib.saliency`; returns its entry.

    ``fn(model, x, layer, targets, **options)`` returns maps (B, h, w) at any resolution, raw or
    normalised; :func:`tsmlib.saliency` normalises (unless told not to) and upsamples them. ``options``
    always holds ``reshape_transform`` (None unless the caller gave one). ``targets`` is None or a
    LongTensor (B,) of classes. Give ``map_fn(A, normalize=False, **options)`` instead of (or with)
    ``fn`` for a method computed from the layer's activations alone. Either may be a
    ``"module:function"`` string, imported on first use.

    A name already registered (built-ins included; compared by the lookup rule of
    :mod:`tsmlib._names`) raises ``ValueError`` unless ``overwrite=True``; the new entry then stays.
    ``family`` (one of :data:`FAMILIES`, default ``"user"``), ``normalized`` and ``display_name``
    (default ``name``) are described in :class:`MethodInfo`.
    """
    if fn is None and map_fn is None:
        raise TypeError("register_method needs fn or map_fn")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    key = normalize_name(name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"a saliency method named {_REGISTRY[key].name!r} is already registered (pass overwrite=True)")
    info = MethodInfo(name, fn, bool(label_free), description, map_fn, family=family, normalized=bool(normalized),
                      display_name=display_name or name)
    _REGISTRY[key] = info
    return info


def unregister_method(name: str) -> None:
    """Remove a method from the registry (no error if absent)."""
    _REGISTRY.pop(normalize_name(name), None)


def available_methods(label_free: bool | None = None, family: str | None = None) -> list[str]:
    """Names of the registered methods (all, or only the label-free / label-dependent ones, or one family
    of :data:`FAMILIES`: ``available_methods(family="yardstick")`` -> ``["whole-image", "centre-prior"]``)."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return [m.name for m in _REGISTRY.values()
            if (label_free is None or m.label_free == label_free) and (family is None or m.family == family)]


def method_info(name: str) -> MethodInfo:
    """The registry entry of ``name``; :class:`UnknownNameError` (a ``KeyError`` and ``ValueError``)
    listing the registered names otherwise.

    A variant name such as ``"mtsm[k=5]"`` (see :func:`variant_name`) is registered on first lookup, so
    every variant runs by name wherever a method name is taken (``tsmlib.saliency``,
    ``tsmlib.evaluation.evaluate``, the sanity check, ``tsmlib explain --method``).
    """
    try:
        return _REGISTRY[normalize_name(name)]
    except (KeyError, TypeError):
        pass
    if isinstance(name, str) and name.endswith("]") and "[" in name:
        base, options = parse_variant_name(name)
        return _REGISTRY[normalize_name(register_variant(base, **options))]
    raise unknown_name("saliency method", name, available_methods()) from None


def activation_method(map_fn: Callable[..., torch.Tensor]) -> MethodFn:
    """Wrap an activation-only map function ``f(A, **options) -> (B, H, W)`` as a registry method.

    The wrapped method runs one forward pass without gradients (:func:`tsmlib.hooks.capture_activations`)
    and applies ``map_fn(A, normalize=False, **options)`` to the layer output: raw maps, which
    :func:`tsmlib.saliency` normalises. It accepts ``reshape_transform`` like ``ActivationCapture``.
    """

    def run(model, x, layer, targets=None, *, reshape_transform=None, **options):
        return map_fn(capture_activations(model, x, layer, reshape_transform), normalize=False, **options)

    inner = map_fn.func if isinstance(map_fn, functools.partial) else map_fn
    bound = f" with {map_fn.keywords}" if isinstance(map_fn, functools.partial) else ""
    run.__doc__ = f"Registry wrapper of :func:`{inner.__module__}.{inner.__qualname__}`{bound}."
    run.map_fn = map_fn
    return run


# ---------------------------------------------------------------------------------------------------
# Variants: a method with some options fixed, as a registry entry of its own

#: The methods a variant can fix options of: the four activation methods of :mod:`tsmlib.methods`.
VARIANT_BASES = ("eigencam", "tsm", "multivec-eigencam", "mtsm")


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


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def parse_variant_name(name: str) -> tuple[str, dict]:
    """The inverse of :func:`variant_name`: ``"tsm[ranks=(None,4,4)]"`` -> ``("tsm", {"ranks": (None, 4, 4)})``.

    Values are Python literals (numbers, ``None``, ``True``, tuples); anything else is a string
    (``weighting=uniform``). Raises ``ValueError`` for a malformed name.
    """
    if not (isinstance(name, str) and name.endswith("]") and "[" in name):
        raise ValueError(f"not a variant name (base[option=value,...]): {name!r}")
    base, _, inner = name[:-1].partition("[")
    options = {}
    for part in _split_top_level(inner):
        key, eq, value = part.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"malformed option {part!r} in variant name {name!r} (want option=value)")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return base.strip(), options


def register_variant(base: str, **options) -> str:
    """Register ``base`` with fixed ``options`` as a method of its own and return its registry name.

    Parameters
    ----------
    base : {"eigencam", "tsm", "multivec-eigencam", "mtsm"}
        One of the activation methods (:data:`VARIANT_BASES`).
    **options
        Keyword arguments of that function (``k``, ``ranks``, ``weighting``, ``transform``,
        ``normalize_components``, ``sign``). They are checked here, on a tiny tensor, so that a typo
        fails at registration rather than in the middle of an evaluation. Without options the base
        name is returned and nothing is registered.

    Returns
    -------
    str
        :func:`variant_name` ``(base, **options)``, usable wherever a method name is. Registering the
        same variant again is harmless (the entry is the same). Its display name is the base's with the
        options in brackets: ``"mtsm[k=5,weighting=uniform]"`` reads ``"MTSM (k=5, weighting=uniform)"``.

    Notes
    -----
    A variant is a plain activation method: its ``map_fn`` is the base function with the options bound,
    its ``fn`` that function's :func:`activation_method` (one forward pass per call). Ask
    :func:`tsmlib.cam.saliency_maps` for several variants at once and they share one forward pass.
    """
    base_info = method_info(base)
    if base_info.base is not None or normalize_name(base_info.name) not in VARIANT_BASES:
        raise ValueError(f"a variant builds on one of {list(VARIANT_BASES)}, got {base!r}")
    if not options:
        return base_info.name
    map_fn = base_info.map_fn
    accepted = set(inspect.signature(map_fn).parameters) - {"A", "normalize"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"invalid option(s) {unknown} for {base}; it accepts {sorted(accepted)}")
    # the value checks that do not depend on the layer's size (k and ranks do), on a tiny tensor
    map_fn(torch.rand(1, 6, 3, 3, dtype=torch.float64), **{n: v for n, v in options.items() if n not in ("k", "ranks")})
    bound = functools.partial(map_fn, **options)
    name = variant_name(base_info.name, **options)
    description = f"{base_info.name} with {', '.join(f'{k}={_format_value(v)}' for k, v in sorted(options.items()))}"
    key = normalize_name(name)
    if key not in _REGISTRY:
        shown = name[len(base_info.name) + 1:-1].replace(",", ", ")
        _REGISTRY[key] = MethodInfo(name, activation_method(bound), True, description, bound, base=base_info.name,
                                    options=tuple(sorted(options.items())), family="variant",
                                    display_name=f"{base_info.display_name} ({shown})")
    return _REGISTRY[key].name


# ---------------------------------------------------------------------------------------------------
# Built-in entries (lazy: nothing below imports tsmlib.methods or tsmlib.baselines)

#: The paper's four methods: name -> (function of :mod:`tsmlib.methods`, display name, description).
_OURS = {
    "eigencam": ("eigencam", "EigenCAM", "First principal component of the centred feature matrix, deterministic sign"),
    "tsm": ("tsm", "TSM", "Tucker Saliency Map: first channel factor of the HOOI decomposition"),
    "multivec-eigencam": ("multivec_eigencam", "Multivec-EigenCAM", "All EigenCAM components, sigma-weighted"),
    "mtsm": ("mtsm", "MTSM", "Multivector TSM: all Tucker channel components, weighted by the core slice norms"),
}

#: The baselines of :mod:`tsmlib.baselines`: name -> (function there, label-free, display name, description).
BUILTIN_BASELINES = {
    "gradcam": ("gradcam", False, "Grad-CAM", "Grad-CAM (pytorch-grad-cam): channel weights = spatial mean of the class-logit gradients"),
    "gradcam++": ("gradcampp", False, "Grad-CAM++", "Grad-CAM++ (pytorch-grad-cam): second-order weighting of positive gradients"),
    "xgradcam": ("xgradcam", False, "XGrad-CAM", "XGrad-CAM (pytorch-grad-cam): activation-normalised gradient weights"),
    "layercam": ("layercam", False, "LayerCAM", "LayerCAM (pytorch-grad-cam): element-wise ReLU(gradient) x activation"),
    "hirescam": ("hirescam", False, "HiResCAM", "HiResCAM (pytorch-grad-cam): element-wise gradient x activation"),
    "scorecam": ("scorecam", False, "Score-CAM", "Score-CAM (pytorch-grad-cam): weights = softmax of masked-input scores, one forward per channel"),
    "ablationcam": ("ablationcam", False, "Ablation-CAM", "Ablation-CAM (pytorch-grad-cam): weights = score drop when a channel is zeroed, one forward per channel"),
    "gradcam-eigencam": ("gradcam_eigencam", True, "EigenCAM (pytorch-grad-cam)", "pytorch-grad-cam's EigenCAM as is (per-image NumPy SVD, LAPACK's sign)"),
    "lafam": ("lafam", True, "LaFAM", "LaFAM: channel mean of the target layer's activations (label-free)"),
}
#: The yardsticks of :mod:`tsmlib.yardsticks`: name -> (function there, maps already final, display name,
#: description).
BUILTIN_YARDSTICKS = {
    "whole-image": ("whole_image", True, "Whole image", "Yardstick: 1 on every pixel (removes nothing; scores the mask's share of the image)"),
    "centre-prior": ("centre_prior", False, "Centre prior", "Yardstick: isotropic Gaussian centred in the image, sigma = 0.25 x the shorter side"),
}
#: name -> description of every built-in method.
BUILTIN_DESCRIPTIONS = {**{n: d for n, (*_, d) in _OURS.items()}, **{n: d for n, (*_, d) in BUILTIN_BASELINES.items()},
                        **{n: d for n, (*_, d) in BUILTIN_YARDSTICKS.items()}}


def _builtin_entries() -> dict[str, dict]:
    """name -> :func:`register_method` keyword arguments of every built-in method (lazy targets)."""
    entries = {name: {"map_fn": f"tsmlib.methods:{fn_name}", "label_free": True, "description": description,
                      "family": "ours", "display_name": shown}
               for name, (fn_name, shown, description) in _OURS.items()}
    entries.update({name: {"fn": f"tsmlib.yardsticks:{fn_name}", "label_free": True, "description": description,
                           "family": "yardstick", "normalized": final, "display_name": shown}
                    for name, (fn_name, final, shown, description) in BUILTIN_YARDSTICKS.items()})
    if importlib.util.find_spec("pytorch_grad_cam") is not None:  # grad-cam is a dependency
        entries.update({name: baseline_entry(name) for name in BUILTIN_BASELINES})
    return entries


def _declare_builtins() -> None:
    for name, entry in _builtin_entries().items():
        register_method(name, **entry)


def restore_builtin_methods() -> list[str]:
    """Declare again any built-in method missing from the registry (e.g. after :func:`unregister_method`);
    returns the built-in names. Never replaces an entry: a user's own registration under a built-in
    name stays."""
    present = {normalize_name(n) for n in available_methods()}
    entries = _builtin_entries()
    for name, entry in entries.items():
        if normalize_name(name) not in present:
            register_method(name, **entry)
    return list(entries)


def baseline_entry(name: str) -> dict:
    """The :func:`register_method` keyword arguments of the built-in baseline ``name`` (lazy targets)."""
    fn_name, label_free, shown, description = BUILTIN_BASELINES[name]
    return {"fn": f"tsmlib.baselines:{fn_name}", "label_free": label_free, "description": description,
            "map_fn": "tsmlib.baselines:lafam_map" if name == "lafam" else None, "family": "baseline",
            "display_name": shown}


_declare_builtins()
