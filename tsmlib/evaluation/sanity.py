"""Cascading model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

The parameterised modules of a deep copy of the model are re-initialised one after the other, from the
output towards the input, and each method's maps are recomputed after every step and compared with the
maps of the trained model by Spearman rank correlation and SSIM (both written in torch, batched). A
method whose maps stay the same while the weights are destroyed does not explain the model: it is
*flagged* by :func:`sanity_summary`.

The target of label-dependent methods stays the class predicted by the *original* model, as in the paper.
"""

from __future__ import annotations

import copy
from typing import Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import progress as _progress
from ._methods import check_map_batch, resolve_methods


# ------------------------------------------------------------------------------------ similarities
def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``1..N`` along the last dimension, ties given their average rank (as ``scipy.stats.rankdata``).

    Parameters
    ----------
    values : torch.Tensor, shape (B, N)

    Returns
    -------
    torch.Tensor, shape (B, N), float64
    """
    v = values.double()
    sorted_v, order = torch.sort(v, dim=-1)
    first = torch.searchsorted(sorted_v, sorted_v, right=False)
    last = torch.searchsorted(sorted_v, sorted_v, right=True) - 1
    avg_sorted = (first + last).double() / 2 + 1
    ranks = torch.empty_like(avg_sorted)
    ranks.scatter_(-1, order, avg_sorted)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two batches of maps.

    Parameters
    ----------
    a, b : torch.Tensor, shape (B, H, W) (or (B, N))

    Returns
    -------
    torch.Tensor, shape (B,), float64
        In [-1, 1]; NaN where a map is constant (its ranks have no variance).
    """
    if a.shape != b.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra = average_ranks(a.flatten(1))
    rb = average_ranks(b.to(a.device).flatten(1))
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    den = ra.norm(dim=-1) * rb.norm(dim=-1)
    num = (ra * rb).sum(-1)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(num, float("nan")))


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    t = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, sigma: float = 1.5,
         window_size: int = 11) -> torch.Tensor:
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
    torch.Tensor, shape (B,), float64, in [-1, 1]
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs two (B, H, W) batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.double()[:, None]
    y = b.to(a.device).double()[:, None]
    size = min(window_size, a.shape[-1], a.shape[-2])
    if size % 2 == 0:
        size -= 1
    g = _gaussian_window(size, sigma, x.dtype, x.device)
    kh, kw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def filt(z):
        return F.conv2d(F.conv2d(z, kh), kw)

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(-1)


SIMILARITIES = {"spearman": spearman, "ssim": ssim}


# ----------------------------------------------------------------------------------- randomisation
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


def cascading_randomization(model: nn.Module, x: torch.Tensor, methods, layer, *, targets: torch.Tensor | None = None,
                            similarities: Sequence[str] = ("spearman", "ssim"), seed: int = 0,
                            max_steps: int | None = None, blocks: Sequence[str] | None = None,
                            method_options=None, image_ids: Sequence | None = None,
                            progress: bool = False) -> pd.DataFrame:
    """Cascading randomisation: similarity of each method's maps to the trained model's, step by step.

    Parameters
    ----------
    model : nn.Module
        The trained model (not modified: a deep copy is randomised).
    x : torch.Tensor, shape (B, 3, S, S)
        A few images in [0, 1].
    methods : list of str or callable, or dict name -> callable
        As for :func:`tsmlib.evaluation.evaluate`.
    layer : str or nn.Module
        Target layer (a dotted name is resolved in each copy; a module is mapped to its name).
    targets : LongTensor (B,), optional
        Classes for label-dependent methods; default: the original model's predictions, kept fixed.
    similarities : sequence of {"spearman", "ssim"}
    seed : int
        Seed of the re-initialisations (deterministic).
    max_steps : int, optional
        Stop after this many steps (default: all).
    blocks : sequence of str, optional
        Dotted module names, output side first (e.g. ``["fc", "layer4", "layer3"]``): step ``k``
        re-initialises every parameterised module inside ``blocks[k-1]``. Default: one step per
        parameterised module, in reverse call order (fine-grained, slow on deep networks).

    Returns
    -------
    pandas.DataFrame
        Tidy rows ``step, layer_randomized, image, method, similarity, value``; step 0 is the trained model
        (similarity 1 by construction), step ``k`` has the ``k`` modules nearest the output re-initialised.
    """
    fns = resolve_methods(methods, method_options)
    for s in similarities:
        if s not in SIMILARITIES:
            raise ValueError(f"unknown similarity {s!r}; choose from {sorted(SIMILARITIES)}")
    if isinstance(layer, nn.Module):
        lookup = {m: n for n, m in model.named_modules()}
        if layer not in lookup:
            raise ValueError("layer is not a submodule of model")
        layer = lookup[layer]
    model = model.eval()
    if targets is None:
        with torch.no_grad():
            out = model(x)
        targets = out.argmax(-1) if out.ndim == 2 else None
    ids = list(image_ids) if image_ids is not None else list(range(x.shape[0]))

    def maps_of(net):
        return {name: check_map_batch(fn(net, x, layer, targets), x, name).double() for name, fn in fns.items()}

    reference = maps_of(model)
    if blocks is None:
        order = parameterised_modules_in_call_order(model, x)[::-1]  # output side first
    else:
        order = list(blocks)
        from tsmlib.cam import resolve_layer

        for name in order:
            resolve_layer(model, name)  # ValueError naming close matches if it does not exist
    if max_steps is not None:
        order = order[:max_steps]
    rows = []

    def record(step, name_randomized, current):
        for mname, m in current.items():
            for sname in similarities:
                vals = SIMILARITIES[sname](reference[mname], m).cpu().tolist()
                rows.extend(
                    {"step": step, "layer_randomized": name_randomized, "image": i, "method": mname,
                     "similarity": sname, "value": v}
                    for i, v in zip(ids, vals)
                )

    record(0, "(none)", reference)
    randomized = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    steps = _progress(order, enabled=progress, desc="cascading randomisation")
    for k, name in enumerate(steps, start=1):
        for module in randomized.get_submodule(name).modules():
            if any(True for _ in module.parameters(recurse=False)):
                reinitialise_(module, gen)
        record(k, name, maps_of(randomized))
    return pd.DataFrame(rows)


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
