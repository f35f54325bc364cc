"""Model-randomisation sanity checks (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Blocks of weights of a deep copy of the model are re-initialised, from the output towards the input, and
each method's maps are recomputed after every step and compared with the maps of the trained model by
Spearman rank correlation and SSIM (both in torch, batched). Two schemes share one loop
(:func:`model_randomization`):

* **cascading** (:func:`cascading_randomization`): the blocks are re-initialised cumulatively, so the
  last step has every listed block random;
* **independent** (:func:`independent_randomization`): each block is re-initialised alone, the rest of
  the network trained.

Two anchors run like methods: :func:`edge_map` (a Sobel edge map of the image, which ignores the model:
similarity 1 under any randomisation) and :func:`random_map` (a smooth random map, drawn afresh for every
model: low similarity at every step). :func:`noise_floor` measures the similarity that a tiny nudge of the
trained weights leaves, and :func:`sanity_thresholds` / :func:`sanity_verdicts` turn both into a rule:
a method *stays similar* when its similarity after randomisation cannot be told apart from that noise
level. :func:`randomisation_blocks`, :func:`group_blocks` and :func:`block_label` give the steps and their
names in words.

The target of label-dependent methods stays the class predicted by the *original* model, as in the paper.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import progress as _progress
from ..methods import minmax_normalize
from ._methods import method_maps, resolve_methods


# ------------------------------------------------------------------------------------ similarities
def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``1..N`` along the last dimension, ties given their average rank (as ``scipy.stats.rankdata``).

    One sort; the first and last position of each run of equal values come from a running maximum and
    minimum, so ties cost nothing extra.

    Parameters
    ----------
    values : torch.Tensor, shape (B, N)

    Returns
    -------
    torch.Tensor, shape (B, N), float64
    """
    v = values.double()
    sorted_v, order = torch.sort(v, dim=-1)
    n = v.shape[-1]
    pos = torch.arange(n, device=v.device).expand_as(sorted_v)
    starts = torch.ones_like(sorted_v, dtype=torch.bool)
    starts[..., 1:] = sorted_v[..., 1:] != sorted_v[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.cummax(torch.where(starts, pos, 0), dim=-1).values
    last = torch.cummin(torch.where(ends, pos, n).flip(-1), dim=-1).values.flip(-1)
    avg_sorted = (first + last).double() / 2 + 1
    ranks = torch.empty_like(avg_sorted)
    ranks.scatter_(-1, order, avg_sorted)
    return ranks


def _centred_ranks(a: torch.Tensor):
    r = average_ranks(a.flatten(1))
    r = r - r.mean(-1, keepdim=True)
    return r, (r * r).sum(-1)


def _rank_correlation(ra, rb) -> torch.Tensor:
    (ra, ssa), (rb, ssb) = ra, rb
    # sqrt of the product (not the product of two norms): a map compared with itself gives exactly 1
    den = torch.sqrt(ssa * ssb)
    num = (ra * rb).sum(-1)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(num, float("nan")))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two batches of maps.

    Parameters
    ----------
    a, b : torch.Tensor, shape (B, H, W) (or (B, N))

    Returns
    -------
    torch.Tensor, shape (B,), float64
        In [-1, 1] (exactly 1 for a map compared with itself); NaN where a map is constant (its ranks
        have no variance).
    """
    if a.shape != b.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _rank_correlation(_centred_ranks(a), _centred_ranks(b.to(a.device)))


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    t = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


_SSIM_SIGMA, _SSIM_WINDOW = 1.5, 11


def _ssim_stats(a: torch.Tensor, sigma: float = _SSIM_SIGMA, window_size: int = _SSIM_WINDOW):
    """What SSIM needs of one batch: the maps, the filter, their local means and variances."""
    x = a.double()[:, None]
    size = min(window_size, a.shape[-1], a.shape[-2])
    if size % 2 == 0:
        size -= 1
    g = _gaussian_window(size, sigma, x.dtype, x.device)
    kh, kw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def filt(z):
        return F.conv2d(F.conv2d(z, kh), kw)

    mx = filt(x)
    return x, filt, mx, filt(x * x) - mx * mx


def _ssim_from(sa, sb, data_range: float = 1.0) -> torch.Tensor:
    (x, filt, mx, vx), (y, _, my, vy) = sa, sb
    cxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(-1)


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, sigma: float = _SSIM_SIGMA,
         window_size: int = _SSIM_WINDOW) -> torch.Tensor:
    """Per-image mean structural similarity (Wang et al. 2004) with a Gaussian window.

    Matches ``skimage.metrics.structural_similarity(a, b, data_range=1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)``: constants ``K1 = 0.01``, ``K2 = 0.03``, mean over the
    valid (unpadded) region. Maps smaller than the window use a window of the map's size.

    Parameters
    ----------
    a, b : torch.Tensor, shape (B, H, W)
        Maps with values in a range of width ``data_range``.

    Returns
    -------
    torch.Tensor, shape (B,), float64, in [-1, 1] (exactly 1 for a map compared with itself)
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs two (B, H, W) batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _ssim_from(_ssim_stats(a, sigma, window_size), _ssim_stats(b.to(a.device), sigma, window_size),
                      data_range)


