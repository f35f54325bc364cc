"""Baseline saliency methods, declared in :mod:`tsmlib.registry` next to ours.

:func:`tsmlib.saliency` accepts these method names (this module is imported the first time one of them
runs; this module imports nothing of the registry, and importing it registers nothing):

======================  =================  ==========================================================
name                    label-dependent    what
======================  =================  ==========================================================
``"gradcam"``           yes                pytorch-grad-cam ``GradCAM``
``"gradcam++"``         yes                ``GradCAMPlusPlus``
``"xgradcam"``          yes                ``XGradCAM``
``"layercam"``          yes                ``LayerCAM``
``"hirescam"``          yes                ``HiResCAM``
``"scorecam"``          yes                ``ScoreCAM`` (one forward pass per channel: costly)
``"ablationcam"``       yes                ``AblationCAM``'s maps, by :func:`fast_ablation_cam` (see below)
``"gradcam-eigencam"``  no                 pytorch-grad-cam's ``EigenCAM`` as is (LAPACK's sign)
``"lafam"``             no                 LaFAM: channel mean of the target layer's activations
======================  =================  ==========================================================

Label-dependent methods explain ``targets`` (LongTensor ``(B,)``), or the predicted class when it is
None, through pytorch-grad-cam's ``ClassifierOutputTarget`` (the class logit). Every function has the
registry's signature ``fn(model, x, layer, targets, **options) -> (B, h, w)``; ``tsmlib.saliency`` then
upsamples and min-max normalises. The pytorch-grad-cam methods already return ReLU'd, min-max scaled
maps at the input resolution (their fixed post-processing), on the CPU via NumPy; hooks are released
after every call, also on error.

Ablation-CAM ablates each channel of the target layer in turn. pytorch-grad-cam's ``AblationCAM`` runs the
whole network once per channel (1280 passes for EfficientNet-Lite0); :func:`fast_ablation_cam` computes the
same maps running only the layers after the target layer per channel (the layers before it once per batch of
``batch_size`` channels, on one image), and falls back to ``AblationCAM`` where that shortcut does not apply.

Options of the pytorch-grad-cam methods: ``batch_size`` (forward passes per batch of Score-CAM and
Ablation-CAM: larger is faster, if memory allows; default 32), ``reshape_transform`` (for non-CNN
layers), ``aug_smooth`` and ``eigen_smooth`` (pytorch-grad-cam's smoothing switches).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Sequence

import numpy as np
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
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from tsmlib.hooks import capture_activations, eval_mode, resolve_layer

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
_log = logging.getLogger(__name__)


def _check_targets(x: torch.Tensor, targets) -> torch.Tensor | None:
    if targets is None:
        return None
    targets = torch.as_tensor(targets).reshape(-1)
    if targets.numel() != x.shape[0]:
        raise ValueError(f"targets has {targets.numel()} entries for {x.shape[0]} images")
    return targets


@contextlib.contextmanager
def _caller_gradients_kept(model: nn.Module):
    """Context manager: the parameters' ``.grad`` as the caller left them, whatever happens inside.

    pytorch-grad-cam calls ``model.zero_grad()`` and ``backward()``, which would wipe (or add to) the
    gradients of a caller who explains between ``loss.backward()`` and ``optimizer.step()``. Inside, every
    ``.grad`` is None, so backward writes fresh tensors and never touches the caller's; on exit the
    caller's tensors (the same objects, not copies) are put back.
    """
    saved = [(p, p.grad) for p in model.parameters()]
    for p, _ in saved:
        p.grad = None
    try:
        yield
    finally:
        for p, grad in saved:
            p.grad = grad


def _run_grad_cam(cls, model: nn.Module, x: torch.Tensor, module: nn.Module, targets: torch.Tensor | None, *,
                  batch_size: int | None, reshape_transform, aug_smooth: bool, eigen_smooth: bool) -> torch.Tensor:
    """pytorch-grad-cam's ``cls`` on ``x`` (B, 3, H, W) at ``module``: maps (B, H, W) as a tensor.

    The model runs in eval mode (pytorch-grad-cam's own choice; each module's mode is restored after)
    and the parameters' ``.grad`` are those the caller left (:func:`_caller_gradients_kept`).
    """
    with eval_mode(model), _caller_gradients_kept(model):
        return _grad_cam_maps(cls, model, x, module, targets, batch_size=batch_size,
                              reshape_transform=reshape_transform, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


def _grad_cam_maps(cls, model, x, module, targets, *, batch_size, reshape_transform, aug_smooth, eigen_smooth):
    per_image = cls is ScoreCAM  # ScoreCAM materialises (B, C, 3, H, W) masked copies: one image at a time
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
    return _as_output(torch.cat(maps), x)


def _as_output(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return maps.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)


def grad_cam_method(name: str) -> Callable[..., torch.Tensor]:
    """The registry function for one of :data:`GRAD_CAM_CLASSES`.

    ``"ablationcam"`` is computed by :func:`fast_ablation_cam` (the same maps as pytorch-grad-cam's
    ``AblationCAM``, without re-running the network before the target layer for every channel); it
    falls back to ``AblationCAM`` itself where that shortcut does not apply.
    """
    cls = GRAD_CAM_CLASSES[name]

    def fn(model: nn.Module, x: torch.Tensor, layer, targets: torch.Tensor | None = None, *,
           batch_size: int | None = None, reshape_transform=None, aug_smooth: bool = False,
           eigen_smooth: bool = False) -> torch.Tensor:
        module = resolve_layer(model, layer)
        targets = _check_targets(x, targets)
        opts = dict(batch_size=batch_size, reshape_transform=reshape_transform, aug_smooth=aug_smooth,
                    eigen_smooth=eigen_smooth)
        if cls is AblationCAM:
            return fast_ablation_cam(model, x, module, targets, **opts)
        return _run_grad_cam(cls, model, x, module, targets, **opts)

    fn.__name__ = name.replace("+", "p").replace("-", "_")
    fn.__doc__ = f"pytorch-grad-cam's {cls.__name__} as a tsmlib registry method (see tsmlib.baselines)."
    return fn


# --------------------------------------------------------------------------------------------------
# Ablation-CAM with the network before the target layer run once per batch of ablations


class AblationShortcutError(RuntimeError):
    """The ablated copies cannot be fed in at the target layer alone (see :func:`fast_ablation_cam`)."""


#: pytorch-grad-cam's ``AblationLayer.ABLATION_VALUE``: the drop below the minimum used when it is not 0.
ABLATION_VALUE = 1e7


def ablated_copies(a: torch.Tensor, channels: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
    """Copies of one image's activations ``a`` (C, h, w), copy ``j`` with channel ``channels[j]`` ablated.

    The rule of pytorch-grad-cam's ``AblationLayer``, exactly, for the copies split into consecutive
    batches of ``batch_size`` (default: one batch), as ``AblationCAM`` feeds them: where the minimum
    ``m`` of ``a`` is 0 the channel is set to 0; otherwise the ``j``-th copy of a batch has its channel
    set to ``min(batch) - 1e7``, the minimum read *after* copies ``0..j-1`` were ablated, so the values
    step down, ``m - 1e7``, ``m - 2e7``, ... (in ``a``'s dtype) and restart with the next batch.

    Returns
    -------
    torch.Tensor, shape (len(channels), C, h, w)
    """
    if a.ndim != 3:
        raise ValueError(f"ablated_copies needs one image's (C, h, w) activations, got {tuple(a.shape)}")
    idx = torch.as_tensor(list(channels), dtype=torch.long, device=a.device)
    n = int(idx.numel())
    step = n if batch_size is None else int(batch_size)
    if step < 1 and n:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out = a.unsqueeze(0).expand(n, *a.shape).clone()
    if not n:
        return out
    m = a.min()
    values = []
    for j in range(n):
        if j % step == 0:
            cur = m  # a new batch: its minimum is a's (the copies share every value but the ablated ones)
        value = torch.zeros_like(cur) if cur == 0 else cur - ABLATION_VALUE
        values.append(value)
        cur = torch.minimum(cur, value)
    out[torch.arange(n, device=a.device), idx] = torch.stack(values)[:, None, None]
    return out


def _class_scores(out: torch.Tensor, classes: Sequence[int]) -> np.ndarray:
    """``ClassifierOutputTarget(c)(out[i])`` for each row, as float32 (``out`` (n, K))."""
    cls = torch.as_tensor(list(classes), dtype=torch.long, device=out.device)
    return out[torch.arange(out.shape[0], device=out.device), cls].detach().float().cpu().numpy()


#: ``None`` (default): one forward pass per batch of ``batch_size`` ablated copies, the batches of
#: ``AblationCAM``, so the layers after the target layer compute on the same batches and the maps are
#: bitwise pytorch-grad-cam's. An int: as many whole batches per pass as fit in that many activation
#: values (e.g. ``2**26``, 256 MiB of float32), fewer passes through the layers before the target layer
#: but larger matrix products after it, whose rounding differs (maps within about 1e-5).
ABLATION_PASS_ELEMENTS: int | None = None


def _ablation_weights(model: nn.Module, module: nn.Module, x: torch.Tensor, A: torch.Tensor,
                      classes: Sequence[int], batch_size: int) -> np.ndarray:
    """Scores (B, C) of ``classes`` with each channel of ``A`` (B, C, h, w) ablated in turn.

    The channels are ablated in batches of ``batch_size`` (:func:`ablated_copies`, so the ablation
    values are pytorch-grad-cam's); each batch (or as many whole batches as
    :data:`ABLATION_PASS_ELEMENTS` allows) goes through one forward pass of *one* image, a forward hook
    on ``module`` replacing its output by the copies, so the layers before it see one image per pass.
    Raises :class:`AblationShortcutError` when the copies do not come out as one row each.
    """
    B, C = A.shape[:2]
    per_pass = batch_size
    if ABLATION_PASS_ELEMENTS is not None:
        per_pass *= max(1, int(ABLATION_PASS_ELEMENTS) // max(1, batch_size * A[0].numel()))
    state = {"copies": None, "calls": 0}

    def hook(_module, _inputs, _output):
        state["calls"] += 1
        return state["copies"]

    scores = np.empty((B, C), dtype=np.float32)
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for b in range(B):
                for start in range(0, C, per_pass):
                    stop = min(start + per_pass, C)
                    n = stop - start
                    state["copies"] = ablated_copies(A[b], range(start, stop), batch_size)
                    state["calls"] = 0
                    try:
                        out = model(x[b:b + 1])
                    except RuntimeError as err:  # e.g. a skip connection across the layer: batch 1 vs n
                        raise AblationShortcutError(f"forward pass with {n} ablated copies failed: {err}") from err
                    if state["calls"] != 1:
                        raise AblationShortcutError(f"the target layer ran {state['calls']} times in one pass")
                    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n:
                        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                        raise AblationShortcutError(f"{n} ablated copies gave an output of shape {shape}")
                    scores[b, start:stop] = _class_scores(out, [classes[b]] * n)
    finally:
        handle.remove()
        state["copies"] = None
    return scores


def fast_ablation_cam(model: nn.Module, x: torch.Tensor, module: nn.Module, targets: torch.Tensor | None = None, *,
                      batch_size: int | None = None, reshape_transform=None, aug_smooth: bool = False,
                      eigen_smooth: bool = False) -> torch.Tensor:
    """Ablation-CAM maps equal to pytorch-grad-cam's ``AblationCAM``, at a fraction of the cost.

    ``AblationCAM`` runs the whole network once per channel of the target layer (B x C passes, in
    batches of ``batch_size`` copies of the image). Here the network runs once on ``x`` to get the
    activations ``A`` (B, C, h, w) and the scores ``y`` of the target classes (``targets`` (B,), or the
    predicted classes), then once per image and batch of ``batch_size`` channels *on one image*, a
    forward hook replacing the layer's output by the ablated copies (:func:`ablated_copies`, the rule of
    ``AblationLayer``). Only the layers after the target layer see the ``batch_size`` copies. The rest is
    pytorch-grad-cam's: weights ``w_c = (y - y_c) / y`` (``y_c``: the score with channel ``c`` ablated),
    map ``ReLU(sum_c w_c A_c)`` (or the first principal component with ``eigen_smooth``), min-max scaled,
    resized to the input with OpenCV, min-max scaled again.

    The shortcut is exact when nothing after the target layer reads a tensor computed before it (a
    plain CNN's last block, pooling and classifier): the layers after it then compute on the very
    batches ``AblationCAM`` feeds them, so the maps are bitwise its maps (with the default
    :data:`ABLATION_PASS_ELEMENTS`). A tensor from before the layer that is only broadcast against the
    copies (an added skip connection) gives the same maps up to rounding (it comes from one image, not
    ``batch_size`` copies). Otherwise -- a
    concatenated skip connection (a shape error), an output with other than ``batch_size`` rows, the
    layer running twice -- it falls back to ``AblationCAM`` itself, with a note on the
    ``tsmlib.baselines`` logger; so do ``reshape_transform`` and ``aug_smooth``.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits (B, K); run in eval mode (as pytorch-grad-cam does), each module's
        mode restored after.
    x : torch.Tensor, shape (B, 3, H, W)
    module : nn.Module
        The target layer (output (B, C, h, w)).
    targets : LongTensor (B,) or None
    batch_size : int, default 32
        Ablated copies per forward pass (``AblationCAM.batch_size``; it also sets the ablation values
        when the activations' minimum is not 0).

    Returns
    -------
    torch.Tensor, shape (B, H, W)
        In [0, 1], on ``x``'s device.
    """
    targets = _check_targets(x, targets)
    bs = 32 if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    opts = dict(batch_size=bs, reshape_transform=reshape_transform, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
    if reshape_transform is not None or aug_smooth:
        _log.debug("Ablation-CAM with reshape_transform or aug_smooth: pytorch-grad-cam's AblationCAM")
        return _run_grad_cam(AblationCAM, model, x, module, targets, **opts)
    with eval_mode(model):  # as pytorch-grad-cam, but each module's mode restored after
        return _fast_ablation_cam(model, x, module, targets, bs, opts)


def _fast_ablation_cam(model, x, module, targets, bs: int, opts: dict) -> torch.Tensor:
    device = next(model.parameters()).device
    xd = x.detach().to(device)
    captured = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            logits = model(xd)
    finally:
        handle.remove()
    reason = None
    if len(captured) != 1:
        reason = f"the target layer ran {len(captured)} times in one pass"
    elif not isinstance(captured[0], torch.Tensor) or captured[0].ndim != 4:
        reason = "the target layer's output is not a (B, C, h, w) tensor"
    elif not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        reason = "the model's output is not (B, K) logits"
    if reason is None:
        A = captured[0].detach().clone()  # later layers may edit the output in place (ReLU(inplace=True))
        if targets is None:
            classes = np.argmax(logits.cpu().numpy(), axis=-1).tolist()  # as BaseCAM.forward
        else:
            classes = [int(c) for c in targets.tolist()]
        try:
            ablated = _ablation_weights(model, module, xd, A, classes, bs)
        except AblationShortcutError as err:
            reason = str(err)
    if reason is not None:
        _log.info("Ablation-CAM shortcut not applicable (%s): running pytorch-grad-cam's AblationCAM", reason)
        return _run_grad_cam(AblationCAM, model, x, module, targets, **opts)
    # pytorch-grad-cam from here on: AblationCAM.get_cam_weights, BaseCAM.get_cam_image,
    # compute_cam_per_layer and aggregate_multi_layers, with their float32 NumPy arithmetic.
    original = _class_scores(logits, classes)[:, None]
    weights = (original - ablated) / original
    acts = A.cpu().numpy()
    weighted = weights[:, :, None, None] * acts
    cam = get_2d_projection(weighted) if opts["eigen_smooth"] else weighted.sum(axis=1)
    cam = scale_cam_image(np.maximum(cam, 0), (x.shape[-1], x.shape[-2]))
    cam = scale_cam_image(np.maximum(cam[:, None, :], 0).mean(axis=1))
    return _as_output(torch.from_numpy(cam), x)


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
