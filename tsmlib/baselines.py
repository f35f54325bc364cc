"""Baseline saliency methods, declared in :mod:`tsmlib.registry` next to ours.

:func:`tsmlib.saliency` accepts these method names (this module is imported the first time one of them
runs; importing it registers nothing):

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

from tsmlib.hooks import capture_activations, resolve_layer
from tsmlib._names import normalize_name
from tsmlib.registry import BUILTIN_BASELINES, available_methods, baseline_entry, register_method

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


def grad_cam_method(name: str) -> Callable[..., torch.Tensor]:
    """The registry function for one of :data:`GRAD_CAM_CLASSES`."""
    cls = GRAD_CAM_CLASSES[name]
    per_image = cls is ScoreCAM  # ScoreCAM materialises (B, C, 3, H, W) masked copies: one image at a time

    def fn(model: nn.Module, x: torch.Tensor, layer, targets: torch.Tensor | None = None, *,
           batch_size: int | None = None, reshape_transform=None, aug_smooth: bool = False,
           eigen_smooth: bool = False) -> torch.Tensor:
        module = resolve_layer(model, layer)
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


def lafam_map(A: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """LaFAM's map from activations ``A`` (B, C, h, w): their channel mean (min-max scaled if ``normalize``)."""
    if A.ndim != 4:
        raise ValueError(f"LaFAM needs (B, C, h, w) activations, got {tuple(A.shape)}")
    m = A.mean(1) if A.is_floating_point() else A.float().mean(1)
    if normalize:
        from tsmlib.methods import minmax_normalize

        m = minmax_normalize(m)
    return m


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
    A = capture_activations(model, x, layer, reshape_transform)
    if A.ndim != 4:
        raise ValueError(f"LaFAM needs (B, C, h, w) activations at layer {layer!r}, got {tuple(A.shape)}")
    return lafam_map(A)


gradcam = grad_cam_method("gradcam")
gradcampp = grad_cam_method("gradcam++")
xgradcam = grad_cam_method("xgradcam")
layercam = grad_cam_method("layercam")
hirescam = grad_cam_method("hirescam")
scorecam = grad_cam_method("scorecam")
ablationcam = grad_cam_method("ablationcam")
gradcam_eigencam = grad_cam_method("gradcam-eigencam")

#: name -> description (the registry's, :data:`tsmlib.registry.BUILTIN_BASELINES`).
DESCRIPTIONS = {name: desc for name, (_, _, desc) in BUILTIN_BASELINES.items()}


def register_baselines() -> list[str]:
    """The baseline names; declares any that are missing from the registry (e.g. after
    ``unregister_method``). Never replaces an entry: a user's own registration under one of these
    names stays."""
    present = {normalize_name(n) for n in available_methods()}
    for name in BUILTIN_BASELINES:
        if normalize_name(name) not in present:
            register_method(name, **baseline_entry(name))
    return list(BUILTIN_BASELINES)
