"""ROAD, "RemOve And Debias" (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods"): perturbation curves whose removed pixels are filled by *noisy linear imputation*, so
that the model cannot read the shape of the removed region from the fill (the class information a black
or blurred patch leaks).

At each percentile ``p`` of :data:`PERCENTILES` the pixels are split by the map's ``p``-th percentile ``t``
(linear interpolation, :func:`numpy.percentile`'s rule):

* **MoRF** (most relevant first): the pixels with ``S >= t`` are removed, those with ``S < t`` kept;
* **LeRF** (least relevant first): the same with ``1 - S``: the pixels with ``1 - S >= t'`` are removed.

So ``p`` is the share of pixels *kept* (pytorch-grad-cam's convention, whose ``ROADMostRelevantFirst``,
``ROADLeastRelevantFirst`` and ``ROADCombined`` this module reproduces; ``tests/test_eval_road.py`` checks it).
Pixels tied with the threshold are removed: on a map with plateaus (a binary map) a percentile can remove
more than ``100 - p`` % of the pixels, as in pytorch-grad-cam.

The removed pixels of each channel are the solution of the sparse linear system in which every removed
pixel equals the weighted mean of its 8 neighbours inside the image (weight 1/6 for the 4 direct
neighbours, 1/12 for the diagonal ones; known neighbours enter as constants), plus Gaussian noise of
standard deviation ``noise`` (0.01 in pytorch-grad-cam and the paper). The system is symmetric positive
definite on each region of removed pixels that touches a kept one. On the CPU it is solved image by image by a
sparse LU factorisation (``scipy.sparse.linalg.splu``, one per image for all its channels; pytorch-grad-cam
calls ``spsolve`` per channel); on a GPU for the whole batch at once by Jacobi-preconditioned conjugate
gradients built from 3x3 convolutions, which keep the images on the device. A region of removed
pixels with no kept pixel around it (every pixel removed: a constant map) has nothing to interpolate from;
the minimum-norm solution, 0, is used there (``spsolve`` reports a singular matrix).

The per-image curve value is the score change ``score(imputed) - score(x)``; the **MoRF** and **LeRF**
scores are the means over the percentiles (MoRF: lower is better, the model loses more when the relevant
pixels go; LeRF: higher is better) and the combined **ROAD** score is ``(LeRF - MoRF) / 2`` (higher is
better), pytorch-grad-cam's ``ROADCombined``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["PERCENTILES", "NEIGHBOUR_WEIGHTS", "road_masks", "noisy_linear_imputation", "road"]

#: pytorch-grad-cam's default percentiles (share of the pixels kept, in %).
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)

#: The weights of the 8 neighbours in the imputation (Rong et al.'s ``neighbors_weights``).
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12),
                     (1 / 6, 0.0, 1 / 6),
                     (1 / 12, 1 / 6, 1 / 12))


def road_masks(saliency: torch.Tensor, percentiles: Sequence[float] = PERCENTILES) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels ROAD removes at each percentile, most and least relevant first.

    Parameters
    ----------
    saliency : torch.Tensor, shape (B, H, W)
        Finite maps (the book's are in [0, 1]; LeRF ranks ``1 - S``).
    percentiles : sequence of float, length P
        Shares of the pixels kept, in (0, 100].

    Returns
    -------
    (morf, lerf) : tuple of torch.Tensor, shape (B, P, H, W), bool
        True where a pixel is removed: ``S >= percentile(S, p)`` for MoRF, ``1 - S >= percentile(1 - S, p)``
        for LeRF.
    """
    p = torch.as_tensor(percentiles, dtype=torch.float64).reshape(-1)
    if p.numel() == 0 or bool(((p <= 0) | (p > 100)).any()):
        raise ValueError(f"percentiles must be in (0, 100], got {p.tolist()}")
    out = []
    for s in (saliency, 1 - saliency):
        flat = s.flatten(1)
        q = (p / 100).to(flat.device)
        # one image at a time: torch.quantile refuses inputs of more than 2**24 values
        thr = torch.stack([torch.quantile(row.double(), q) for row in flat]).to(s.dtype) if len(flat) else \
            flat.new_zeros(0, len(q))  # (B, P)
        out.append(s[:, None] >= thr[:, :, None, None])
    return out[0], out[1]


def _neighbour_kernel(dtype, device) -> torch.Tensor:
    return torch.tensor(NEIGHBOUR_WEIGHTS, dtype=dtype, device=device)[None, None]