#: similarity name -> (prepare one batch, similarity of two prepared batches); the reference is prepared once
_PREPARED = {"spearman": (_centred_ranks, _rank_correlation), "ssim": (_ssim_stats, _ssim_from)}


SIMILARITIES = {"spearman": spearman, "ssim": ssim}


# ------------------------------------------------------------------------------------------ anchors
def edge_map(model: nn.Module | None, x: torch.Tensor, layer=None, targets=None) -> torch.Tensor:
    """Anchor for "follows image structure": the Sobel gradient magnitude of the grey-level image.

    ``skimage.filters.sobel`` of ``skimage.color.rgb2gray``, min-max normalised per image. It has the
    registry's signature but never looks at ``model``, ``layer`` or ``targets``, so its similarity to
    itself is exactly 1 under any randomisation: a check that does not flag it is broken.

    Parameters
    ----------
    x : torch.Tensor, shape (B, 3, H, W), values in [0, 1]

    Returns
    -------
    torch.Tensor, shape (B, H, W), in [0, 1], dtype and device of ``x``
    """
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"edge_map needs RGB images (B, 3, H, W), got {tuple(getattr(x, 'shape', ()))}")
    images = x.detach().cpu().double().permute(0, 2, 3, 1).numpy()
    edges = torch.from_numpy(np.stack([sobel(rgb2gray(im)) for im in images]))
    return minmax_normalize(edges).to(device=x.device, dtype=x.dtype)


edge_map.label_free = True


def random_map(model: nn.Module, x: torch.Tensor, layer=None, targets=None, *, grid: int = 7,
               seed: int = 0) -> torch.Tensor:
    """Anchor for "unrelated": a smooth random map, drawn afresh for every model.

    Uniform noise on a ``grid x grid`` lattice (the resolution of a CAM at a 7 x 7 layer), bilinearly
    upsampled to the input size and min-max normalised, so that it is as smooth as a CAM and its chance
    similarity to a CAM is that of two unrelated smooth maps. The generator is seeded by ``seed``, the
    content of ``model``'s weights and the pixels of ``x`` (:mod:`tsmlib.fingerprint`): the same model and
    images give the same map (deterministic, cacheable), any change of the weights an independent one.
    Its similarity to the trained model's map should therefore be low at every step.

    Parameters
    ----------
    model : nn.Module
    x : torch.Tensor, shape (B, C, H, W)
    grid : int
        Side of the noise lattice (>= 2).
    seed : int

    Returns
    -------
    torch.Tensor, shape (B, H, W), in [0, 1], dtype and device of ``x``
    """
    from tsmlib.fingerprint import state_dict_digest, tensor_digest

    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"random_map needs a batch of images (B, C, H, W), got {tuple(getattr(x, 'shape', ()))}")
    if int(grid) < 2:
        raise ValueError(f"grid must be at least 2, got {grid}")
    key = f"{int(seed)}:{state_dict_digest(model)}:{tensor_digest(x)}"
    gen = torch.Generator().manual_seed(int(hashlib.sha256(key.encode()).hexdigest()[:15], 16))
    noise = torch.rand(x.shape[0], 1, int(grid), int(grid), generator=gen, dtype=torch.float64)
    up = F.interpolate(noise, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalize(up).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)


random_map.label_free = True


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


_WORDS = {"fc": "classifier", "_fc": "classifier", "classifier": "classifier",
          "_conv_head": "head", "_bn1": "head", "conv_head": "head",
          "_conv_stem": "stem", "_bn0": "stem", "conv_stem": "stem", "conv1": "stem", "bn1": "stem"}
_BLOCK_LISTS = ("_blocks", "blocks", "features", "layers")


