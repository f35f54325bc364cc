"""Random-weight copies of a model: the control a saliency method must fail on.

A saliency method explains a model only if its maps (and their scores) depend on what the model learnt.
The control is the *same architecture with weights nobody trained*: :func:`randomised_copy` deep-copies a
model, re-initialises every parameter with a fixed seed and re-estimates the BatchNorm running statistics
on a few images, so that the random network's activations have the scale a trained network's would
(without that step a BatchNorm layer would normalise with the trained network's statistics, or with
``mean 0, var 1`` after a reset, and the activations would explode or vanish through the depth).

The re-initialisation rule is each layer's own ``reset_parameters``, which is the initialisation of the
architectures this book uses (``efficientnet-lite-pytorch`` and torchvision build their layers with
PyTorch's defaults: Kaiming-uniform with ``a = sqrt(5)`` for convolution and linear weights, uniform
biases in ``+-1/sqrt(fan_in)``, BatchNorm ``gamma = 1, beta = 0``). The layers other than BatchNorm go
through :func:`tsmlib.evaluation.sanity.reinitialise_`, the re-initialisation of the cascading sanity
check (one home: ``reset_parameters`` under a seed drawn from one generator; Kaiming-uniform weights and
``N(0, 0.02^2)`` 1-D parameters for a layer without it); BatchNorm layers get their own
``reset_parameters`` (``gamma = 1, beta = 0``), not the sanity check's random affine map.

The calibration images of :func:`calibration_views` are deterministic random crops and flips of given
images; the registry's random variants (:func:`random_variant`: ``efficientnet_lite0_random``,
``resnet50_random``) use :func:`calibration_photos`, crops of the book's offline photographs: natural
images, so that the re-estimated statistics are those of the input distribution the maps are computed on
(first and second moments per channel only: no label, mask or score of the photographs is used).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RANDOM_SEED", "CALIBRATION_VIEWS", "random_variant", "calibration_photos", "reset_batchnorm_statistics_", "estimate_batchnorm_statistics_", "calibration_views",
           "randomised_copy"]


#: Seed of the re-initialisation of the registry's random variants.
RANDOM_SEED = 0
#: Random crops/flips per offline photograph that re-estimate a random variant's BatchNorm statistics.
CALIBRATION_VIEWS = 2


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reset_batchnorm_statistics_(model: nn.Module) -> int:
    """Reset every BatchNorm layer's running mean (0), variance (1) and batch count; returns their number."""
    layers = _batchnorms(model)
    for bn in layers:
        bn.reset_running_stats()
    return len(layers)


@torch.no_grad()
def estimate_batchnorm_statistics_(model: nn.Module, images: torch.Tensor, *, batch_size: int = 32) -> nn.Module:
    """Re-estimate the BatchNorm running statistics of ``model`` on ``images``, in place; returns it in eval mode.

    The statistics are reset, then accumulated as the *exact* average over the batches (``momentum=None``,
    PyTorch's cumulative moving average) by forward passes with the BatchNorm layers in train mode and
    every other module in eval mode (so dropout and drop-connect stay off and the passes are
    deterministic); nothing else changes (no gradient, no parameter update).

    Parameters
    ----------
    model : nn.Module
    images : torch.Tensor, shape (N, 3, S, S)
        Inputs in the model's input space (for the registry models: RGB in [0, 1]).
    batch_size : int
        Images per forward pass; each batch's mean and variance are averaged over batches with equal
        weight, so batches of equal size give the statistics of the whole set (the last one may be smaller).

    Raises
    ------
    ValueError
        No images, or a batch of one image (BatchNorm cannot estimate a variance from it).
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"calibration images must be (N, 3, S, S) with N >= 1, got shape {tuple(images.shape)}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (BatchNorm needs two images per batch), got {batch_size}")
    if images.shape[0] % batch_size == 1:
        raise ValueError(f"{images.shape[0]} images in batches of {batch_size} leave a batch of one image; "
                         "choose another batch_size")
    layers = _batchnorms(model)
    momenta = [bn.momentum for bn in layers]
    reset_batchnorm_statistics_(model)
    device = next((p.device for p in model.parameters()), images.device)
    try:
        for bn in layers:
            bn.momentum = None
        model.eval()
        for bn in layers:
            bn.train()
        for i in range(0, images.shape[0], batch_size):
            model(images[i:i + batch_size].to(device))
    finally:
        for bn, m in zip(layers, momenta):
            bn.momentum = m
        model.eval()
    return model


def calibration_views(images: torch.Tensor, n_views: int = 4, *, seed: int = 0, min_scale: float = 0.25,
                      flip: bool = True) -> torch.Tensor:
    """Deterministic random crops (and horizontal flips) of ``images``, resized back to their size.

    Each view is a crop of area ``U(min_scale, 1)`` times the image's and aspect ratio
    ``exp(U(log 3/4, log 4/3))`` (as torchvision's ``RandomResizedCrop``), bilinearly resized to
    ``S x S``, flipped with probability 1/2.

    Parameters
    ----------
    images : torch.Tensor, shape (N, 3, S, S)
    n_views : int
        Views per image.
    seed : int
        Seed of the crops and flips (a private generator: the global RNG is untouched).

    Returns
    -------
    torch.Tensor, shape (N * n_views, 3, S, S)
        Image-major order: the ``n_views`` views of image 0 first.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 3, S, S), got shape {tuple(images.shape)}")
    if n_views < 1 or not 0 < min_scale <= 1:
        raise ValueError(f"need n_views >= 1 and 0 < min_scale <= 1, got {n_views}, {min_scale}")
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    out = []
    for i in range(n):
        for _ in range(n_views):
            area = h * w * float(torch.empty(1).uniform_(min_scale, 1.0, generator=gen))
            ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)))
            ch = min(h, max(1, round(math.sqrt(area / ratio))))
            cw = min(w, max(1, round(math.sqrt(area * ratio))))
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            view = images[i:i + 1, :, top:top + ch, left:left + cw]
            view = F.interpolate(view.float(), size=(h, w), mode="bilinear", align_corners=False)
            if flip and bool(torch.rand(1, generator=gen) < 0.5):
                view = view.flip(-1)
            out.append(view.clamp(0, 1).to(images.dtype))
    return torch.cat(out)