def noisy_linear_imputation(x: torch.Tensor, removed: torch.Tensor, *, noise: float = 0.01,
                            noise_values: torch.Tensor | None = None, generator: torch.Generator | None = None,
                            solver: str = "auto", rtol: float = 1e-10, max_iter: int | None = None) -> torch.Tensor:
    """Fill the removed pixels of a batch of images by noisy linear imputation (Rong et al. 2022).

    Parameters
    ----------
    x : torch.Tensor, shape (N, C, H, W)
    removed : torch.Tensor, shape (N, H, W), bool
        The pixels to fill.
    noise : float
        Standard deviation of the Gaussian noise added to the filled pixels (0 for the plain linear fill).
    noise_values : torch.Tensor, shape (N, C, H, W), optional
        Standard normal draws to use (scaled by ``noise``) instead of drawing them with ``generator``.
    solver : {"auto", "direct", "cg"}
        ``"direct"``: a sparse LU factorisation per image (:func:`scipy.sparse.linalg.splu`, every channel
        from one factorisation), on the CPU; ``"cg"``: the batched conjugate-gradient solve on the images'
        device; ``"auto"``: direct for CPU tensors, CG otherwise. Both solve the same system in float64 (a
        224 x 224 image with 90 % of its pixels removed: about 0.3 s direct, about 8 s by CG on one CPU core).
    rtol, max_iter
        CG only: the solve stops when every system's residual is below ``rtol`` times its right-hand side,
        or after ``max_iter`` steps (default ``10 * (H + W) + 100``).

    Returns
    -------
    torch.Tensor, shape (N, C, H, W), dtype of ``x``
        ``x`` on the kept pixels; the linear fill plus noise on the removed ones.
    """
    if x.ndim != 4 or removed.shape != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"images (N, C, H, W) and masks (N, H, W) must match, got {tuple(x.shape)} and "
                         f"{tuple(removed.shape)}")
    if solver not in ("auto", "direct", "cg"):
        raise ValueError(f"solver must be 'auto', 'direct' or 'cg', got {solver!r}")
    N, C, H, W = x.shape
    if N == 0:
        return x.clone()
    if solver == "direct" or (solver == "auto" and x.device.type == "cpu"):
        filled = torch.stack([torch.from_numpy(_direct_fill(img.detach().cpu().double().numpy(), rem.cpu().numpy()))
                              for img, rem in zip(x, removed)]).to(x.device)
    else:
        filled = _cg_fill(x, removed, rtol=rtol, max_iter=max_iter)
    if noise:
        m = removed.to(device=x.device, dtype=torch.float64)[:, None]
        if noise_values is None:
            noise_values = torch.randn(x.shape, generator=generator, dtype=torch.float32,
                                       device=generator.device if generator is not None else "cpu")
        filled = filled + m * noise * noise_values.to(device=x.device, dtype=torch.float64)
    return filled.to(x.dtype)


def _direct_fill(img, removed):
    """The linear fill of one image by a sparse LU solve: ``img`` (C, H, W) float64 and ``removed`` (H, W) bool
    NumPy arrays -> (C, H, W) float64. Each removed pixel ``i`` satisfies ``d_i u_i - sum_j w_ij u_j = sum_k w_ik
    x_k`` over its in-image neighbours (``j`` removed, ``k`` kept; ``d_i`` the sum of its in-image weights).
    A group of removed pixels that touches no kept one has nothing to interpolate from (its rows sum to 0:
    singular) and is left at 0, the minimum-norm solution the CG path reaches too."""
    import numpy as np
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    C, H, W = img.shape
    weights = np.asarray(NEIGHBOUR_WEIGHTS)
    out = np.where(removed[None], 0.0, img)
    kept = ~removed
    groups, _ = ndimage.label(removed, structure=np.ones((3, 3)))  # the stencil's 8-neighbourhood
    anchored = np.unique(groups[removed & ndimage.binary_dilation(kept, structure=np.ones((3, 3)))])
    solve = np.isin(groups, anchored[anchored > 0])
    n = int(solve.sum())
    if n == 0:
        return out
    index = np.full((H, W), -1)
    index[solve] = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, C))
    yy, xx = np.nonzero(solve)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            w = weights[dy + 1, dx + 1]
            if w == 0:
                continue
            ny, nx = yy + dy, xx + dx
            inside = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
            i, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
            diag[i] += w
            unknown = solve[ny, nx]
            rows.append(i[unknown])
            cols.append(index[ny[unknown], nx[unknown]])
            vals.append(np.full(int(unknown.sum()), -w))
            known = ~unknown  # kept pixels (a removed neighbour outside ``solve`` would be unanchored: impossible)
            np.add.at(rhs, i[known], w * img[:, ny[known], nx[known]].T)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    out[:, solve] = splu(A).solve(rhs).T
    return out