def _one_label(model: nn.Module | None, name: str) -> str:
    parts = name.split(".")
    if parts[-1].isdigit() and len(parts) > 1:
        parent = parts[-2]
        prefix = "" if parent in _BLOCK_LISTS else f"{parent} "
        return f"{prefix}block {int(parts[-1]) + 1}"
    return _WORDS.get(parts[-1], name.removeprefix("net."))


def block_label(model: nn.Module | None, block: str | Sequence[str]) -> str:
    """A randomisation step in words, for axis labels.

    ``"net._fc"`` -> ``"classifier"``, ``"net._blocks.15"`` -> ``"block 16"``, ``"layer4.2"`` ->
    ``"layer4 block 3"``, stem and head convolutions and their batch norms -> ``"stem"``, ``"head"``; a
    group of blocks joins its members, with consecutive block numbers as a range:
    ``("net._bn1", "net._conv_head", "net._blocks.15", "net._blocks.14")`` -> ``"head, blocks 15-16"``.
    ``"(none)"`` or an empty group -> ``"none (trained)"``.
    """
    names = [block] if isinstance(block, str) else list(block)
    if not names or names == ["(none)"]:
        return "none (trained)"
    labels: list[str] = []
    numbered: dict[str, list[int]] = {}
    for name in names:
        label = _one_label(model, name)
        match = re.fullmatch(r"(.*?)block (\d+)", label)
        if match:
            prefix = match.group(1)
            if prefix not in numbered:
                numbered[prefix] = []
                labels.append(("block", prefix))
            numbered[prefix].append(int(match.group(2)))
        elif label not in labels:
            labels.append(label)
    words = []
    for item in labels:
        if isinstance(item, tuple):
            prefix, nums = item[1], sorted(numbered[item[1]])
            if len(nums) == 1:
                words.append(f"{prefix}block {nums[0]}")
            elif nums == list(range(nums[0], nums[-1] + 1)):
                words.append(f"{prefix}blocks {nums[0]}\u2013{nums[-1]}")
            else:
                words.append(f"{prefix}blocks {', '.join(map(str, nums))}")
        else:
            words.append(item)
    return ", ".join(words)


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
    from tsmlib.hooks import resolve_layer

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
    from tsmlib.hooks import resolve_layer

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


def _check_similarities(similarities) -> list[str]:
    similarities = list(similarities)
    for s in similarities:
        if s not in SIMILARITIES:
            raise ValueError(f"unknown similarity {s!r}; choose from {sorted(SIMILARITIES)}")
    return similarities


def _layer_name(model: nn.Module, layer) -> str:
    if isinstance(layer, nn.Module):
        lookup = {m: n for n, m in model.named_modules()}
        if layer not in lookup:
            raise ValueError("layer is not a submodule of model")
        return lookup[layer]
    return layer


def _compare_steps(model, x, fns, layer, targets, steps, similarities, ids, scheme, progress, total=None):
    """The shared loop: maps of the first net of ``steps`` are the reference; each later net's maps are
    compared with them. ``steps`` yields ``(step, label, net)``. Tidy rows as a DataFrame."""
    rows = []
    reference = None
    bar = _progress(steps, enabled=progress, desc=f"{scheme} randomisation", total=total)
    for step, label, net in bar:
        maps = method_maps(net, x, fns, layer, targets, layer_gradients=True)
        # each batch's ranks and local statistics are computed once (the reference's once for all steps)
        prepared = {(mname, sname): _PREPARED[sname][0](m.double()) for mname, m in maps.items() for sname in similarities}
        if reference is None:
            reference = prepared
        for mname in maps:
            for sname in similarities:
                vals = _PREPARED[sname][1](reference[mname, sname], prepared[mname, sname]).cpu().tolist()
                rows.extend({"scheme": scheme, "step": step, "layer_randomized": label, "image": i,
                             "method": mname, "similarity": sname, "value": v} for i, v in zip(ids, vals))
    return pd.DataFrame(rows, columns=["scheme", "step", "layer_randomized", "image", "method", "similarity",
                                       "value"])


def _prepare(model, x, methods, layer, targets, similarities, method_options, image_ids):
    fns = resolve_methods(methods, method_options)
    similarities = _check_similarities(similarities)
    layer = _layer_name(model, layer)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {tuple(getattr(x, 'shape', ()))}")
    model = model.eval()
    if targets is None:
        with torch.no_grad():
            out = model(x)
        targets = out.argmax(-1) if out.ndim == 2 else None
    ids = list(image_ids) if image_ids is not None else list(range(x.shape[0]))
    if len(ids) != x.shape[0]:
        raise ValueError(f"{len(ids)} image ids for {x.shape[0]} images")
    return model, fns, layer, targets, similarities, ids


