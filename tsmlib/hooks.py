"""Forward hooks on a model's target layer: find the layer, record its output, capture activations.

``hooks`` imports nothing else from tsmlib, so the registry, the baselines and the notebooks can all
build on it without import cycles::

    A = tsmlib.capture_activations(model, x, "layer4")     # (B, C, h, w), one no-grad forward pass
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Callable

import torch
from torch import nn

__all__ = ["resolve_layer", "layer_name", "eval_mode", "in_eval_mode", "ActivationCapture", "capture_activations",
           "layer_gradients_only"]


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """The target layer: a module of ``model`` itself, or its dotted name (``"layer4"``, ``"features.29"``)."""
    if isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be an nn.Module or a dotted module name, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(layer, names, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" Top-level modules: {', '.join(n for n in names if '.' not in n)}."
        raise ValueError(f"model has no submodule {layer!r}.{hint}") from None


def layer_name(model: nn.Module, layer: nn.Module | str) -> str:
    """The dotted name of the target layer in ``model``: what a cache key or a table records, and what
    finds the same layer again in a copy of the model.

    A string is returned as given (it is a name already; :func:`resolve_layer` checks it when the layer
    is used). A module is looked up among ``model.named_modules()`` by identity (the model itself is
    ``""``); a module that is not part of ``model`` raises ``ValueError``, since no name would find it.

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> layer_name(net, net[1]), layer_name(net, "0")
    ('1', '0')
    """
    if isinstance(layer, str):
        return layer
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module or a dotted module name, got {type(layer).__name__}")
    for name, module in model.named_modules():
        if module is layer:
            return name
    raise ValueError(f"the layer {type(layer).__name__} is not a submodule of the model; pass one of its own "
                     "modules or its dotted name")
@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Context manager: ``model`` in eval mode inside, every submodule's own mode restored on exit.

    Every saliency method runs in it (:func:`tsmlib.saliency`, :func:`tsmlib.cam.saliency_maps`, the
    baselines), so a model left in train mode is explained as it predicts -- BatchNorm with its running
    statistics, no dropout -- its buffers are not updated, and its maps do not depend on the other images
    of the batch. Modes are restored module by module (a model with some modules in eval mode and
    others in train mode comes back the same), also when the block raises. ``model=None`` (the
    yardsticks, which look at no model) does nothing.

    >>> with eval_mode(model):                     # doctest: +SKIP
    ...     maps = tsmlib.saliency(model, x, "tsm", "layer4")
    """
    if model is None:
        yield model
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def in_eval_mode(fn: Callable) -> Callable:
    """Decorator: ``fn(model, ...)`` runs inside :func:`eval_mode` ``(model)``."""
    import functools

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with eval_mode(model):
            return fn(model, *args, **kwargs)

    return wrapper