def randomised_copy(model: nn.Module, *, seed: int, calibration_images: torch.Tensor | None,
                    batch_size: int = 32) -> nn.Module:
    """A copy of ``model`` with every weight re-initialised and the BatchNorm statistics re-estimated.

    Parameters
    ----------
    model : nn.Module
        Not modified (a deep copy is randomised).
    seed : int
        Seed of the re-initialisation: the same seed gives the same weights, bit for bit.
    calibration_images : torch.Tensor (N, 3, S, S) or None
        Images whose forward passes in train mode re-estimate the BatchNorm running statistics
        (:func:`estimate_batchnorm_statistics_`); e.g. :func:`calibration_views` of a few photographs.
        ``None`` only for a model without BatchNorm layers.
    batch_size : int
        Images per calibration forward pass.

    Returns
    -------
    nn.Module
        In eval mode, on the device of ``model``. Every module that owns parameters is re-initialised, in
        the order of ``model.named_modules()``: BatchNorm layers by their ``reset_parameters``
        (``gamma = 1, beta = 0``), the others by :func:`tsmlib.evaluation.sanity.reinitialise_` from one
        generator seeded with ``seed``.

    Raises
    ------
    ValueError
        ``calibration_images`` is None although the model has BatchNorm layers.
    """
    from ..evaluation.sanity import reinitialise_  # lazy: tsmlib.evaluation imports the models

    random = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    for _, module in random.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_parameters()  # the layer's own initialisation: gamma = 1, beta = 0, statistics reset
        elif any(True for _ in module.parameters(recurse=False)):
            reinitialise_(module, gen)
    if _batchnorms(random):
        if calibration_images is None:
            raise ValueError("the model has BatchNorm layers: pass calibration_images to re-estimate their statistics")
        estimate_batchnorm_statistics_(random, calibration_images, batch_size=batch_size)
    return random.eval()


def calibration_photos(spec, n_views: int = CALIBRATION_VIEWS, seed: int = RANDOM_SEED) -> torch.Tensor:
    """``n_views`` deterministic random crops and flips (:func:`calibration_views`) of each offline
    photograph (:mod:`tsmlib.data.photos`), first preprocessed like the inputs of the model ``spec``
    describes (short side ``spec.resize_size``, centre crop ``spec.input_size``).

    Returns
    -------
    torch.Tensor, shape (n_photos * n_views, 3, S, S), in [0, 1]
    """
    from ..data.common import open_rgb
    from ..data.photos import photo_manifest, photos_root
    from .wrappers import image_to_tensor, resize_center_crop

    root = photos_root()
    base = torch.stack([image_to_tensor(resize_center_crop(open_rgb(root / rec["file"]), spec.resize_size,
                                                           spec.input_size))
                        for rec in photo_manifest(root)])
    return calibration_views(base, n_views, seed=seed)


def random_variant(spec, *, seed: int = RANDOM_SEED, n_views: int = CALIBRATION_VIEWS):
    """The registry entry of the random-weight control of the model ``spec`` describes.

    Same architecture, preprocessing, target layer and classes, named ``<name>_random``; its builder builds
    ``spec``'s model (with its weights: the same file requirements) and returns
    :func:`randomised_copy` of it with seed ``seed``, the BatchNorm statistics re-estimated on
    :func:`calibration_photos` (``n_views`` per photograph). The loaded model has ``kind="random"`` and
    records the recipe in ``info``; its weights differ from the trained ones, so every cache keyed by
    content (:func:`tsmlib.fingerprint.state_dict_digest`) tells them apart.
    """
    import dataclasses

    def build(own, weights, probe_weights, allow_download, probe):
        from .registry import _build_resnet, _build_vgg

        base = spec.builder or (_build_vgg if spec.architecture.startswith("vgg") else _build_resnet)
        trained, *_ = base(spec, weights, probe_weights, allow_download, probe)
        model = randomised_copy(trained, seed=seed, calibration_images=calibration_photos(spec, n_views, seed))
        info = {"trained_model": spec.name, "seed": seed,
                "init": "each layer's reset_parameters (PyTorch defaults; BatchNorm gamma=1, beta=0)",
                "batchnorm_calibration": f"{n_views} random crops/flips of each offline photograph (seed {seed}), "
                                         "BatchNorm layers in train mode, exact average"}
        return model, {}, {"kind": "random", "info": info}

    return dataclasses.replace(
        spec, name=f"{spec.name}_random", builder=build,
        description=f"{spec.name} with random weights (control): every weight re-initialised (seed {seed}), "
                    f"BatchNorm statistics re-estimated on crops of the offline photographs",
        reference="this project: tsmlib.models.randomise (the random-weight control of Adebayo et al. 2018)")
