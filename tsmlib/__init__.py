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

from .cam import ActivationCapture, available_methods, register_method, saliency
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

__all__ = [
    "ActivationCapture",
    "Components",
    "TuckerResult",
    "available_methods",
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