def model_randomization(model: nn.Module, x: torch.Tensor, methods, layer, *, scheme: str = "cascading",
                        targets: torch.Tensor | None = None, similarities: Sequence[str] = ("spearman", "ssim"),
                        seed: int = 0, max_steps: int | None = None, blocks: Sequence | None = None,
                        method_options=None, image_ids: Sequence | None = None,
                        progress: bool = False) -> pd.DataFrame:
    """Model-randomisation check (Adebayo et al. 2018): similarity of each method's maps to the trained
    model's as blocks of weights are re-initialised.

    Parameters
    ----------
    model : nn.Module
        The trained model (not modified: a deep copy is randomised).
    x : torch.Tensor, shape (B, 3, S, S)
        Images in [0, 1]; all go through the model in one batch per step.
    methods : list of str or callable, or dict name -> callable
        As for :func:`tsmlib.evaluation.evaluate`; the activation methods share one capture per step
        (:func:`tsmlib.evaluation._methods.method_maps`).
    layer : str or nn.Module
        Target layer (a dotted name is resolved in each copy; a module is mapped to its name).
    scheme : {"cascading", "independent"}
        ``"cascading"``: step ``k`` has the first ``k`` entries of ``blocks`` re-initialised (output side
        first, so the last step randomises everything listed). ``"independent"``: step ``k`` has only the
        ``k``-th entry re-initialised, the rest of the network trained. See :func:`randomised_models`.
    targets : LongTensor (B,), optional
        Classes for label-dependent methods; default: the original model's predictions, kept fixed.
    similarities : sequence of {"spearman", "ssim"}
    seed : int
        Seed of the re-initialisations (deterministic; one generator per block, see
        :func:`randomise_block_`).
    max_steps : int, optional
        Only the first ``max_steps`` entries of ``blocks``.
    blocks : sequence of str or of tuples of str, optional
        Output side first (e.g. ``["fc", "layer4", ("layer3", "layer2")]``); each entry is one step and
        re-initialises every parameterised module inside the named module(s) (:func:`group_blocks` makes
        a fixed set of groups). Default: one step per parameterised module, in reverse call order.
    method_options, image_ids, progress
        Options per registry method; ids of the images for the rows; a terminal progress bar.

    Registry methods run with their backward passes cut at ``layer``
    (:class:`tsmlib.hooks.layer_gradients_only`: the same maps, about three times cheaper for Grad-CAMs).

    Returns
    -------
    pandas.DataFrame
        Tidy rows ``scheme, step, layer_randomized, image, method, similarity, value``; step 0 is the
        trained model (similarity 1 by construction); ``layer_randomized`` is the step's module names
        joined by ``"+"`` (``"(none)"`` at step 0).
    """
    model, fns, layer, targets, similarities, ids = _prepare(model, x, methods, layer, targets, similarities,
                                                             method_options, image_ids)
    order = list(blocks) if blocks is not None else parameterised_modules_in_call_order(model, x)[::-1]
    if max_steps is not None:
        order = order[:max_steps]
    steps = ((k, "+".join(group) if group else "(none)", net)
             for k, group, net in randomised_models(model, order, scheme=scheme, seed=seed))
    return _compare_steps(model, x, fns, layer, targets, steps, similarities, ids, scheme, progress,
                          total=len(order) + 1)


def cascading_randomization(model, x, methods, layer, **kwargs) -> pd.DataFrame:
    """:func:`model_randomization` with ``scheme="cascading"``: blocks re-initialised cumulatively from
    the output towards the input."""
    return model_randomization(model, x, methods, layer, scheme="cascading", **kwargs)


def independent_randomization(model, x, methods, layer, **kwargs) -> pd.DataFrame:
    """:func:`model_randomization` with ``scheme="independent"``: each block re-initialised alone, the
    rest of the network kept trained."""
    return model_randomization(model, x, methods, layer, scheme="independent", **kwargs)


def noise_floor(model: nn.Module, x: torch.Tensor, methods, layer, *, scale: float = 0.01, seed: int = 0,
                targets: torch.Tensor | None = None, similarities: Sequence[str] = ("spearman", "ssim"),
                method_options=None, image_ids: Sequence | None = None) -> pd.DataFrame:
    """Similarity of each method's maps to themselves under a tiny nudge of the weights
    (:func:`perturbed_model`): the level of similarity that means "no change".

    Same arguments and rows as :func:`model_randomization` (``scheme = "perturbation"``, step 1 =
    ``"(perturbed)"``).
    """
    model, fns, layer, targets, similarities, ids = _prepare(model, x, methods, layer, targets, similarities,
                                                             method_options, image_ids)
    steps = iter([(0, "(none)", model), (1, "(perturbed)", perturbed_model(model, scale, seed))])
    return _compare_steps(model, x, fns, layer, targets, steps, similarities, ids, "perturbation", False)


