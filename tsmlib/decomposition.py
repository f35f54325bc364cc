"""Batched matrix and tensor decompositions: truncated SVD via small Gram matrices, and Tucker (HOOI).

Everything here works on a whole batch at once (no per-image Python loop), on any device, in float32 or
float64. The shapes are those of CNN feature maps: ``A`` is ``(B, C, H, W)`` with ``C`` large (hundreds
to thousands of channels) and ``H*W`` small (49 for a 7x7 map), so every expensive step is a matmul and
every eigendecomposition is of a small ``min(m, n) x min(m, n)`` Gram matrix.

References
----------
L. De Lathauwer, B. De Moor, J. Vandewalle. "A multilinear singular value decomposition" (HOSVD) and
"On the best rank-1 and rank-(R1, R2, ..., RN) approximation of higher-order tensors" (HOOI). SIAM J.
Matrix Anal. Appl., 2000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from ._validation import NanPolicy, check_activations, check_choice, check_int, check_tol, resolve_ranks

Solver = Literal["gram", "gram-eigh", "gram-iter", "svd"]
SOLVERS = ("gram", "gram-eigh", "gram-iter", "svd")
Precision = Literal["double", "native"]

__all__ = ["truncated_svd", "subspace_eigh", "tucker", "TuckerResult", "mode_product", "numerical_rank_tolerance"]


def _eigh_descending(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a batch of small symmetric matrices, eigenvalues in descending order.

    Runs on the CPU, with torch's thread count as the caller set it. On CUDA the matrices make the round
    trip: batched ``eigh`` of many small matrices is slower on a GPU than the copy (about 0.7 ms per 49x49
    matrix measured on an H100).
    """
    evals, evecs = torch.linalg.eigh(G.cpu())
    if G.device.type != "cpu":
        evals, evecs = evals.to(G.device), evecs.to(G.device)
    return evals.flip(-1), evecs.flip(-1)


