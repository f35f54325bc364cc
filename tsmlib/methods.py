"""The four label-free saliency methods: EigenCAM, TSM, Multivec-EigenCAM and MTSM.

All of them read one batch of activations ``A`` (B, C, H, W) and return maps (B, H, W) on the same
device. Each method is two steps, kept separate so that notebooks can look inside:

1. *components*: signed component maps ``P`` (B, K, H, W) and their weights ``sigma`` (B, K), from the
   SVD of the centred matricised features (EigenCAM family, :func:`eigencam_components`) or from the
   Tucker decomposition of the feature tensor (TSM family, :func:`tsm_components`);
2. *combination*: the single-vector methods keep component 1; the multivector methods combine all of
   them (:func:`combine_components`).

The reading of the paper implemented here, and every default, is stated on the book's "Method
specification" page (``book/specification.md``) and in its theory chapter.

The maps and weights are explanations, not differentiable outputs: they are returned detached from any
autograd graph, also when ``A`` requires grad.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from ._validation import NanPolicy, check_activations, check_choice, check_int, check_tol, resolve_ranks
from .decomposition import Precision, Solver, numerical_rank_tolerance, truncated_svd, tucker

SignRule = Literal["activation", "max", "none"]
Transform = Literal["abs", "relu", "none"]
Weighting = Literal["sigma", "sigma2", "uniform"]

__all__ = [
    "Components",
    "minmax_normalize",
    "upsample",
    "eigencam_components",
    "tsm_components",
    "combine_components",
    "eigencam",
    "tsm",
    "multivec_eigencam",
    "mtsm",
]


@dataclass
class Components:
    """Signed component maps and their weights.

    Attributes
    ----------
    maps : (B, K, H, W)
        Component ``k`` of image ``b``: the projection of the feature maps on the k-th channel direction,
        oriented by the sign rule. Components beyond the numerical rank are all-zero.
    weights : (B, K)
        Their singular values ``sigma_k`` (descending; 0 beyond the numerical rank).
    """

    maps: torch.Tensor
    weights: torch.Tensor


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map to [0, 1] over its last two (spatial) dimensions.

    maps : (..., H, W) -> (..., H, W)

    A constant map (range at or below rounding level of its values) becomes all zeros, a defined result
    rather than 0/0. NaN or Inf values raise ``ValueError``.
    """
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN/Inf values; cannot normalise")
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    scale = torch.maximum(hi.abs(), lo.abs())
    eps = torch.finfo(maps.dtype).eps if maps.is_floating_point() else 0.0
    varies = span > 16 * eps * scale
    return torch.where(varies, (maps - lo) / torch.where(varies, span, torch.ones_like(span)), 0.0)