# ------------------------------------------------------------------------------------------ verdicts
SANITY_VERDICTS = ("stays similar", "changes partly", "as different as a random map", "undecided")


def similarity_values(df: pd.DataFrame, similarity: str = "spearman", *, absolute: bool | None = None) -> pd.DataFrame:
    """The rows of one similarity, as the verdicts read them: ``|value|`` when ``absolute`` (default: for
    Spearman only; an inverted map keeps its ranking, while a negative SSIM is a real dissimilarity), and NaN
    (Spearman's rho of a *constant* map, e.g. a Grad-CAM that a random network leaves all zero) as 0: a
    constant map keeps no ranking of the trained one's pixels."""
    df = df[df["similarity"] == similarity].copy()
    if df.empty:
        raise ValueError(f"no {similarity!r} rows in the results")
    df["value"] = df["value"].fillna(0.0)
    if absolute is None:
        absolute = similarity == "spearman"
    if absolute:
        df["value"] = df["value"].abs()
    return df


def sanity_thresholds(floor: pd.DataFrame, results: pd.DataFrame, *, methods: Sequence[str], random_method: str,
                      similarity: str = "spearman", absolute: bool | None = None, quantile: float = 0.05) -> dict:
    """The two thresholds of :func:`sanity_verdicts`, derived from the data rather than chosen.

    * ``similar``: the ``quantile`` of the per-image similarities of ``methods`` under a tiny nudge of the
      weights (:func:`noise_floor`), pooled over methods and images: a similarity at least this high is
      indistinguishable from noise-level change.
    * ``random``: the ``1 - quantile`` quantile of the random-map anchor's per-image similarities over
      every randomisation step (``step > 0``) of ``results``: up to this, a map is as unrelated as a
      random one.

    Values are read by :func:`similarity_values` (``absolute``: ``|rho|`` for Spearman by default; NaN
    counts as 0). Raises
    ``ValueError`` when the two overlap (``random >= similar``): the check could not tell the cases apart.
    """
    if not 0 < quantile < 0.5:
        raise ValueError(f"quantile must be in (0, 0.5), got {quantile}")
    fl = similarity_values(floor, similarity, absolute=absolute)
    fl = fl[(fl["step"] > 0) & fl["method"].isin(list(methods))]["value"].dropna()
    rnd = similarity_values(results, similarity, absolute=absolute)
    rnd = rnd[(rnd["step"] > 0) & (rnd["method"] == random_method)]["value"].dropna()
    if fl.empty:
        raise ValueError(f"the noise floor has no rows for {list(methods)}")
    if rnd.empty:
        raise ValueError(f"the results have no rows of the random anchor {random_method!r}")
    out = {"similar": float(np.quantile(fl, quantile)), "random": float(np.quantile(rnd, 1 - quantile))}
    if out["random"] >= out["similar"]:
        raise ValueError(f"thresholds overlap ({out}): the random anchor is as similar as the noise floor")
    return out


