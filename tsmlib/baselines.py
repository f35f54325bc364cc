"""Baseline saliency methods, registered in :mod:`tsmlib.cam`'s registry next to ours.

After ``import tsmlib.baselines``, :func:`tsmlib.saliency` accepts these method names:

======================  =================  ==========================================================
name                    label-dependent    what
======================  =================  ==========================================================
``"gradcam"``           yes                pytorch-grad-cam ``GradCAM``
``"gradcam++"``         yes                ``GradCAMPlusPlus``
``"xgradcam"``          yes                ``XGradCAM``
``"layercam"``          yes                ``LayerCAM``
``"hirescam"``          yes                ``HiResCAM``
``"scorecam"``          yes                ``ScoreCAM`` (one forward pass per channel: costly)
``"ablationcam"``       yes                ``AblationCAM`` (one forward pass per channel: costly)
``"gradcam-eigencam"``  no                 pytorch-grad-cam's ``EigenCAM`` as is (LAPACK's sign)
``"lafam"``             no                 LaFAM: channel mean of the target layer's activations
======================  =================  ==========================================================

Label-dependent methods explain ``targets`` (LongTensor ``(B,)``), or the predicted class when it is
None, through pytorch-grad-cam's ``ClassifierOutputTarget`` (the class logit). Every function has the
registry's signature ``fn(model, x, layer, targets, **options) -> (B, h, w)``; ``tsmlib.saliency`` then
upsamples and min-max normalises. The pytorch-grad-cam methods already return ReLU'd, min-max scaled
maps at the input resolution (their fixed post-processing), on the CPU via NumPy; hooks are released
after every call, also on error.

Options of the pytorch-grad-cam methods: ``batch_size`` (forward passes per batch of Score-CAM and
Ablation-CAM: larger is faster, if memory allows; default 32), ``reshape_transform`` (for non-CNN
layers), ``aug_smooth`` and ``eigen_smooth`` (pytorch-grad-cam's smoothing switches).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tsmlib.cam import ActivationCapture, register_method

#: pytorch-grad-cam classes behind the label-dependent names (and its EigenCAM, label-free).
GRAD_CAM_CLASSES = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "gradcam-eigencam": EigenCAM,
}
#: Methods with one forward pass per channel of the target layer.
PERTURBATION_METHODS = ("scorecam", "ablationcam")
LABEL_FREE = ("gradcam-eigencam", "lafam")


def _resolve_layer(model: nn.Module, layer) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError as err:
        names = [n for n, _ in model.named_modules() if n][-5:]
        raise ValueError(f"layer {layer!r} is not a submodule of the model (last modules: {names})") from err


def grad_cam_method(name: str) -> Callable[..., torch.Tensor]:
    """The registry function for one of :data:`GRAD_CAM_CLASSES`."""
    cls = GRAD_CAM_CLASSES[name]
    per_image = cls is ScoreCAM  # ScoreCAM materialises (B, C, 3, H, W) masked copies: one image at a time

    def fn(model: nn.Module, x: torch.Tensor, layer, targets: torch.Tensor | None = None, *,
           batch_size: int | None = None, reshape_transform=None, aug_smooth: bool = False,
           eigen_smooth: bool = False) -> torch.Tensor:
        module = _resolve_layer(model, layer)
        if targets is not None:
            targets = torch.as_tensor(targets).reshape(-1)
            if targets.numel() != x.shape[0]:
                raise ValueError(f"targets has {targets.numel()} entries for {x.shape[0]} images")
        kwargs = {"ablation_layer": AblationLayer()} if cls is AblationCAM else {}  # fresh, not the shared default
        cam = cls(model=model, target_layers=[module], reshape_transform=reshape_transform, **kwargs)
        try:
            if batch_size is not None:
                cam.batch_size = int(batch_size)
            chunks = [slice(i, i + 1) for i in range(x.shape[0])] if per_image else [slice(None)]
            maps = []
            for sl in chunks:
                t = None if targets is None else [ClassifierOutputTarget(int(c)) for c in targets[sl].tolist()]
                xi = x[sl].detach()
                if getattr(cam, "uses_gradients", False):
                    xi = xi.requires_grad_(True)  # a graph even when the model's weights are frozen
                with torch.enable_grad():
                    maps.append(torch.from_numpy(cam(input_tensor=xi, targets=t, aug_smooth=aug_smooth,
                                                     eigen_smooth=eigen_smooth)))
        finally:
            cam.activations_and_grads.release()
            model.zero_grad(set_to_none=True)
        return torch.cat(maps).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)

    fn.__name__ = name.replace("+", "p").replace("-", "_")
    fn.__doc__ = f"pytorch-grad-cam's {cls.__name__} as a tsmlib registry method (see tsmlib.baselines)."
    return fn


def lafam(model: nn.Module, x: torch.Tensor, layer, targets: torch.Tensor | None = None, *,
          reshape_transform=None) -> torch.Tensor:
    """LaFAM (Karim et al. 2024): the channel mean of the target layer's activations.

    Parameters
    ----------
    model : nn.Module
    x : torch.Tensor, shape (B, 3, S, S)
    layer : str or nn.Module
        Target layer.
    targets : ignored (label-free).

    Returns
    -------
    torch.Tensor, shape (B, h, w)
        Raw map at the layer's resolution (``tsmlib.saliency`` normalises and upsamples).
    """
    with torch.no_grad(), ActivationCapture(model, layer, reshape_transform=reshape_transform) as cap:
        model(x)
    A = cap.activations
    if A is None or A.ndim != 4:
        raise ValueError(f"LaFAM needs (B, C, h, w) activations at layer {layer!r}, got "
                         f"{None if A is None else tuple(A.shape)}")
    return A.float().mean(1) if not A.is_floating_point() else A.mean(1)


DESCRIPTIONS = {
    "gradcam": "Grad-CAM (pytorch-grad-cam): channel weights = spatial mean of the class-logit gradients",
    "gradcam++": "Grad-CAM++ (pytorch-grad-cam): second-order weighting of positive gradients",
    "xgradcam": "XGrad-CAM (pytorch-grad-cam): activation-normalised gradient weights",
    "layercam": "LayerCAM (pytorch-grad-cam): element-wise ReLU(gradient) x activation",
    "hirescam": "HiResCAM (pytorch-grad-cam): element-wise gradient x activation",
    "scorecam": "Score-CAM (pytorch-grad-cam): weights = softmax of masked-input scores, one forward per channel",
    "ablationcam": "Ablation-CAM (pytorch-grad-cam): weights = score drop when a channel is zeroed, one forward per channel",
    "gradcam-eigencam": "pytorch-grad-cam's EigenCAM as is (per-image NumPy SVD, LAPACK's sign)",
    "lafam": "LaFAM: channel mean of the target layer's activations (label-free)",
}


def register_baselines() -> list[str]:
    """(Re-)register every baseline in :mod:`tsmlib.cam`'s registry; returns the names."""
    for name in GRAD_CAM_CLASSES:
        register_method(name, grad_cam_method(name), label_free=name in LABEL_FREE,
                        description=DESCRIPTIONS[name], overwrite=True)
    register_method("lafam", lafam, label_free=True, description=DESCRIPTIONS["lafam"], overwrite=True)
    return [*GRAD_CAM_CLASSES, "lafam"]


register_baselines()