def _cg_fill(x, removed, *, rtol, max_iter):
    """The linear fill of a batch by Jacobi-preconditioned conjugate gradients on 3x3 convolutions, on the
    images' device: (N, C, H, W) -> (N, C, H, W) float64."""
    N, C, H, W = x.shape
    m = removed.to(device=x.device, dtype=torch.float64)[:, None].expand(N, C, H, W).reshape(N * C, 1, H, W)
    v = x.double().reshape(N * C, 1, H, W)
    k = _neighbour_kernel(torch.float64, x.device)
    conv = lambda t: F.conv2d(t, k, padding=1)  # noqa: E731  (zero padding: outside neighbours drop out)
    d = conv(torch.ones(1, 1, H, W, dtype=torch.float64, device=x.device))  # in-image neighbour weight
    b = m * conv((1 - m) * v)

    def A(u):
        return m * (d * u - conv(m * u))

    def dot(a, c):
        return (a * c).sum((-1, -2, -3), keepdim=True)

    u = torch.zeros_like(v)
    r = b.clone()
    z = r / d
    p = z.clone()
    rz = dot(r, z)
    stop = rtol * torch.sqrt(dot(b, b))
    for _ in range(max_iter if max_iter is not None else 10 * (H + W) + 100):
        if bool((torch.sqrt(dot(r, r)) <= stop).all()):
            break
        Ap = A(p)
        pAp = dot(p, Ap)
        alpha = torch.where(pAp > 0, rz / pAp.clamp(min=1e-300), torch.zeros_like(pAp))
        u = u + alpha * p
        r = r - alpha * Ap
        z = r / d
        rz_new = dot(r, z)
        beta = torch.where(rz > 0, rz_new / rz.clamp(min=1e-300), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return ((1 - m) * v + m * u).reshape(N, C, H, W)


def road(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, saliency: torch.Tensor, *,
         percentiles: Sequence[float] = PERCENTILES, noise: float = 0.01, seed: int = 0, chunk_size: int = 64,
         return_curves: bool = False, solver: str = "auto", rtol: float = 1e-10, max_iter: int | None = None) -> dict:
    """ROAD scores (Rong et al. 2022), batched over images, percentiles and both orders.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(images (n, 3, H, W), index (n,)) -> (n,)``, as in
        :func:`~tsmlib.evaluation.metrics.deletion_insertion_auc`: the score of each image for the target of
        image ``index[j]`` of the batch. Called under ``torch.no_grad()`` on chunks of up to ``chunk_size``
        imputed images (and once on ``x``).
    x : torch.Tensor, shape (B, 3, H, W)
    saliency : torch.Tensor, shape (B, H, W)
        Maps at the input resolution.
    percentiles : sequence of float, length P
        Shares of the pixels kept (see :func:`road_masks`); default 10, 20, ..., 90.
    noise : float
        Standard deviation of the imputation noise (in the units of ``x``; 0.01 as in the paper).
    seed : int
        Seed of the noise, drawn on the CPU in one piece for the batch (shape (B, 2, P, 3, H, W)), so the
        values do not depend on the device or on ``chunk_size``; every method evaluated on a batch gets
        the same draws.
    chunk_size : int
        Imputed images per solve and per call of ``score_fn`` (speed and memory only).
    return_curves : bool
        Also return the per-percentile score changes.
    solver, rtol, max_iter
        See :func:`noisy_linear_imputation`.

    Returns
    -------
    dict
        ``"morf"``, ``"lerf"`` (B,): the mean score change over the percentiles; ``"road"`` (B,):
        ``(lerf - morf) / 2`` (higher is better); with ``return_curves`` also ``"morf_curve"`` and
        ``"lerf_curve"``, shape (B, P): ``score(imputed) - score(x)`` at each percentile.
    """
    from .metrics import _call_score, _check_images_and_maps

    saliency = _check_images_and_maps(x, saliency)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    B, C, H, W = x.shape
    if B == 0:
        empty = torch.zeros(0, dtype=torch.float64, device=x.device)
        curves = {"morf_curve": empty.view(0, 1).expand(0, len(percentiles)),
                  "lerf_curve": empty.view(0, 1).expand(0, len(percentiles))} if return_curves else {}
        return {"morf": empty, "lerf": empty, "road": empty, **curves}
    morf, lerf = road_masks(saliency.to(x.device), percentiles)  # (B, P, H, W) each
    P = morf.shape[1]
    removed = torch.stack([morf, lerf], 1).reshape(B * 2 * P, H, W)
    owner = torch.arange(B, device=x.device).repeat_interleave(2 * P)
    draws = None
    if noise:
        draws = torch.randn((B * 2 * P, C, H, W), generator=torch.Generator().manual_seed(int(seed)))
    Y = _call_score(score_fn, x, torch.arange(B, device=x.device)).to(torch.float64)
    scores = torch.empty(B * 2 * P, dtype=torch.float64, device=x.device)
    for start in range(0, B * 2 * P, chunk_size):
        sl = slice(start, min(start + chunk_size, B * 2 * P))
        imgs = noisy_linear_imputation(x[owner[sl]], removed[sl], noise=noise,
                                       noise_values=None if draws is None else draws[sl], solver=solver,
                                       rtol=rtol, max_iter=max_iter)
        scores[sl] = _call_score(score_fn, imgs, owner[sl]).detach().to(torch.float64)
    change = (scores.reshape(B, 2, P) - Y[:, None, None])
    out = {"morf": change[:, 0].mean(-1), "lerf": change[:, 1].mean(-1)}
    out["road"] = (out["lerf"] - out["morf"]) / 2
    if return_curves:
        out["morf_curve"], out["lerf_curve"] = change[:, 0], change[:, 1]
    return out