def sanity_verdicts(results: pd.DataFrame, *, similar: float, random: float, similarity: str = "spearman",
                    absolute: bool | None = None, confidence: float = 0.95, n_resamples: int = 9999,
                    seed: int = 0) -> pd.DataFrame:
    """Per scheme and method: does the map stay similar once the weights are randomised?

    The statistic, per scheme: ``"cascading"``: the similarity at the last step (every listed block
    re-initialised); ``"independent"``: the similarity at the step whose randomisation lowers the method's
    mean similarity most (the block the map depends on most). Its mean over the images gets a bootstrap
    interval (:func:`tsmlib.evaluation.stats.mean_ci`; values read by :func:`similarity_values`: ``|rho|``,
    a constant map as 0), and the rule is:

    * **stays similar**: the interval reaches ``similar`` (its upper end >= ``similar``): the change cannot
      be told apart from noise-level change, the check *fails* for this method;
    * **as different as a random map**: the interval reaches ``random`` (lower end <= ``random``);
    * **changes partly**: between the two; **undecided**: the interval reaches both.

    Parameters
    ----------
    results : DataFrame
        Rows of :func:`model_randomization` (one or both schemes concatenated).
    similar, random : float
        The thresholds of :func:`sanity_thresholds`.

    Returns
    -------
    DataFrame indexed by ``(scheme, method)``: ``step``, ``block`` (``layer_randomized``), ``mean``,
    ``ci_low``, ``ci_high``, ``verdict``.
    """
    from .stats import mean_ci

    if not random < similar:
        raise ValueError(f"need random < similar, got random={random}, similar={similar}")
    df = similarity_values(results, similarity, absolute=absolute)
    if "scheme" not in df:
        df = df.assign(scheme="cascading")
    rows = []
    for (scheme, method), d in df[df["step"] > 0].groupby(["scheme", "method"], sort=False):
        means = d.groupby("step")["value"].mean()
        step = int(means.index.max()) if scheme != "independent" else int(means.idxmin())
        at = d[d["step"] == step]
        vals = at["value"].to_numpy()
        lo, hi = mean_ci(vals, confidence=confidence, n_resamples=n_resamples, seed=seed)
        reaches_similar, reaches_random = hi >= similar, lo <= random
        verdict = ("undecided" if reaches_similar and reaches_random else "stays similar" if reaches_similar
                   else "as different as a random map" if reaches_random else "changes partly")
        rows.append({"scheme": scheme, "method": method, "step": step,
                     "block": at["layer_randomized"].iloc[0], "mean": float(vals.mean()) if vals.size else np.nan,
                     "ci_low": lo, "ci_high": hi, "verdict": verdict})
    if not rows:
        raise ValueError("no randomisation steps (step > 0) in the results")
    return pd.DataFrame(rows).set_index(["scheme", "method"])


def label_free_verdict(verdicts: pd.DataFrame, label_free: Sequence[str]) -> dict:
    """The verdict on "the label-free maps explain the model", from :func:`sanity_verdicts`.

    The rule: **not testable here** without label-free methods; **not supported** when one of them stays
    similar (or is undecided) under any scheme; **partly supported** when none does but some change only
    partly; **supported** when every one is as different as a random map under every scheme.

    Parameters
    ----------
    verdicts : DataFrame
        :func:`sanity_verdicts` output, indexed by ``(scheme, method)``.
    label_free : sequence of str
        The label-free methods the claim is about (each must be in ``verdicts`` under every scheme).

    Returns
    -------
    dict
        ``verdict``; ``failing`` (methods that stay similar or are undecided somewhere); ``partly``
        (method -> the schemes where it changes only partly); ``at_chance`` (method -> the schemes where
        it is as different as a random map); methods in the order given.

    >>> v = pd.DataFrame({"scheme": ["cascading"] * 2 + ["independent"] * 2, "method": ["a", "b"] * 2,
    ...                   "verdict": ["changes partly", "as different as a random map"] + ["as different as a random map"] * 2}
    ...                  ).set_index(["scheme", "method"])
    >>> r = label_free_verdict(v, ["a", "b"])
    >>> r["verdict"], r["partly"], r["failing"]
    ('partly supported', {'a': ['cascading']}, [])
    """
    schemes = list(dict.fromkeys(verdicts.index.get_level_values("scheme")))
    missing = [(s, m) for s in schemes for m in label_free if (s, m) not in verdicts.index]
    if missing:
        raise KeyError(f"no verdict for {missing}; the verdicts cover {sorted(set(verdicts.index))}")

    def where(method, wanted):
        return [s for s in schemes if verdicts.loc[(s, method), "verdict"] in wanted]

    failing = [m for m in label_free if where(m, ("stays similar", "undecided"))]
    partly = {m: where(m, ("changes partly",)) for m in label_free if where(m, ("changes partly",))}
    at_chance = {m: where(m, ("as different as a random map",)) for m in label_free
                 if where(m, ("as different as a random map",))}
    verdict = ("not testable here" if not label_free else "not supported" if failing
               else "partly supported" if partly else "supported")
    return {"verdict": verdict, "failing": failing, "partly": partly, "at_chance": at_chance}


