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
trained weights leaves; the book turns both into its verdicts (``tsmbook.verdicts``: a method *stays
similar* when its similarity after randomisation cannot be told apart from that noise level).
:func:`tsmlib.models.randomise.randomisation_blocks` and ``group_blocks`` give the steps.

The target of label-dependent methods stays the class predicted by the *original* model, as in the paper.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import progress as _progress
from ..methods import minmax_normalize
from ..cam import resolve_methods, saliency_maps
from ..hooks import layer_name
from ..models.randomise import SCHEMES, parameterised_modules_in_call_order, perturbed_model, randomised_models


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

    ``skimage.filters.sobel`` of ``skimage.color.rgb2gray``, min-max normalised per image (scikit-image
    comes with the ``sanity`` extra: ``pip install 'tsmlib[sanity]'``). It has the
    registry's signature but never looks at ``model``, ``layer`` or ``targets``, so its similarity to
    itself is exactly 1 under any randomisation: a check that does not flag it is broken.

    Parameters
    ----------
    x : torch.Tensor, shape (B, 3, H, W), values in [0, 1]

    Returns
    -------
    torch.Tensor, shape (B, H, W), in [0, 1], dtype and device of ``x``
    """
    try:
        from skimage.color import rgb2gray
        from skimage.filters import sobel
    except ImportError as err:
        raise ImportError("the edge-map anchor needs scikit-image: pip install 'tsmlib[sanity]'") from err

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


def _check_similarities(similarities) -> list[str]:
    similarities = list(similarities)
    for s in similarities:
        if s not in SIMILARITIES:
            raise ValueError(f"unknown similarity {s!r}; choose from {sorted(SIMILARITIES)}")
    return similarities


def _compare_steps(model, x, fns, options, layer, targets, steps, similarities, ids, scheme, progress, total=None):
    """The shared loop: maps of the first net of ``steps`` are the reference; each later net's maps are
    compared with them. ``steps`` yields ``(step, label, net)``. Tidy rows as a DataFrame."""
    rows = []
    reference = None
    bar = _progress(steps, enabled=progress, desc=f"{scheme} randomisation", total=total)
    for step, label, net in bar:
        maps = {name: r.maps for name, r in saliency_maps(net, x, fns, layer, targets, options=options,
                                                           layer_gradients=True).items()}
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
    layer = layer_name(model, layer)  # a name: it finds the layer again in each randomised copy
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
    return model, fns, dict(method_options or {}), layer, targets, similarities, ids


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
        As for :func:`tsmlib.evaluation.evaluate`; each step's maps come from one
        :func:`tsmlib.cam.saliency_maps` call (the activation methods share one forward pass).
    layer : str or nn.Module
        Target layer (a dotted name is resolved in each copy; a module is mapped to its name by
        :func:`tsmlib.hooks.layer_name`).
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
    model, fns, options, layer, targets, similarities, ids = _prepare(model, x, methods, layer, targets,
                                                                      similarities, method_options, image_ids)
    order = list(blocks) if blocks is not None else parameterised_modules_in_call_order(model, x)[::-1]
    if max_steps is not None:
        order = order[:max_steps]
    steps = ((k, "+".join(group) if group else "(none)", net)
             for k, group, net in randomised_models(model, order, scheme=scheme, seed=seed))
    return _compare_steps(model, x, fns, options, layer, targets, steps, similarities, ids, scheme, progress,
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
    model, fns, options, layer, targets, similarities, ids = _prepare(model, x, methods, layer, targets,
                                                                      similarities, method_options, image_ids)
    steps = iter([(0, "(none)", model), (1, "(perturbed)", perturbed_model(model, scale, seed))])
    return _compare_steps(model, x, fns, options, layer, targets, steps, similarities, ids, "perturbation", False)


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
    options = dict(method_options or {})
    eps = smooth_noise(x, n_samples, noise, noise_seed)

    def smoothed(name, fn):
        def run(net, xs, layer_, targets):
            if xs.shape != x.shape:
                raise ValueError("smooth_model_randomization's maps are for the images it was given")
            total = None
            for e in eps:
                m = saliency_maps(net, xs + e.to(device=xs.device, dtype=xs.dtype), {name: fn}, layer_, targets,
                                  options={name: options[name]} if name in options else None,
                                  layer_gradients=True)[name].maps.double()
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
    model, fns, options, layer, targets, _, ids = _prepare(model, x, methods, layer, targets, ["spearman"],
                                                           method_options, image_ids)
    order = list(blocks) if blocks is not None else parameterised_modules_in_call_order(model, x)[::-1]
    if not order:
        raise ValueError("eMPRT needs at least one block to randomise")
    trained = random = None
    for step, _, net in randomised_models(model, order, scheme="cascading", seed=seed):
        if step == 0:
            trained = {n: discrete_entropy(r.maps, n_bins) for n, r in
                       saliency_maps(net, x, fns, layer, targets, options=options, layer_gradients=True).items()}
        elif step == len(order):
            random = {n: discrete_entropy(r.maps, n_bins) for n, r in
                      saliency_maps(net, x, fns, layer, targets, options=options, layer_gradients=True).items()}
    rows = []
    for name in fns:
        h0, h1 = trained[name].cpu(), random[name].cpu()
        rise = torch.where(h0 > 0, (h1 - h0) / h0.clamp(min=1e-300), torch.full_like(h0, float("nan")))
        rows.extend({"image": i, "method": name, "complexity_trained": float(a), "complexity_random": float(b),
                     "emprt": float(r)} for i, a, b, r in zip(ids, h0.tolist(), h1.tolist(), rise.tolist()))
    return pd.DataFrame(rows, columns=["image", "method", "complexity_trained", "complexity_random", "emprt"])
