"""Randomisation of a model's weights, in one place: the random-weight control and the sanity check's steps.

* the **random-weight control** (:func:`randomised_copy`, :func:`random_variant`): a whole model
  re-initialised, its BatchNorm statistics re-estimated;
* the **steps of the model-randomisation sanity check** (:mod:`tsmlib.evaluation.sanity` runs them):
  which blocks a model has, output side first (:func:`randomisation_blocks`, :func:`group_blocks`), and
  re-initialising them cumulatively or one at a time (:func:`randomised_models`), or nudging every weight
  a little (:func:`perturbed_model`, the sanity check's noise floor). One rule re-initialises a layer
  everywhere: :func:`reinitialise_`.

Random-weight copies of a model: the control a saliency method must fail on.

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
through :func:`reinitialise_`, the re-initialisation of the cascading sanity
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
import hashlib
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RANDOM_SEED", "CALIBRATION_VIEWS", "random_variant", "calibration_photos", "reset_batchnorm_statistics_",
           "estimate_batchnorm_statistics_", "calibration_views", "randomised_copy", "reinitialise_",
           "parameterised_modules_in_call_order", "block_of", "randomisation_blocks", "group_blocks", "SCHEMES",
           "randomise_block_", "randomised_models", "perturbed_model"]


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
        (``gamma = 1, beta = 0``), the others by :func:`reinitialise_` from one
        generator seeded with ``seed``.

    Raises
    ------
    ValueError
        ``calibration_images`` is None although the model has BatchNorm layers.
    """
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

    Same architecture, preprocessing, target layer and classes, named ``<name>_random`` (displayed as
    ``"<display name> (random weights)"``); its builder builds
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
        spec, name=f"{spec.name}_random", display_name=f"{spec.display_name} (random weights)", builder=build,
        description=f"{spec.name} with random weights (control): every weight re-initialised (seed {seed}), "
                    f"BatchNorm statistics re-estimated on crops of the offline photographs",
        reference="this project: tsmlib.models.randomise (the random-weight control of Adebayo et al. 2018)")


# ------------------------------------------------------------------------------------------- blocks
def parameterised_modules_in_call_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Dotted names of the modules that own parameters, in the order a forward pass on ``x`` calls them.

    Modules called more than once keep their first call; modules never called (unused heads) are left
    out. Hooks are removed before returning.
    """
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    seen = set()

    def hook(module, _inp, _out):
        if module not in seen:
            seen.add(module)
            order.append(names[module])

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if any(True for _ in m.parameters(recurse=False))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def block_of(model: nn.Module, name: str) -> str:
    """The block a module belongs to: the coarsest prefix of ``name`` that is an element of a
    ``ModuleList``/``Sequential`` (``"net._blocks.3._bn1"`` -> ``"net._blocks.3"``), else ``name`` itself."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = model.get_submodule(".".join(parts[:i]))
        if isinstance(parent, (nn.ModuleList, nn.Sequential)):
            return ".".join(parts[:i + 1])
    return name