def sanity_summary(results: pd.DataFrame, *, similarity: str = "spearman", threshold: float = 0.9,
                   absolute: bool = True) -> pd.DataFrame:
    """Per method: mean similarity to the trained maps once *every* module is re-initialised, and a flag.

    Parameters
    ----------
    results : DataFrame
        Output of :func:`cascading_randomization`.
    similarity : {"spearman", "ssim"}
    threshold : float
        A method is flagged ``weight_independent`` when its mean final similarity exceeds this value
        (default 0.9: the maps of a fully re-initialised network still rank pixels almost exactly like the
        trained one's). Maps of random networks keep some input structure (Adebayo et al.), so real CAMs
        can end anywhere between 0 and about 0.5: read ``final_similarity``, not only the flag.
    absolute : bool
        Use ``|rho|`` (an inverted map still "did not change" in structure). NaN values (constant maps)
        are left out of the mean.

    Returns
    -------
    DataFrame indexed by method: ``final_similarity``, ``min_similarity`` (over steps), ``weight_independent``.
    """
    df = results[results["similarity"] == similarity].copy()
    if df.empty:
        raise ValueError(f"no {similarity!r} rows in the results")
    if absolute:
        df["value"] = df["value"].abs()
    per_step = df.groupby(["method", "step"])["value"].mean().reset_index()
    last = per_step["step"].max()
    out = per_step.groupby("method").agg(
        final_similarity=("value", lambda v: v[per_step.loc[v.index, "step"] == last].mean()),
        min_similarity=("value", "min"),
    )
    out["weight_independent"] = out["final_similarity"] > threshold
    return out


# ------------------------------------------------------------------------- sMPRT and eMPRT (Quantus 0.6)
def smooth_model_randomization(model: nn.Module, x: torch.Tensor, methods, layer, *, n_samples: int = 50,
                               noise: float = 0.1, noise_seed: int = 0, method_options=None,
                               **kwargs) -> pd.DataFrame:
    """Smooth MPRT (sMPRT; Hedström et al. 2024, "Sanity Checks Revisited", Quantus's ``SmoothMPRT``):
    :func:`model_randomization` on maps averaged over noisy copies of the images.

    Plain MPRT over-reports a method's sensitivity to the weights when its maps are noisy (shattered
    gradients): two noisy maps correlate little even when the model did not change. sMPRT denoises first:
    each method's map is the mean of its maps on ``n_samples`` copies ``x + eps``, with
    ``eps ~ N(0, (noise * (max x - min x))^2)`` per image (its range), the last copy noise-free, as in
    Quantus. The noise is drawn once (seed ``noise_seed``) and reused at every step, so the trained and
    the randomised models see the same copies (Quantus draws afresh for every model).

    Parameters
    ----------
    model, x, methods, layer
        As in :func:`model_randomization`.
    n_samples : int
        Noisy copies per image (Quantus's ``nr_samples``; 50 by default there too).
    noise : float
        Noise level relative to each image's value range (Quantus's ``noise_magnitude``, 0.1).
    noise_seed : int
        Seed of the noise.
    method_options
        Options per registry method.
    **kwargs
        Everything else of :func:`model_randomization` (``scheme``, ``blocks``, ``similarities``, ``seed``,
        ``targets``, ...).

    Returns
    -------
    pandas.DataFrame
        :func:`model_randomization`'s rows, computed on the averaged maps. The Spearman values equal
        Quantus's (it compares ``|a| / max|a|`` of the averaged maps, the same ranks for these
        non-negative maps).
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {tuple(getattr(x, 'shape', ()))}")
    fns = resolve_methods(methods, method_options)
    eps = smooth_noise(x, n_samples, noise, noise_seed)

    def smoothed(name, fn):
        def run(net, xs, layer_, targets):
            if xs.shape != x.shape:
                raise ValueError("smooth_model_randomization's maps are for the images it was given")
            total = None
            for e in eps:
                m = method_maps(net, xs + e.to(device=xs.device, dtype=xs.dtype), {name: fn}, layer_, targets,
                                layer_gradients=True)[name].double()
                total = m if total is None else total + m
            return total / len(eps)

        run.__name__ = name
        return run

    return model_randomization(model, x, {name: smoothed(name, fn) for name, fn in fns.items()}, layer, **kwargs)


def smooth_noise(x: torch.Tensor, n_samples: int, noise: float, seed: int = 0) -> torch.Tensor:
    """The noise of :func:`smooth_model_randomization`: ``(n_samples, B, C, H, W)`` float64 draws of
    ``N(0, (noise * (max x_b - min x_b))^2)`` per image ``b`` (on the CPU, seed ``seed``); the last one is 0."""
    span = (x.flatten(1).max(1).values - x.flatten(1).min(1).values).double().cpu().view(1, -1, 1, 1, 1)
    eps = torch.randn((int(n_samples), *x.shape), generator=torch.Generator().manual_seed(int(seed)),
                      dtype=torch.float64) * (noise * span)
    eps[-1] = 0
    return eps


def discrete_entropy(maps: torch.Tensor, n_bins: int = 100) -> torch.Tensor:
    """Per-map Shannon entropy (nats) of the histogram of its values (Quantus's ``discrete_entropy``).

    ``n_bins`` equal bins over each map's ``[min, max]``, the last one closed (:func:`numpy.histogram`'s
    rule), then ``-sum p log p`` of the bin shares (:func:`scipy.stats.entropy`). A constant map has
    entropy 0.

    Parameters
    ----------
    maps : torch.Tensor, shape (B, H, W) (or (B, N))
    n_bins : int

    Returns
    -------
    torch.Tensor, shape (B,), float64
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    v = maps.flatten(1).double()
    B, N = v.shape
    lo, hi = v.min(1, keepdim=True).values, v.max(1, keepdim=True).values
    steps = torch.arange(n_bins + 1, dtype=torch.float64, device=v.device) / n_bins
    edges = lo + (hi - lo) * steps  # (B, n_bins + 1)
    edges[:, -1:] = hi
    idx = (torch.searchsorted(edges.contiguous(), v.contiguous(), right=True) - 1).clamp(0, n_bins - 1)
    idx = torch.where(hi > lo, idx, torch.zeros_like(idx))
    counts = torch.zeros(B, n_bins, dtype=torch.float64, device=v.device).scatter_add_(1, idx, torch.ones_like(v))
    p = counts / N
    return -(torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), torch.zeros_like(p))).sum(1)


