"""tsmlib: label-free saliency maps for CNNs, batched on any device, and their evaluation.

The functional core (activations ``A`` of shape (B, C, H, W) in, maps (B, H, W) out)::

    tsmlib.eigencam(A)            # first principal component, deterministic sign
    tsmlib.tsm(A, ranks=None)     # Tucker Saliency Map
    tsmlib.multivec_eigencam(A)   # all EigenCAM components
    tsmlib.mtsm(A)                # all Tucker components (Multivector TSM)
    tsmlib.tucker(A, ranks)       # the batched HOOI decomposition itself

and the model-level interface shared by every method, ours and the Grad-CAM family::

    tsmlib.saliency(model, x, method="mtsm", layer="layer4")
"""

from .cam import SaliencyResult, saliency
from .hooks import ActivationCapture, capture_activations, resolve_layer
from .registry import MethodInfo, UnknownNameError, available_methods, method_info, register_method
from .decomposition import TuckerResult, truncated_svd, tucker
from .methods import (
    Components,
    combine_components,
    eigencam,
    eigencam_components,
    minmax_normalize,
    mtsm,
    multivec_eigencam,
    tsm,
    tsm_components,
    upsample,
)

__version__ = "0.1.0"

# Submodules with heavier imports (torchvision, the model zoo, pandas, pytorch-grad-cam) load on first use:
# ``tsmlib.models.load_model(...)``, ``tsmlib.evaluation.evaluate(...)``, ``tsmlib.load_model(...)``.
_LAZY_MODULES = {
    "models", "data", "evaluation", "baselines", "yardsticks", "gradcam_compat", "reference", "overlay", "runtime",
    "fingerprint", "progress", "cli",
}
_LAZY_ATTRS = {"load_model": "models", "available_models": "models"}


def __getattr__(name: str):
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
    raise AttributeError(f"module 'tsmlib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_MODULES | set(_LAZY_ATTRS))

__all__ = [
    "ActivationCapture",
    "Components",
    "MethodInfo",
    "SaliencyResult",
    "UnknownNameError",
    "capture_activations",
    "method_info",
    "resolve_layer",
    "TuckerResult",
    "available_methods",
    "available_models",
    "load_model",
    "combine_components",
    "eigencam",
    "eigencam_components",
    "minmax_normalize",
    "mtsm",
    "multivec_eigencam",
    "register_method",
    "saliency",
    "truncated_svd",
    "tsm",
    "tsm_components",
    "tucker",
    "upsample",
]