def upsample(maps: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling (half-pixel centres, like OpenCV's ``resize``).  (B, h, w) -> (B, *size)."""
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (B, h, w), got {tuple(maps.shape)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(maps.shape[-2:]) == size:
        return maps
    return torch.nn.functional.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _orient(P: torch.Tensor, reference: torch.Tensor, rule: SignRule) -> torch.Tensor:
    """Fix the sign of each component map.  P: (B, K, N), reference: (B, N).

    ``"activation"``: the component correlates positively with ``reference`` (the centred channel-sum
    map: where the layer is more active overall); ties fall back to ``"max"``.
    ``"max"``: the entry of largest magnitude is positive.  ``"none"``: the solver's arbitrary sign
    (like pytorch-grad-cam's, but not always the same sign).
    """
    check_choice(rule, "sign", ("activation", "max", "none"))
    if rule == "none":
        return P
    idx = P.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(torch.gather(P, -1, idx))[..., 0]
    if rule == "activation":
        # in float64: products of float32 values above ~1e19 would overflow (inf - inf = NaN)
        corr = torch.sign(torch.einsum("bkn,bn->bk", P.double(), reference.double())).to(P.dtype)
        sign = torch.where(corr != 0, corr, sign)
    return P * torch.where(sign == 0, torch.ones_like(sign), sign)[..., None]


def _mask_below_rank(P: torch.Tensor, s: torch.Tensor, A: torch.Tensor) -> Components:
    keep = s > numerical_rank_tolerance(A)[:, None]
    return Components(maps=(P * keep[..., None]).detach(), weights=(s * keep).detach())


def eigencam_components(
    A: torch.Tensor,
    k: int | None = None,
    *,
    sign: SignRule = "activation",
    solver: Solver = "gram",
    precision: Precision = "double",
    nan_policy: NanPolicy = "raise",
) -> Components:
    """Principal components of the centred matricised feature maps (EigenCAM's SVD).

    ``M_b`` = ``A[b]`` reshaped to (H*W, C) with each channel's spatial mean removed; ``M = U S V^T``.
    Component k is ``M v_k = s_k u_k`` reshaped to (H, W).

    Parameters
    ----------
    A : (B, C, H, W)
    k : int, optional
        Number of components (default: all ``min(C, H*W)``; those beyond the numerical rank are zero).
    sign : {"activation", "max", "none"}
        Orientation of each component (see :func:`_orient`); ``"none"`` keeps the solver's arbitrary
        sign (like pytorch-grad-cam's, but not always the same sign: it is not their LAPACK call).

    Returns
    -------
    Components with maps (B, k, H, W) and weights (B, k).
    """
    A = check_activations(A, nan_policy=nan_policy)
    B, C, H, W = A.shape
    K = min(C, H * W) if k is None else _check_k(k, min(C, H * W))
    F = A.flatten(2)  # (B, C, HW)
    Mt = F - F.mean(dim=-1, keepdim=True)  # M^T: centred channels
    # no float32 Gram attempt: centred features often have sigma_1 ~ sigma_2 (noise-like layers), where
    # it would be wasted; the iteration still runs on the float64 Gram and hands those items to eigh
    if H * W > C:
        # Gram matrix on the channel side: the maps M v_k = s_k u_k by one projection in the input
        # dtype (as the maps are returned), not truncated_svd's float64 u_k = M v_k / s_k
        _, s, V = truncated_svd(Mt.mT, K, solver=solver, precision=precision, need="right", float32_gram=False)
        P = V.mT @ Mt
    else:
        U, s, _ = truncated_svd(Mt.mT, K, solver=solver, precision=precision, need="left", float32_gram=False)
        P = (U * s[:, None, :]).mT
    P = _orient(P, Mt.sum(dim=1), sign)
    out = _mask_below_rank(P, s, A)
    return Components(out.maps.reshape(B, K, H, W), out.weights)


def tsm_components(
    A: torch.Tensor,
    ranks: Sequence[int | None] | None = None,
    k: int | None = None,
    *,
    sign: SignRule = "activation",
    solver: Solver = "gram",
    precision: Precision = "double",
    n_iter_max: int = 100,
    tol: float = 1e-4,
    nan_policy: NanPolicy = "raise",
) -> Components:
    """Channel-mode components of the Tucker decomposition of each feature tensor.

    ``A[b] ~ G x1 U1 x2 U2 x3 U3`` (HOOI, ranks ``(R1, R2, R3)``). Component k is
    ``sum_c U1[c, k] A[b, c]``, the feature maps projected on the k-th channel factor; its weight is
    ``||G[k, :, :]||_F``.

    With untruncated spatial ranks (``R2 = H``, ``R3 = W``, the default) ``U1`` holds the left singular
    vectors of the *uncentred* mode-1 unfolding (C, H*W), so no HOOI sweep is needed: the components are
    ``s_k v_k`` from one SVD. Truncated spatial ranks run HOOI (:func:`tsmlib.tucker`).

    Returns
    -------
    Components with maps (B, k, H, W) and weights (B, k); ``k`` defaults to R1.
    """
    A = check_activations(A, nan_policy=nan_policy)
    B, C, H, W = A.shape
    R1, R2, R3 = resolve_ranks(ranks, C, H, W)
    K = R1 if k is None else _check_k(k, R1)
    # checked here too: the untruncated path below never calls tucker
    n_iter_max, tol = check_int(n_iter_max, "n_iter_max", minimum=0), check_tol(tol)
    F = A.flatten(2)  # mode-1 unfolding (B, C, HW)
    if (R2, R3) == (H, W) and C <= H * W:
        # Gram matrix on the channel side: U1^T F by one projection in the input dtype
        U, s, _ = truncated_svd(F, K, solver=solver, precision=precision, need="left")
        P = U.mT @ F
    elif (R2, R3) == (H, W):
        _, s, V = truncated_svd(F, K, solver=solver, precision=precision, need="right")
        P = (V * s[:, None, :]).mT  # U1^T F = S V^T
    else:
        result = tucker(A, (R1, R2, R3), n_iter_max=n_iter_max, tol=tol, solver=solver, precision=precision)
        U1 = result.factors[0][..., :K]
        P = torch.einsum("bck,bcn->bkn", U1, F)
        s = result.singular_values[:, :K]
    channel_sum = F.sum(dim=1)  # (B, HW): the total activation map
    P = _orient(P, channel_sum - channel_sum.mean(dim=-1, keepdim=True), sign)
    out = _mask_below_rank(P, s, A)
    return Components(out.maps.reshape(B, K, H, W), out.weights)


def _check_k(k: int, kmax: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int or None, got {k!r}")
    k = int(k)
    if not 1 <= k <= kmax:
        raise ValueError(f"k={k} is out of range: there are {kmax} components (1 <= k <= {kmax})")
    return k


def _transform(P: torch.Tensor, transform: Transform) -> torch.Tensor:
    if transform == "abs":
        return P.abs()
    if transform == "relu":
        return P.clamp_min(0)
    if transform == "none":
        return P
    raise ValueError(f"transform must be 'abs', 'relu' or 'none', got {transform!r}")


def combine_components(
    components: Components,
    k: int | None = None,
    *,
    weighting: Weighting = "sigma",
    transform: Transform = "abs",
    normalize_components: bool = True,
) -> torch.Tensor:
    """The multivector combination: a weighted mean of transformed component maps.

    ``map = sum_k w_k N(T(p_k)) / sum_k w_k`` over the first ``k`` components, with ``T`` the transform,
    ``N`` per-component min-max normalisation (if ``normalize_components``) and ``w_k`` = ``sigma_k``,
    ``sigma_k**2`` or 1 (components beyond the numerical rank always get weight 0).

    components : maps (B, K, H, W), weights (B, K)  ->  (B, H, W)
    """
    check_choice(weighting, "weighting", ("sigma", "sigma2", "uniform"))
    check_choice(transform, "transform", ("abs", "relu", "none"))
    P, s = components.maps.detach(), components.weights.detach()
    if k is not None:
        k = _check_k(k, P.shape[1])
        P, s = P[:, :k], s[:, :k]
    P = _transform(P, transform)
    if normalize_components:
        P = minmax_normalize(P)
    # the weights only matter relative to each other: divide by the largest first, so that sigma**2
    # of large activations (float32 sigma above ~1e19) cannot overflow
    smax = s.amax(dim=1, keepdim=True)
    s = s / torch.where(smax > 0, smax, torch.ones_like(smax))
    if weighting == "sigma":
        w = s
    elif weighting == "sigma2":
        w = s**2
    else:
        w = (s > 0).to(s.dtype)
    total = w.sum(dim=1)
    combined = torch.einsum("bk,bkhw->bhw", w, P)
    return combined / torch.where(total > 0, total, torch.ones_like(total))[:, None, None]


def _finish(maps: torch.Tensor, normalize: bool) -> torch.Tensor:
    return minmax_normalize(maps) if normalize else maps


def eigencam(
    A: torch.Tensor,
    *,
    sign: SignRule = "activation",
    transform: Transform = "relu",
    normalize: bool = True,
    solver: Solver = "gram",
    precision: Precision = "double",
    nan_policy: NanPolicy = "raise",
) -> torch.Tensor:
    """EigenCAM: the first principal component of the centred matricised feature maps.

    ``map = T(M v_1)`` reshaped to (H, W), ``M`` = (H*W, C) with channel means removed, ``T`` = ReLU,
    then min-max normalisation: pytorch-grad-cam's EigenCAM, with a deterministic sign.

    Parameters
    ----------
    A : (B, C, H, W)
    sign : {"activation", "max", "none"}
        ``"activation"`` (default): orient ``v_1`` so that the map correlates positively with the
        total activation map (fixes the inverted maps of pytorch-grad-cam issues #315/#364).
        ``"none"``: the solver's arbitrary sign (like pytorch-grad-cam's, but not always the same sign;
        maps may come out inverted).
    transform : {"relu", "abs", "none"}
    normalize : bool
        Min-max normalise to [0, 1] (default); ``False`` returns the raw map.

    Returns
    -------
    (B, H, W). All-zero, constant or rank-0 (after centring) activations give an all-zero map.
    """
    comps = eigencam_components(A, 1, sign=sign, solver=solver, precision=precision, nan_policy=nan_policy)
    return _finish(_transform(comps.maps[:, 0], transform), normalize)


def tsm(
    A: torch.Tensor,
    ranks: Sequence[int | None] | None = None,
    *,
    normalize: bool = True,
    solver: Solver = "gram",
    precision: Precision = "double",
    n_iter_max: int = 100,
    tol: float = 1e-4,
    nan_policy: NanPolicy = "raise",
) -> torch.Tensor:
    """Tucker Saliency Map: ``|sum_c w_c A_c|`` with ``w`` the first channel factor of a Tucker decomposition.

    Parameters
    ----------
    A : (B, C, H, W)
    ranks : (R1, R2, R3), optional
        Multilinear ranks of the HOOI decomposition; default the full rank ``(min(C, H*W), H, W)``, where
        TSM equals ``|.|`` of the uncentred EigenCAM projection (see :func:`tsm_components`).
    normalize : bool
        Min-max normalise to [0, 1] (default); ``False`` returns ``|sum_c w_c A_c|`` itself.

    Returns
    -------
    (B, H, W). All-zero activations give an all-zero map; so do constant ones after normalisation.
    """
    comps = tsm_components(
        A, ranks, 1, solver=solver, precision=precision, n_iter_max=n_iter_max, tol=tol, nan_policy=nan_policy
    )
    return _finish(comps.maps[:, 0].abs(), normalize)


def multivec_eigencam(
    A: torch.Tensor,
    k: int | None = None,
    *,
    weighting: Weighting = "sigma",
    transform: Transform = "abs",
    normalize_components: bool = True,
    normalize: bool = True,
    sign: SignRule = "activation",
    solver: Solver = "gram",
    precision: Precision = "double",
    nan_policy: NanPolicy = "raise",
) -> torch.Tensor:
    """Multivec-EigenCAM: all principal components of EigenCAM's SVD, combined.

    ``map = N( sum_k sigma_k N(T(M v_k)) / sum_k sigma_k )`` over the first ``k`` components (default:
    all up to the numerical rank), ``T`` = ``|.|``, ``N`` = min-max. See :func:`combine_components` for
    the options; ``sign`` only matters with ``transform="relu"`` or ``"none"``.

    A : (B, C, H, W) -> (B, H, W)
    """
    comps = eigencam_components(A, k, sign=sign, solver=solver, precision=precision, nan_policy=nan_policy)
    combined = combine_components(
        comps, weighting=weighting, transform=transform, normalize_components=normalize_components
    )
    return _finish(combined, normalize)


def mtsm(
    A: torch.Tensor,
    ranks: Sequence[int | None] | None = None,
    k: int | None = None,
    *,
    weighting: Weighting = "sigma",
    transform: Transform = "abs",
    normalize_components: bool = True,
    normalize: bool = True,
    sign: SignRule = "activation",
    solver: Solver = "gram",
    precision: Precision = "double",
    n_iter_max: int = 100,
    tol: float = 1e-4,
    nan_policy: NanPolicy = "raise",
) -> torch.Tensor:
    """Multivector Tucker Saliency Map: all channel-mode Tucker components, weighted by the core's slice norms.

    ``p_k = |sum_c U1[c, k] A_c|``, ``sigma_k = ||G[k, :, :]||_F``,
    ``map = N( sum_k sigma_k N(p_k) / sum_k sigma_k )`` over the first ``k`` components (default all R1,
    up to the numerical rank). Options as in :func:`combine_components`.

    A : (B, C, H, W) -> (B, H, W)
    """
    comps = tsm_components(
        A, ranks, k, sign=sign, solver=solver, precision=precision, n_iter_max=n_iter_max, tol=tol,
        nan_policy=nan_policy,
    )
    combined = combine_components(
        comps, weighting=weighting, transform=transform, normalize_components=normalize_components
    )
    return _finish(combined, normalize)