def efficient_model_randomization(model: nn.Module, x: torch.Tensor, methods, layer, *, n_bins: int = 100,
                                  blocks: Sequence | None = None, seed: int = 0,
                                  targets: torch.Tensor | None = None, method_options=None,
                                  image_ids: Sequence | None = None) -> pd.DataFrame:
    """Efficient MPRT (eMPRT; Hedström et al. 2024, "Sanity Checks Revisited", Quantus's ``EfficientMPRT``):
    the relative rise in a map's complexity from the trained to the fully randomised model.

    Instead of comparing maps step by step (MPRT), eMPRT compares two states only: the trained model and
    the model with every block of ``blocks`` re-initialised (the last step of the cascading scheme of
    :func:`randomised_models`). Complexity is the :func:`discrete_entropy` of the map's values; a map that
    depends on what the model learnt should become more complex (noisier) when the weights are random:
    ``emprt = (H_random - H_trained) / H_trained``, higher is better.

    Parameters
    ----------
    model, x, methods, layer, targets, method_options, image_ids
        As in :func:`model_randomization`.
    n_bins : int
        Histogram bins of the entropy (Quantus's default, 100, when no binning rule is chosen).
    blocks : sequence of str or of tuples of str, optional
        What is re-initialised (all of it, cumulatively); default every parameterised module.
    seed : int
        Seed of the re-initialisation (:func:`randomise_block_`).

    Returns
    -------
    pandas.DataFrame
        One row per image and method: ``image``, ``method``, ``complexity_trained``, ``complexity_random``
        and ``emprt``; NaN where the trained model's map is constant (entropy 0).
    """
    model, fns, layer, targets, _, ids = _prepare(model, x, methods, layer, targets, ["spearman"],
                                                  method_options, image_ids)
    order = list(blocks) if blocks is not None else parameterised_modules_in_call_order(model, x)[::-1]
    if not order:
        raise ValueError("eMPRT needs at least one block to randomise")
    trained = random = None
    for step, _, net in randomised_models(model, order, scheme="cascading", seed=seed):
        if step == 0:
            trained = {n: discrete_entropy(m, n_bins) for n, m in
                       method_maps(net, x, fns, layer, targets, layer_gradients=True).items()}
        elif step == len(order):
            random = {n: discrete_entropy(m, n_bins) for n, m in
                      method_maps(net, x, fns, layer, targets, layer_gradients=True).items()}
    rows = []
    for name in fns:
        h0, h1 = trained[name].cpu(), random[name].cpu()
        rise = torch.where(h0 > 0, (h1 - h0) / h0.clamp(min=1e-300), torch.full_like(h0, float("nan")))
        rows.extend({"image": i, "method": name, "complexity_trained": float(a), "complexity_random": float(b),
                     "emprt": float(r)} for i, a, b, r in zip(ids, h0.tolist(), h1.tolist(), rise.tolist()))
    return pd.DataFrame(rows, columns=["image", "method", "complexity_trained", "complexity_random", "emprt"])