def _safe_divide_columns(X: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``X / s`` column-wise, with zero columns where ``s == 0``.  X: (B, m, r), s: (B, r)."""
    nonzero = s > 0
    return torch.where(nonzero[..., None, :], X / torch.where(nonzero, s, torch.ones_like(s))[..., None, :], 0.0)


# Leading-eigenvector iteration: convergence threshold on the estimated eigenvector angle
# ||G v - theta v|| / gap, by the dtype the Gram matrix is iterated in, and the sweep budget.
_ITER_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
_ITER_MAX = 40
# below this Gram side a CPU eigh costs less than the Python overhead of the iteration's sweeps
_ITER_MIN_SIDE = 32
# accept a leading eigenvector computed from a float32 Gram matrix only when the Gram's rounding error
# (estimated as eps32 * trace G) moves it by at most this angle (float64 Gram + eigh otherwise)
_FLOAT32_GRAM_TOL = 1e-6


def _small_eigh(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Descending ``eigh`` of tiny (b x b) Rayleigh-Ritz matrices, on their own device."""
    evals, evecs = torch.linalg.eigh(H)
    return evals.flip(-1), evecs.flip(-1)


def subspace_eigh(
    G: torch.Tensor,
    k: int,
    *,
    block: int | None = None,
    max_iter: int = _ITER_MAX,
    tol: float | None = None,
    extra_error: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leading ``k`` eigenpairs of a batch of symmetric PSD matrices by block subspace iteration.

    Device-agnostic and matmul-based: each sweep is one ``G @ Q`` (n x b block), a thin QR and a
    Rayleigh-Ritz step (``eigh`` of a b x b matrix on ``G``'s device); no CPU round trip on CUDA.

    * Start (deterministic): ``G 1`` (the mean direction: the dominant one for post-ReLU features) and
      the columns of ``G`` with the largest diagonal entries.
    * Block ``b = min(n, k + max(4, k // 2))`` (default); when ``b == n`` the iteration would span the
      whole space, so one dense ``eigh`` of ``G`` (on its device) is returned instead.
    * Convergence, per item: ``||G x_j - theta_j x_j|| / gap_j <= tol`` for each of the ``k`` Ritz
      pairs (``gap_j``: distance of ``theta_j`` to its nearest other Ritz value), an estimate of the
      angle between ``x_j`` and the true eigenvector; ``extra_error / gap_j`` is added when given (the
      error of ``G`` itself, e.g. float32 rounding). ``tol`` defaults to 1e-12 (float64) / 1e-5 (float32).
    * Stops early for items whose rate of convergence (measured sweep to sweep) would need more
      than ``max_iter`` sweeps: a small gap ``lambda_{b+1} / lambda_j`` close to 1.

    Returns
    -------
    evals : (B, k) descending, evecs : (B, n, k), converged : (B,) bool
        Items with ``converged == False`` must be solved otherwise (see :func:`truncated_svd`'s
        fallback to ``eigh``); their values are the last iterate.
    """
    Bsz, n, _ = G.shape
    b = min(n, block if block is not None else k + max(4, k // 2))
    if b >= n:
        evals, evecs = (_eigh_descending(G) if G.device.type == "cpu" else _small_eigh(G))
        return evals[..., :k], evecs[..., :k], torch.ones(Bsz, dtype=torch.bool, device=G.device)
    tol = _ITER_TOL.get(G.dtype, 1e-5) if tol is None else tol
    diag = G.diagonal(dim1=-2, dim2=-1)
    idx = diag.topk(b - 1, dim=-1).indices  # (B, b-1)
    start = torch.cat([G.sum(dim=-1, keepdim=True), torch.gather(G, -1, idx[:, None, :].expand(Bsz, n, b - 1))], dim=-1)
    Q = torch.linalg.qr(start).Q
    converged = torch.zeros(Bsz, dtype=torch.bool, device=G.device)
    failed = torch.zeros_like(converged)
    prev = None
    theta = X = None
    for it in range(1, max_iter + 1):
        Y = G @ Q
        H = Q.mT @ Y
        theta, W = _small_eigh((H + H.mT) / 2)
        X, GX = Q @ W, Y @ W
        res = torch.linalg.vector_norm(GX[..., :k] - X[..., :k] * theta[:, None, :k], dim=-2)  # (B, k)
        above = torch.cat([torch.full_like(theta[:, :1], float("inf")), theta[:, :-1]], dim=-1)[:, :k]
        gap = torch.minimum(above - theta[:, :k], theta[:, :k] - theta[:, 1 : k + 1])
        err = res if extra_error is None else res + extra_error[:, None]
        angle = (err / gap).amax(dim=-1)  # NaN for a zero matrix (0/0): never converged
        converged = converged | (angle <= tol)
        if extra_error is not None:  # the error of G itself is a floor on the angle
            failed = failed | ((extra_error[:, None] / gap).amax(dim=-1) > tol)
        if prev is None:
            # first sweep: theta_{b-1} / theta_{j} underestimates the rate lambda_{b+1} / lambda_j, so
            # this only gives up on items that are hopeless even at that optimistic rate
            rate = (theta[:, -1:] / theta[:, :k]).amax(dim=-1)
            needed = torch.log(torch.as_tensor(tol, dtype=angle.dtype) / angle) / torch.log(rate)
            failed = failed | (rate >= 1) | (needed > max_iter - 1)
        else:
            rate = angle / prev
            needed = torch.log(torch.as_tensor(tol, dtype=angle.dtype) / angle) / torch.log(rate)
            failed = failed | ~(rate < 1) | (it + needed > max_iter) | torch.isnan(angle)
        failed = failed & ~converged
        if bool((converged | failed).all()):
            break
        prev = angle
        Q = torch.linalg.qr(GX).Q
    return theta[:, :k], X[..., :k], converged


def truncated_svd(
    X: torch.Tensor,
    rank: int,
    *,
    solver: Solver = "gram",
    precision: Precision = "double",
    need: Literal["both", "left", "right"] = "both",
    float32_gram: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Leading ``rank`` singular triplets of a batch of matrices.

    Parameters
    ----------
    X : torch.Tensor, shape (B, m, n)
    rank : int
        Number of triplets, ``1 <= rank <= min(m, n)``.
    solver : {"gram", "gram-eigh", "gram-iter", "svd"}
        ``"gram"`` (default): eigenpairs of the smaller Gram matrix (``X X^T`` or ``X^T X``, side
        ``min(m, n)``), the other side by projection. Only matmuls touch the large dimension. The small
        eigenproblem is solved by ``"gram-eigh"`` on the CPU, except for ``rank == 1`` with a Gram side
        of at least 32 (``"gram-iter"``), and by ``"gram-iter"`` on any non-CPU device.
        ``"gram-eigh"``: batched LAPACK ``eigh`` (on the CPU: CUDA matrices make the round trip). It
        runs on torch's threads as the caller set them (``torch.set_num_threads``); nothing here changes
        that process-wide setting.
        ``"gram-iter"``: block subspace iteration with Rayleigh-Ritz (:func:`subspace_eigh`: matmuls,
        thin QRs and tiny ``eigh`` on the Gram matrix's own device), converged to an estimated
        eigenvector angle of 1e-12 (float64 Gram) per item; items it cannot converge within 40 sweeps
        (singular-value gap ``sigma_{b+1} / sigma_j`` too close to 1) fall back to ``"gram-eigh"``.
        ``"svd"``: ``torch.linalg.svd`` of ``X`` (slower on large batches, kept as a reference).
    precision : {"double", "native"}
        ``"double"`` (default) forms and decomposes the Gram matrix in float64 and casts back, so that
        trailing singular vectors of float32 input stay accurate (a float32 Gram matrix squares the
        condition number). One exception, exact to the same tolerance: for ``rank == 1`` with the
        iterative solver and float32 input, the Gram matrix is first formed in float32 (half the cost)
        and iterated in float64; an item is accepted only if the Gram's rounding error, estimated as
        ``eps32 * trace(G)``, moves the leading eigenvector by at most 1e-6 (``error / gap``), i.e.
        when ``sigma_1`` is well separated; the other items are redone from a float64 Gram matrix.
        ``"native"`` stays in the input dtype.
    need : {"both", "left", "right"}
        Which singular vectors to return; the other is ``None`` (saves the projection matmul).
    float32_gram : bool
        Allow the float32 Gram attempt above (default). ``False`` when small gaps are expected (the
        attempt would be wasted: the float64 Gram is formed anyway for those items).

    Returns
    -------
    U : (B, m, rank), s : (B, rank) descending, V : (B, n, rank)
        ``X ~ U diag(s) V^T``. Columns whose singular value is exactly 0 are zero vectors (on the
        projected side) rather than arbitrary; signs are those of the solver (see :func:`flip_signs`).
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 3:
        raise ValueError(f"X must be a tensor of shape (B, m, n), got {tuple(getattr(X, 'shape', ())) or type(X).__name__}")
    m, n = X.shape[-2:]
    rank = check_int(rank, "rank")
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be between 1 and min(m, n) = {min(m, n)}, got {rank}")
    check_choice(solver, "solver", SOLVERS)
    check_choice(precision, "precision", ("double", "native"))
    check_choice(need, "need", ("both", "left", "right"))
    out_dtype = X.dtype
    if solver == "gram":
        iterate = (rank == 1 and min(m, n) >= _ITER_MIN_SIDE) or X.device.type != "cpu"
        solver = "gram-iter" if iterate else "gram-eigh"
    left_gram = m <= n  # Gram matrix on the smaller side

    def gram(Y: torch.Tensor) -> torch.Tensor:
        return Y @ Y.mT if left_gram else Y.mT @ Y

    def scaled_gram(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(scaled Y, its Gram matrix, scale or None). The Gram matrix is formed first and its diagonal
        checked (``|G_ij| <= sqrt(G_ii G_jj)``): only an item whose diagonal overflowed or is near the
        dtype's limits pays for the scan of ``max|Y|`` and a second, scaled product."""
        G = gram(Y)
        d = G.diagonal(dim1=-2, dim2=-1).amax(dim=-1)
        fi = torch.finfo(Y.dtype)
        risky = ~torch.isfinite(d) | (d > fi.max / 16) | ((d < max(m, n) * fi.tiny / fi.eps) & (d != 0))
        if not bool(risky.any()):
            return Y, G, None
        scale = _gram_scale(Y, max(m, n))
        if scale is None:
            return Y, G, None
        Y = Y * scale[:, None, None]
        return Y, gram(Y), scale

    if solver == "svd":
        work = X.double() if precision == "double" else X
        U, s, Vh = torch.linalg.svd(work, full_matrices=False)
        U, s, V = U[..., :rank], s[..., :rank], Vh[..., :rank, :].mT
        return (None if need == "right" else U.to(out_dtype), s.to(out_dtype),
                None if need == "left" else V.to(out_dtype))
    low = float32_gram and solver == "gram-iter" and rank == 1 and precision == "double" and X.dtype == torch.float32
    if low:
        # float32 Gram, float64 iteration; items too close to degenerate are redone in float64 below
        work, G, scale = scaled_gram(X)
        G = G.double()
        extra = torch.finfo(torch.float32).eps * G.diagonal(dim1=-2, dim2=-1).sum(-1)
        evals, E, ok = subspace_eigh(G, rank, extra_error=extra / _FLOAT32_GRAM_TOL * _ITER_TOL[torch.float64])
    else:
        work, G, scale = scaled_gram(X.double() if precision == "double" else X)
        if solver == "gram-iter":
            evals, E, ok = subspace_eigh(G, rank)
        else:
            evals, E = _eigh_descending(G)
            evals, E, ok = evals[..., :rank], E[..., :rank], None
    if ok is not None and not bool(ok.all()):
        # the items the iteration could not converge: eigh of their Gram matrix (the same one, or a
        # float64 one from the same scaled work matrix if the iteration used a float32 Gram)
        bad = (~ok).nonzero()[:, 0]
        e2, E2 = _eigh_descending(gram(work[bad].double()) if low else G[bad])
        evals, E = evals.clone(), E.clone()
        evals[bad], E[bad] = e2[..., :rank].to(evals.dtype), E2[..., :rank].to(E.dtype)
    s = evals.clamp_min(0).sqrt()
    # the other side by projection, with the scaled work matrix and singular values (in float32 for
    # the float32-Gram case: one matmul whose rounding is that of the float32 output)
    P = E.to(work.dtype)
    U = V = None
    if left_gram:
        U = E
        if need != "left":
            V = _safe_divide_columns(work.mT @ P, s.to(work.dtype))
    else:
        V = E
        if need != "right":
            U = _safe_divide_columns(work @ P, s.to(work.dtype))
    if scale is not None:
        s = s / scale[:, None].to(s.dtype)
    U = None if need == "right" or U is None else U.to(out_dtype)
    V = None if need == "left" or V is None else V.to(out_dtype)
    return U, s.to(out_dtype), V


def _gram_scale(X: torch.Tensor, inner: int) -> torch.Tensor | None:
    """Per-item powers of two that keep the Gram matrix of ``X`` (B, m, n) from overflowing or underflowing.

    ``None`` (no scaling, the common case) when ``max|X|^2 * inner`` is comfortably inside the dtype's
    range. Scaling by a power of two is exact, so the singular vectors are those of ``X`` and the
    singular values are scaled back exactly.
    """
    lo, hi = torch.aminmax(X.detach().flatten(1), dim=1)  # one pass, no |X| temporary
    mx = torch.maximum(hi, -lo).double()
    fi = torch.finfo(X.dtype)
    mx2 = mx * mx
    risky = (mx2 * inner > fi.max / 16) | ((mx2 < fi.tiny / fi.eps) & (mx > 0)) | torch.isinf(mx2)
    if not bool(risky.any()):
        return None
    exponent = torch.where(mx > 0, torch.floor(torch.log2(mx)), torch.zeros_like(mx))
    return torch.exp2(-exponent).to(X.dtype)


def _safe_norm(X: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each item of ``X`` (B, ...), in float64, without overflow: (B,).

    Scaled by the largest magnitude before squaring, so float32 activations with an RMS above ~1e17
    (whose squares overflow float32) get their true norm rather than ``inf``.
    """
    Xd = X.detach().flatten(1).double()
    mx = Xd.abs().amax(dim=1)
    safe = torch.where(mx > 0, mx, torch.ones_like(mx))
    return mx * torch.linalg.vector_norm(Xd / safe[:, None], dim=1)


def numerical_rank_tolerance(A: torch.Tensor) -> torch.Tensor:
    """Singular values at or below this are treated as exactly zero.  A: (B, ...) -> (B,), float64.

    ``max(dims) * eps(dtype) * ||A_b||_F`` per item, numpy's ``matrix_rank`` rule with the Frobenius
    norm of the *uncentred* input as the scale: so the rounding residue of centring a constant tensor
    counts as zero, not as a signal to be normalised into a map. The norm is computed without overflow
    (:func:`_safe_norm`), so the tolerance is finite for any finite input.
    """
    dims = max(A.shape[1:]) if A.ndim == 4 else max(A.shape[-2:])
    return dims * torch.finfo(A.dtype).eps * _fast_norm(A)


def _fast_norm(A: torch.Tensor) -> torch.Tensor:
    """:func:`_safe_norm` to about 1e-6 relative (float32), in one reduction pass: the plain norm in
    the input dtype, redone by :func:`_safe_norm` only for items where it overflowed or underflowed.
    For thresholds (:func:`numerical_rank_tolerance`), not for HOOI's error, which needs float64."""
    norm = torch.linalg.vector_norm(A.detach().flatten(1), dim=1).double()
    fi = torch.finfo(A.dtype)
    bad = ~torch.isfinite(norm) | (norm < fi.tiny**0.5 / fi.eps)
    if bool(bad.any()):
        norm = torch.where(bad, _safe_norm(A), norm)
    return norm


def flip_signs(U: torch.Tensor) -> torch.Tensor:
    """Make the largest-magnitude entry of each column positive (tensorly's ``svd_flip`` rule).

    U : (B, m, r) -> (B, m, r)
    """
    idx = U.abs().argmax(dim=-2, keepdim=True)
    signs = torch.sign(torch.gather(U, -2, idx))
    return U * torch.where(signs == 0, torch.ones_like(signs), signs)


def mode_product(A: torch.Tensor, U: torch.Tensor, mode: int, *, transpose: bool = True) -> torch.Tensor:
    """Batched n-mode product of ``A`` (B, d1, d2, d3) with per-item matrices ``U``.

    ``mode`` is 1, 2 or 3 (the tensor modes, after the batch axis). ``U`` is (B, D, R).
    ``transpose=True`` (default): ``A x_n U^T``, the mode of size D shrinks to R (a projection onto the
    factor). ``transpose=False``: ``A x_n U``, the mode of size R grows back to D (reconstruction).
    """
    eq = {
        (1, True): "bchw,bcr->brhw", (2, True): "bchw,bhr->bcrw", (3, True): "bchw,bwr->bchr",
        (1, False): "brhw,bcr->bchw", (2, False): "bcrw,bhr->bchw", (3, False): "bchr,bwr->bchw",
    }[(mode, transpose)]
    return torch.einsum(eq, A, U)


def unfold(A: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-n unfolding of a batch of 3-way tensors: (B, d1, d2, d3) -> (B, d_mode, prod(others))."""
    return A.movedim(mode, 1).flatten(2)


@dataclass
class TuckerResult:
    """A batched Tucker decomposition ``A ~ core x1 U1 x2 U2 x3 U3``.

    Attributes
    ----------
    core : (B, R1, R2, R3)
    factors : tuple of (B, C, R1), (B, H, R2), (B, W, R3), orthonormal columns
    singular_values : (B, R1)
        ``||core[b, k, :, :]||_F``: the mode-1 singular values of the Tucker model (all-orthogonality of
        the HOOI core). With untruncated spatial ranks they equal the singular values of the mode-1
        unfolding of ``A``.
    rec_error : (B,)
        Relative reconstruction error ``||A - A_hat||_F / ||A||_F`` (0 for an all-zero ``A``).
    n_iter : int
        HOOI sweeps run: the most of any item (each item stops at its own sweep, see :func:`tucker`).
    """

    core: torch.Tensor
    factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    singular_values: torch.Tensor
    rec_error: torch.Tensor
    n_iter: int

    def reconstruct(self) -> torch.Tensor:
        """The approximation ``core x1 U1 x2 U2 x3 U3``, shape (B, C, H, W)."""
        out = self.core
        for mode, U in enumerate(self.factors, start=1):
            out = mode_product(out, U, mode, transpose=False)
        return out


def _project(A: torch.Tensor, factors) -> torch.Tensor:
    """The core ``A x1 U1^T x2 U2^T x3 U3^T``, channel mode first (it shrinks the most)."""
    return mode_product(mode_product(mode_product(A, factors[0], 1), factors[1], 2), factors[2], 3)


def _sweep_error(core: torch.Tensor, norm_A: torch.Tensor) -> torch.Tensor:
    """tensorly's per-sweep error ``sqrt(| ||A||^2 - ||core||^2 |) / ||A||`` (float64, 0 for A = 0).

    ``||A - A_hat||^2 = ||A||^2 - ||core||^2`` for orthonormal factors. Evaluated in float64 (tensorly
    evaluates it in the input dtype: the same for float64 input; for float32 input float64 avoids
    cancellation noise of about sqrt(eps) ~ 3e-4, which is larger than the default ``tol``).
    """
    norm_core = _safe_norm(core)
    return (norm_A**2 - norm_core**2).abs().sqrt() / torch.where(norm_A > 0, norm_A, torch.ones_like(norm_A))



def _position_gram(A: torch.Tensor, precision: Precision) -> torch.Tensor | None:
    """``K = F^T F`` (B, HW, HW) for the mode-1 unfolding ``F`` (B, C, HW), or ``None`` if it is not safe.

    ``None`` where a diagonal entry overflowed or is near the dtype's limits (the unfolding path,
    with its per-item scaling, handles those items).
    """
    F = A.flatten(2)
    Fw = F.double() if precision == "double" else F
    K = Fw.mT @ Fw
    d = K.diagonal(dim1=-2, dim2=-1).amax(dim=-1)
    fi = torch.finfo(K.dtype)
    n = max(F.shape[-2:])
    if bool((~torch.isfinite(d) | (d > fi.max / 16) | ((d < n * fi.tiny / fi.eps) & (d != 0))).any()):
        return None
    return K


def _hooi_sweeps(factors, core, norm_A, n_iter_max, tol, channel_update, leading, keep):
    """The HOOI sweeps from a start (``factors``, ``core``) with tensorly's stopping rule, per item.

    ``channel_update(factors) -> (channel factor, Z)`` computes the new channel factor and the
    projection ``Z`` (B, R1, H, W) of the tensor on it (the two paths of :func:`tucker` differ only
    there); the spatial updates, the core and the bookkeeping are shared. Items that converged at an
    earlier sweep keep that sweep's result. Returns ``(core, factors, err, n_iter)``.
    """
    err = _sweep_error(core, norm_A)
    active = torch.ones(core.shape[0], dtype=torch.bool, device=core.device)
    n_iter = 0
    for n_iter in range(1, n_iter_max + 1):
        U1, Z = channel_update(factors)
        U2 = leading(mode_product(Z, factors[2], 3), 2)
        Y3 = mode_product(Z, U2, 2)  # (B, R1, R2, W)
        U3 = leading(Y3, 3)
        new_core = mode_product(Y3, U3, 3)
        new_err = _sweep_error(new_core, norm_A)
        factors = [keep(new, old, active) for new, old in zip((U1, U2, U3), factors)]
        core = keep(new_core, core, active)
        was_active = active
        if n_iter >= 3 and tol > 0:  # tensorly: `if iteration > 1: if tol and |e[-2] - e[-1]| < tol`
            active = active & ~((err - new_err).abs() < tol)
        err = keep(new_err, err, was_active)
        if not bool(active.any()):
            break
    return core, factors, err, n_iter


def _hooi_on_gram(A, K, R, norm_A, n_iter_max, tol, leading, keep):
    """HOOI sweeps for ``C > H*W`` without touching the (B, C, H, W) tensor: everything through ``K``.

    The channel factor always lies in the column space of the unfolding, ``U1 = F W`` (W: HW x R1):
    at the HOSVD start ``W = V_K S^{-1}`` from ``eigh(K)``, and at each sweep, with
    ``P = U2 kron U3`` (HW x R2 R3), the Gram matrix of ``Y1 = F P`` is ``P^T K P``, whose eigenpairs
    ``(s^2, V)`` give ``U1 = Y1 V S^{-1}``, so ``W = P V S^{-1}``. Then ``Z = U1^T F = W^T K``
    (R1 x HW) is the projection that the spatial updates and the core need; the spatial Gram matrices
    of the HOSVD start are partial traces of ``K``. Each sweep costs O(HW^2 R2 R3) instead of
    O(C HW R): the channel mode is touched once, at the end (``U1 = F W``, signs by tensorly's rule,
    which sign-flips the core's slices alike; signs of U1 never influence U2, U3 or the errors).
    Same algorithm and stopping rule as the unfolding path, hence the same sweeps as tensorly.
    """
    B, C, H, W = A.shape
    N = H * W
    R1, R2, R3 = R

    def channel_solve(G: torch.Tensor, P: torch.Tensor | None) -> torch.Tensor:
        evals, V = _eigh_descending(G)
        s = evals[..., :R1].clamp_min(0).sqrt()
        Wt = _safe_divide_columns(V[..., :R1], s)
        return Wt if P is None else P @ Wt

    def project(Wt):  # Z = U1^T F = W^T K, (B, R1, H, W)
        return (Wt.mT @ K).reshape(B, R1, H, W)

    K4 = K.reshape(B, H, W, H, W)
    Wt = channel_solve(K, None)
    U2 = flip_signs(_eigh_descending(torch.einsum("bhwgw->bhg", K4))[1][..., :R2])
    U3 = flip_signs(_eigh_descending(torch.einsum("bhwhv->bwv", K4))[1][..., :R3])
    Z = project(Wt)
    core = mode_product(mode_product(Z, U2, 2), U3, 3)

    def channel_update(factors):
        P = torch.einsum("bhi,bwj->bhwij", factors[1], factors[2]).reshape(B, N, -1)
        Wn = channel_solve(P.mT @ K @ P, P)
        return Wn, project(Wn)

    core, factors, err, n_iter = _hooi_sweeps([Wt, U2, U3], core, norm_A, n_iter_max, tol, channel_update,
                                              leading, keep)
    F = A.flatten(2)
    U1 = F.to(K.dtype) @ factors[0]
    U1s = flip_signs(U1)
    signs = torch.where((U1s * U1).sum(dim=-2) < 0, -1.0, 1.0).to(core.dtype)
    core = core * signs[:, :, None, None]
    dt = A.dtype
    return core.to(dt), [U1s.to(dt), factors[1].to(dt), factors[2].to(dt)], err, n_iter


def tucker(
    A: torch.Tensor,
    ranks: Sequence[int | None] | None = None,
    *,
    n_iter_max: int = 100,
    tol: float = 1e-4,
    solver: Solver = "gram",
    precision: Precision = "double",
    nan_policy: NanPolicy = "raise",
) -> TuckerResult:
    """Batched Tucker decomposition of 3-way feature tensors by HOOI with an HOSVD start.

    Parameters
    ----------
    A : torch.Tensor, shape (B, C, H, W)
        One ``(C, H, W)`` tensor per batch item, decomposed independently (but in one batched pass).
    ranks : (R1, R2, R3), optional
        Multilinear ranks; ``None`` or ``None`` entries mean full: ``(min(C, H*W), H, W)``. (Not
        ``(C, H, W)``: an R1 above ``H*W`` only adds zero core slices.)
    n_iter_max, tol :
        tensorly's stopping rule and defaults (``tol=1e-4``), applied to each item separately: after
        sweep ``n`` the error ``e_n = sqrt(| ||A||^2 - ||core||^2 |) / ||A||`` is recorded, and from the
        third sweep on (tensorly's ``iteration > 1``, 0-based) HOOI stops when ``|e_{n-1} - e_n| < tol``,
        or after ``n_iter_max`` sweeps. An item that has converged keeps its factors while the rest of
        the batch iterates, so each item gets exactly the sweeps (and, for float64 input, the factors)
        of ``tensorly.decomposition.tucker(A[b], ranks, init="svd", tol=tol)``. ``tol=0`` runs exactly
        ``n_iter_max`` sweeps; ``n_iter_max=0`` returns the HOSVD (no sweep). Untruncated spatial ranks
        converge at the first test (three sweeps); truncated ones on random data may need tens.
    solver, precision :
        How the leading singular vectors of each unfolding are computed (:func:`truncated_svd`).
    nan_policy : {"raise", "zero"}
        NaN/Inf input raises (default) or is replaced by zeros.

    Returns
    -------
    TuckerResult
        Factor signs follow tensorly's rule (largest-magnitude entry of each column positive) and the
        sweeps are tensorly's, so each item matches ``tensorly.decomposition.tucker(A[b], ranks,
        init="svd", tol=tol, n_iter_max=n_iter_max)`` to rounding (float64; float32 can differ where a
        sweep's error change falls within rounding of ``tol``).
    """
    A = check_activations(A, nan_policy=nan_policy)
    B, C, H, W = A.shape
    R = resolve_ranks(ranks, C, H, W)
    n_iter_max = check_int(n_iter_max, "n_iter_max", minimum=0)
    tol = check_tol(tol)
    check_choice(solver, "solver", SOLVERS)
    check_choice(precision, "precision", ("double", "native"))
    norm_A = None

    def leading(Y: torch.Tensor, mode: int) -> torch.Tensor:
        U, _, _ = truncated_svd(unfold(Y, mode), R[mode - 1], solver=solver, precision=precision, need="left")
        return flip_signs(U)

    def keep(new: torch.Tensor, old: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return torch.where(active.reshape(-1, *([1] * (new.ndim - 1))), new, old)

    K = _position_gram(A, precision) if H * W < C and solver != "svd" and A.device.type == "cpu" else None
    if K is not None:
        # ||A||^2 = trace(K), summed in float64 like _safe_norm: no extra pass over A
        norm_A = K.diagonal(dim1=-2, dim2=-1).sum(-1).sqrt() if K.dtype == torch.float64 else _safe_norm(A)
        core, factors, err, n_iter = _hooi_on_gram(A, K, R, norm_A, n_iter_max, tol, leading, keep)
    else:
        norm_A = _safe_norm(A)
        # HOSVD start (tensorly's init="svd"): leading left singular vectors of each unfolding of A.
        factors = [leading(A, 1), leading(A, 2), leading(A, 3)]

        def channel_update(factors):
            # Each sweep touches the large channel mode twice: Y1 for the channel factor, then the
            # projection Z = A x1 U1^T (B, R1, H, W) that the two spatial updates and the core share.
            U1 = leading(mode_product(mode_product(A, factors[1], 2), factors[2], 3), 1)
            return U1, mode_product(A, U1, 1)

        core, factors, err, n_iter = _hooi_sweeps(factors, _project(A, factors), norm_A, n_iter_max, tol,
                                                  channel_update, leading, keep)
    singular_values = _safe_norm(core.flatten(0, 1)).reshape(B, -1).to(core.dtype)
    result = TuckerResult(core=core, factors=tuple(factors), singular_values=singular_values, rec_error=err, n_iter=n_iter)
    # The sweeps use the cheap sqrt(||A||^2 - ||G||^2), which bottoms out near sqrt(eps); report the
    # error of the explicit residual instead (one reconstruction).
    residual = _fast_norm(A - result.reconstruct())
    result.rec_error = (residual / torch.where(norm_A > 0, norm_A, torch.ones_like(norm_A))).to(A.dtype)
    return result