class ActivationCapture:
    """Context manager that records the output of one layer during forward passes.

    Parameters
    ----------
    model : nn.Module
    layer : nn.Module or str
        The target layer or its dotted name in ``model``.
    reshape_transform : callable, optional
        Applied to the layer output before it is stored, e.g. to turn ViT tokens (B, N, D) into
        (B, D, h, w) feature maps.
    detach : bool
        Store a detached copy (default). ``False`` keeps the graph, for gradient-based methods.

    The stored activations are the layer's output as it left the layer. Layers after it may edit that
    tensor in place (``ReLU(inplace=True)`` after a DenseNet's last BatchNorm, ``out += identity`` in
    a ResNet block after its ``bn2``), so with ``detach`` the hook stores a copy: one memory copy of
    the layer's output per forward pass (under 1 % of a forward pass; see the tests). A tensor edited
    in place cannot be detected *before* the edit, so every output is copied. With ``detach=False``
    the graph-carrying output itself is kept (a copy would cut it from the model's output), and
    :meth:`result` raises if a later layer edited it in place.

    Examples
    --------
    >>> with ActivationCapture(model, "layer4") as cap:   # doctest: +SKIP
    ...     logits = model(x)
    >>> cap.activations.shape                              # doctest: +SKIP
    torch.Size([B, 2048, 7, 7])

    The hook is removed on exit (or by :meth:`release`), also when the forward pass raises. For
    the activations alone, :func:`capture_activations` is shorter.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str, reshape_transform: Callable | None = None, detach: bool = True):
        self.module = resolve_layer(model, layer)
        self.layer = layer
        self.reshape_transform = reshape_transform
        self.detach = detach
        self.activations: torch.Tensor | None = None
        self._version = None
        self._handle = None

    def _hook(self, module, inputs, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        if self.reshape_transform is not None:
            output = self.reshape_transform(output)
        if self.detach:
            self.activations = output.detach().clone()  # immune to later in-place edits of the output
        else:
            self.activations, self._version = output, output._version

    def __enter__(self) -> "ActivationCapture":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def release(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __exit__(self, *exc) -> None:
        self.release()

    def result(self) -> torch.Tensor:
        """The recorded activations; ``RuntimeError`` if the layer did not run."""
        if self.activations is None:
            raise RuntimeError(f"layer {self.layer!r} did not run during the forward pass; "
                               "is it part of the model's forward?")
        if not self.detach and self.activations._version != self._version:
            raise RuntimeError(f"the output of layer {self.layer!r} was modified in place after the layer "
                               "(e.g. by ReLU(inplace=True) or `out += identity`): the kept tensor no longer "
                               "holds the layer's output; capture with detach=True (a copy) instead")
        return self.activations


def capture_activations(model: nn.Module, x: torch.Tensor, layer: nn.Module | str,
                        reshape_transform: Callable | None = None, *, return_output: bool = False):
    """The output of ``layer`` for the batch ``x``: one forward pass without gradients.

    Parameters
    ----------
    model : nn.Module
        In eval mode (this function does not change it).
    x : torch.Tensor
        Model input.
    layer : nn.Module or str
        The target layer or its dotted name.
    reshape_transform : callable, optional
        As for :class:`ActivationCapture` (e.g. ViT tokens to feature maps).
    return_output : bool
        Also return the model's output of that same forward pass: ``(activations, output)``.

    Returns
    -------
    torch.Tensor
        The detached activations (``(B, C, h, w)`` for a CNN layer), or ``(activations, output)``.

    Raises
    ------
    RuntimeError
        If the layer did not run during the forward pass (not part of the model's ``forward``).
    """
    with ActivationCapture(model, layer, reshape_transform) as cap, torch.no_grad():
        output = model(x)
    A = cap.result()
    return (A, output) if return_output else A


class layer_gradients_only:
    """Context manager: a backward pass from the model's output stops at ``layer``.

    A forward hook, registered first, makes the layer's output a fresh leaf tensor (same values,
    ``requires_grad=True``), so autograd records only the part of the network *after* the layer. The
    forward values do not change; the gradients with respect to the layer's activations are exactly
    those of the full graph (the chain rule never looks upstream for them). That is all the Grad-CAM
    family needs, and it saves the backward pass through everything before the layer (about two
    thirds of a Grad-CAM's cost on a CNN whose target layer is its last block). Gradients with respect
    to the input or to earlier weights are *not* available inside the context.

    Hooks registered later on the same layer (pytorch-grad-cam's) see the leaf. Removed on exit, also
    on error.

    >>> with layer_gradients_only(model, "layer4"):           # doctest: +SKIP
    ...     maps = tsmlib.saliency(model, x, "gradcam", "layer4")
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str):
        self.module = resolve_layer(model, layer)
        self._handle = None

    @staticmethod
    def _hook(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.detach().requires_grad_(True)
        return None

    def __enter__(self) -> "layer_gradients_only":
        # prepend: the leaf must exist before any other hook on the layer (the CAM's) sees the output
        self._handle = self.module.register_forward_hook(self._hook, prepend=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
