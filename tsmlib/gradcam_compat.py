"""Drop-in pytorch-grad-cam CAM classes for the label-free methods.

For users of the ``grad-cam`` package: the classes below follow its ``BaseCAM`` call shape, so they can
stand next to ``GradCAM`` in existing code::

    from pytorch_grad_cam import GradCAM
    from tsmlib.gradcam_compat import TSMCAM, MTSMCAM

    for CAM in (GradCAM, TSMCAM, MTSMCAM):
        with CAM(model=model, target_layers=[model.layer4]) as cam:
            maps = cam(input_tensor=x, targets=None)     # numpy (B, H_in, W_in) in [0, 1]

Options of the tsmlib function (``ranks``, ``k``, ``weighting`` ...) are keyword arguments of the
constructor. pytorch-grad-cam still applies its own ReLU, min-max scaling and OpenCV resize, and averages
over several target layers; the maps are computed by tsmlib's batched code (no per-image NumPy SVD).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.base_cam import BaseCAM

from . import methods

__all__ = ["TSMCAM", "MTSMCAM", "MultivecEigenCAM", "DeterministicEigenCAM"]


class _TsmlibCAM(BaseCAM):
    _map_fn = None  # set by subclasses

    def __init__(self, model, target_layers, reshape_transform=None, **method_options):
        super().__init__(model, target_layers, reshape_transform, uses_gradients=False)
        self.method_options = method_options

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False) -> np.ndarray:
        A = torch.as_tensor(activations)
        return type(self)._map_fn(A, **self.method_options).detach().cpu().numpy()


class TSMCAM(_TsmlibCAM):
    """Tucker Saliency Map (:func:`tsmlib.tsm`) as a pytorch-grad-cam CAM."""

    _map_fn = staticmethod(methods.tsm)


class MTSMCAM(_TsmlibCAM):
    """Multivector TSM (:func:`tsmlib.mtsm`) as a pytorch-grad-cam CAM."""

    _map_fn = staticmethod(methods.mtsm)


class MultivecEigenCAM(_TsmlibCAM):
    """Multivec-EigenCAM (:func:`tsmlib.multivec_eigencam`) as a pytorch-grad-cam CAM."""

    _map_fn = staticmethod(methods.multivec_eigencam)


class DeterministicEigenCAM(_TsmlibCAM):
    """EigenCAM with tsmlib's deterministic sign rule (:func:`tsmlib.eigencam`), batched."""

    _map_fn = staticmethod(methods.eigencam)