def randomisation_blocks(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The blocks (:func:`block_of`) of the parameterised modules, output side first (reverse call order).

    ``x`` is one (or a few) input images for the forward pass that records the call order.
    """
    blocks: list[str] = []
    for name in parameterised_modules_in_call_order(model, x)[::-1]:
        block = block_of(model, name)
        if block not in blocks:
            blocks.append(block)
    return blocks


def group_blocks(blocks: Sequence[str], n_steps: int | None = None, *, n_single: int = 1) -> list[tuple[str, ...]]:
    """A fixed, affordable set of randomisation steps: contiguous groups of blocks, output side first.

    The first ``n_single`` blocks (the classifier) stay steps of their own; the others are split into
    ``n_steps - n_single`` contiguous groups of near-equal size (the larger ones nearer the output, as
    ``numpy.array_split``). The last group holds the input-side blocks, so a cascade over the groups
    ends with every block re-initialised.

    Parameters
    ----------
    blocks : sequence of str
        Output side first (:func:`randomisation_blocks`).
    n_steps : int, optional
        Number of groups; None (or at least ``len(blocks)``): one group per block.
    n_single : int

    Returns
    -------
    list of tuple of str
    """
    blocks = list(blocks)
    if not blocks:
        raise ValueError("no blocks to group")
    if n_single < 0:
        raise ValueError(f"n_single must be >= 0, got {n_single}")
    if n_steps is None or n_steps >= len(blocks):
        return [(b,) for b in blocks]
    n_single = min(n_single, len(blocks) - 1)
    if n_steps <= n_single:
        raise ValueError(f"n_steps must exceed n_single ({n_single}) to reach the input; got {n_steps}")
    rest = blocks[n_single:]
    sizes = [len(a) for a in np.array_split(np.arange(len(rest)), n_steps - n_single)]
    groups, i = [(b,) for b in blocks[:n_single]], 0
    for size in sizes:
        groups.append(tuple(rest[i:i + size]))
        i += size
    return groups


# ----------------------------------------------------------------------------------- randomisation
def reinitialise_(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise the parameters a module owns (not its children's), in place.

    Uses the module's own ``reset_parameters`` (under the given generator's seed) when it has one; other
    parameters are drawn from N(0, 0.02^2) (biases and 1-D parameters) or Kaiming-uniform (the rest).
    Normalisation layers' running statistics are reset too.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
                # reset_parameters sets gamma=1, beta=0: an identity that keeps the maps' structure.
                nn.init.normal_(module.weight, 1.0, 0.5)
                nn.init.normal_(module.bias, 0.0, 0.5)
            return
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                if p.ndim >= 2:
                    nn.init.kaiming_uniform_(p, a=5 ** 0.5)
                else:
                    p.normal_(0.0, 0.02)


SCHEMES = ("cascading", "independent")


def _as_group(block) -> tuple[str, ...]:
    group = (block,) if isinstance(block, str) else tuple(block)
    if not group or not all(isinstance(b, str) for b in group):
        raise ValueError(f"a randomisation step is a module name or a non-empty tuple of names, got {block!r}")
    return group


def _block_seed(seed: int, name: str) -> int:
    return int(hashlib.sha256(f"{int(seed)}/{name}".encode()).hexdigest()[:15], 16)


def randomise_block_(net: nn.Module, block: str | Sequence[str], seed: int = 0) -> None:
    """Re-initialise, in place, every parameterised module inside ``block`` (a name or a group of names).

    Each named block draws from its own generator, seeded by ``seed`` and its name, so a block gets the
    same random weights in the cascading and the independent scheme, whatever the other steps are.
    """
    from ..hooks import resolve_layer

    for name in _as_group(block):
        gen = torch.Generator().manual_seed(_block_seed(seed, name))
        for module in resolve_layer(net, name).modules():
            if any(True for _ in module.parameters(recurse=False)):
                reinitialise_(module, gen)


def randomised_models(model: nn.Module, blocks: Sequence, *, scheme: str = "cascading", seed: int = 0):
    """The models of a randomisation check, one step after the other.

    Yields ``(step, block, net)``: step 0 is an unmodified deep copy of ``model`` (``block = ()``); at step
    ``k`` the ``k``-th entry of ``blocks`` (a name or a tuple of names, output side first) is
    re-initialised by :func:`randomise_block_`, on top of the previous steps (``"cascading"``) or alone,
    every other block trained (``"independent"``: the block's weights and buffers are put back after the
    step). ``net`` is the same copy throughout, changed in place: use it before asking for the next step.
    ``model`` itself is never modified.
    """
    from ..hooks import resolve_layer

    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {SCHEMES}")
    groups = [_as_group(b) for b in blocks]
    for group in groups:
        for name in group:
            resolve_layer(model, name)  # ValueError naming close matches if it does not exist
    net = copy.deepcopy(model).eval()
    yield 0, (), net
    for k, group in enumerate(groups, start=1):
        saved = None
        if scheme == "independent":
            saved = {name: {key: v.clone() for key, v in net.get_submodule(name).state_dict().items()}
                     for name in group}
        randomise_block_(net, group, seed)
        yield k, group, net
        if saved is not None:
            for name, state in saved.items():
                net.get_submodule(name).load_state_dict(state)


def perturbed_model(model: nn.Module, scale: float = 0.01, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every floating-point parameter nudged: ``w + scale * std(w) * N(0, 1)``.

    The yardstick of "no change": a method's maps under such a nudge (1 % of each tensor's spread by
    default) vary only by its noise level. Parameters with one element or no spread use ``scale * |w|``
    (an all-zero tensor stays zero);
    buffers (batch-norm statistics) are kept. ``model`` is not modified.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    net = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in net.parameters():
            if not p.is_floating_point():
                continue
            spread = p.std() if p.numel() > 1 else p.new_zeros(())
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device=p.device, dtype=p.dtype)
            size = torch.where(spread > 0, spread, p.abs())
            p.add_(scale * size * noise)
    return net
