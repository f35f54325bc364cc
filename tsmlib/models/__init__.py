"""Model registry: named CNNs that follow the tsmlib model contract.

>>> from tsmlib.data.photos import load_photo
>>> from tsmlib.models import load_model
>>> lm = load_model("efficientnet_lite0")          # works offline
>>> x = lm.preprocess(load_photo("cat").image)[None]
>>> tuple(x.shape)                                  # (1, 3, 224, 224) in [0, 1]
(1, 3, 224, 224)
>>> logits = lm.model(x)                            # normalisation happens inside
>>> tuple(logits.shape)
(1, 1000)
"""

from .checkpoints import (
    CheckpointError,
    WeightsNotFoundError,
    convert_linear_probe,
    convert_resnet_checkpoint,
    load_checkpoint,
)
from .registry import (
    DEFAULT_MODEL,
    LoadedModel,
    ModelSpec,
    WeightFile,
    available_models,
    get_spec,
    load_model,
    register_model,
    unregister_model,
    weight_status,
    with_architecture,
)
from .randomise import calibration_photos, random_variant, randomised_copy
from . import zoo  # noqa: F401  (registers the default models)

__all__ = [
    "CheckpointError",
    "WeightsNotFoundError",
    "convert_linear_probe",
    "convert_resnet_checkpoint",
    "load_checkpoint",
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelSpec",
    "WeightFile",
    "available_models",
    "get_spec",
    "load_model",
    "register_model",
    "unregister_model",
    "weight_status",
    "with_architecture",
    "calibration_photos",
    "random_variant",
    "randomised_copy",
]
