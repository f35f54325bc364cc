"""Batched SVD and Tucker/HOOI: closed forms, parity with tensorly, orthonormality, bad inputs."""

import numpy as np
import pytest
import tensorly as tl
import torch

import tsmlib
from tsmlib.decomposition import flip_signs, mode_product, truncated_svd, unfold
from tsmlib.reference import tensorly_mtsm, tensorly_tsm, tensorly_tucker


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _tensorly_tucker(F: torch.Tensor, ranks, tol=0.0, n_iter_max=30):
    return tensorly_tucker(F, ranks, tol=tol, n_iter_max=n_iter_max)


# ---------------------------------------------------------------- truncated SVD


@pytest.mark.parametrize("shape", [(3, 5, 9), (3, 9, 5), (2, 6, 6)])
@pytest.mark.parametrize("solver", ["gram", "svd"])
def test_truncated_svd_matches_numpy(shape, solver):
    X = _rand(*shape, seed=1)
    r = min(shape[1:])
    U, s, V = truncated_svd(X, r, solver=solver)
    for b in range(shape[0]):
        s_ref = np.linalg.svd(X[b].numpy(), compute_uv=False)
        np.testing.assert_allclose(s[b].numpy(), s_ref[:r], rtol=1e-10)
    np.testing.assert_allclose((U * s[:, None, :]) @ V.mT, X, atol=1e-10)
    eye = torch.eye(r, dtype=X.dtype).expand(shape[0], r, r)
    torch.testing.assert_close(U.mT @ U, eye)
    torch.testing.assert_close(V.mT @ V, eye)


def test_truncated_svd_zero_singular_values_give_zero_columns():
    # rank-1 matrix: the second triplet has s = 0 and must not be NaN
    u, v = torch.tensor([1.0, 2.0, 2.0]) / 3, torch.tensor([0.6, 0.8])
    X = (5 * u[:, None] * v[None, :])[None]
    U, s, V = truncated_svd(X, 2)
    assert torch.isfinite(U).all() and torch.isfinite(V).all()
    torch.testing.assert_close(s[0], torch.tensor([5.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(U[0, :, 0].abs(), u, atol=1e-6, rtol=0)
    assert torch.all(U[0, :, 1] == 0)


def test_truncated_svd_rejects_bad_rank_and_shape():
    with pytest.raises(ValueError, match="rank must be between 1 and"):
        truncated_svd(torch.zeros(1, 3, 4), 4)
    with pytest.raises(ValueError, match=r"\(B, m, n\)"):
        truncated_svd(torch.zeros(3, 4), 1)
    with pytest.raises(ValueError, match="solver"):
        truncated_svd(torch.ones(1, 3, 4), 1, solver="qr")


def test_flip_signs_makes_largest_entry_positive():
    U = torch.tensor([[[0.1, 0.9], [-0.8, 0.2]]])
    out = flip_signs(U)
    torch.testing.assert_close(out, torch.tensor([[[-0.1, 0.9], [0.8, 0.2]]]))


# ---------------------------------------------------------------- Tucker


def test_mode_products_match_tensorly():
    A = _rand(2, 4, 3, 5, seed=2)
    U = [_rand(2, 4, 2, seed=3), _rand(2, 3, 2, seed=4), _rand(2, 5, 3, seed=5)]
    with tl.backend_context("pytorch"):
        for mode in (1, 2, 3):
            ours = mode_product(A, U[mode - 1], mode)
            ref = torch.stack([tl.tenalg.mode_dot(A[b], U[mode - 1][b].T, mode - 1) for b in range(2)])
            torch.testing.assert_close(ours, ref)
            torch.testing.assert_close(unfold(A, mode)[0], tl.unfold(A[0], mode - 1))


def test_rank1_tensor_is_recovered_exactly():
    # A = a (x) b (x) c: a rank-(1,1,1) tensor; the factors are the normalised vectors, the core is
    # the product of the norms, the reconstruction is exact.
    a, b, c = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 1.0])
    A = torch.einsum("c,h,w->chw", a, b, c)[None].double()
    res = tsmlib.tucker(A, (1, 1, 1))
    assert res.core.shape == (1, 1, 1, 1)
    assert res.core.item() == pytest.approx(5 * 3 * np.sqrt(5), rel=1e-12)
    for U, v in zip(res.factors, (a, b, c)):
        torch.testing.assert_close(U[0, :, 0], (v / v.norm()).double())
    torch.testing.assert_close(res.reconstruct(), A)
    assert res.rec_error.item() < 1e-14  # the explicit residual, not sqrt(||A||^2 - ||G||^2)


def test_core_slice_norms_equal_unfolding_singular_values_at_full_spatial_rank():
    A = torch.relu(_rand(3, 20, 4, 5, seed=6))
    res = tsmlib.tucker(A)  # full multilinear rank (min(C, HW), H, W) = (20, 4, 5)
    for b in range(3):
        s_ref = np.linalg.svd(A[b].reshape(20, -1).numpy(), compute_uv=False)
        np.testing.assert_allclose(res.singular_values[b].numpy(), s_ref[:20], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(res.reconstruct(), A)  # untruncated: exact


def test_core_is_all_orthogonal():
    A = _rand(2, 12, 5, 5, seed=7)
    res = tsmlib.tucker(A, (6, 3, 4), tol=1e-12, n_iter_max=500)
    G = unfold(res.core, 1)  # rows = channel slices
    gram = G @ G.mT
    off = gram - torch.diag_embed(torch.diagonal(gram, dim1=-2, dim2=-1))
    assert off.abs().max() < 1e-6 * gram.abs().max()
    assert torch.all(res.singular_values[:, :-1] >= res.singular_values[:, 1:] - 1e-9)


@pytest.mark.parametrize("ranks", [(6, 3, 4), (12, 5, 5), (25, 5, 5), (3, 2, 2), (1, 1, 1), (10, 5, 2)])
def test_factors_are_orthonormal(ranks):
    A = _rand(2, 30, 5, 5, seed=8)
    res = tsmlib.tucker(A, ranks)
    for U, r in zip(res.factors, ranks):
        torch.testing.assert_close(U.mT @ U, torch.eye(r, dtype=A.dtype).expand(2, r, r), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    "shape,ranks",
    [((40, 7, 7), (40, 7, 7)), ((64, 7, 7), (10, 4, 4)), ((64, 7, 7), (5, 7, 7)),
     ((16, 6, 5), (8, 3, 5)), ((100, 4, 4), (16, 4, 4))],
)
@pytest.mark.parametrize("structured", [False, True])
def test_tucker_matches_tensorly(shape, ranks, structured):
    # structured: non-negative, low-rank plus noise, like post-ReLU CNN features
    B = 3
    if structured:
        C, H, W = shape
        spatial = torch.relu(_rand(B, 3, H, W, seed=10))
        mix = torch.relu(_rand(B, C, 3, seed=11))
        A = torch.relu(torch.einsum("bck,bkhw->bchw", mix, spatial) + 0.05 * _rand(B, *shape, seed=12))
    else:
        A = _rand(B, *shape, seed=9)
    # the same number of HOOI sweeps on both sides (tol=0: no early stop), so that slowly converging
    # random tensors are compared at the same iterate
    ours = tsmlib.tucker(A, ranks, tol=0.0, n_iter_max=30)
    for b in range(B):
        core, factors = _tensorly_tucker(A[b], ranks)
        # same subspaces, same signs (both use the largest-entry-positive rule), same core
        for U_ours, U_ref in zip(ours.factors, factors):
            torch.testing.assert_close(U_ours[b], U_ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(ours.core[b], core, atol=1e-6 * core.abs().max().item(), rtol=0)


def test_tucker_batch_equals_one_by_one_and_is_deterministic():
    A = torch.relu(_rand(5, 32, 6, 6, seed=13, dtype=torch.float32))
    # tol=0: a fixed number of sweeps, so that batch and single items stop at the same iterate
    full = tsmlib.tucker(A, (8, 4, 4), tol=0.0, n_iter_max=8)
    again = tsmlib.tucker(A, (8, 4, 4), tol=0.0, n_iter_max=8)
    torch.testing.assert_close(full.core, again.core, atol=0, rtol=0)
    for b in range(5):
        one = tsmlib.tucker(A[b : b + 1], (8, 4, 4), tol=0.0, n_iter_max=8)
        torch.testing.assert_close(one.singular_values[0], full.singular_values[b], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(one.core[0].abs(), full.core[b].abs(), atol=1e-4, rtol=1e-4)


def test_zero_tensor_gives_zero_core_and_no_nan():
    res = tsmlib.tucker(torch.zeros(2, 8, 3, 3))
    assert torch.all(res.core == 0) and torch.all(res.singular_values == 0)
    assert torch.all(res.rec_error == 0)
    for U in res.factors:
        assert torch.isfinite(U).all()


@pytest.mark.parametrize(
    "ranks,match",
    [((0, 3, 3), "out of range"), ((9, 3, 3), "out of range"), ((5, 4, 3), "out of range"),
     ((8, 1, 3), "exceeds the product"), ((2, 3), r"\(R1, R2, R3\)"), ((2.0, 3, 3), "must be an int")],
)
def test_bad_ranks_raise(ranks, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tsmlib.tucker(torch.rand(1, 8, 3, 3), ranks)


def test_none_ranks_fill_to_the_largest_valid_value():
    from tsmlib._validation import resolve_ranks

    assert resolve_ranks(None, 2048, 7, 7) == (49, 7, 7)
    assert resolve_ranks((None, 4, 4), 2048, 7, 7) == (16, 4, 4)
    assert resolve_ranks((2, None, None), 2048, 7, 7) == (2, 7, 7)
    assert resolve_ranks((1, None, 3), 64, 7, 7) == (1, 3, 3)
    assert resolve_ranks((None, 4, 4), 3, 7, 7) == (3, 4, 4)


def test_wrong_dimensionality_raises_with_hint():
    with pytest.raises(ValueError, match=r"A\[None\]"):
        tsmlib.tucker(torch.rand(8, 3, 3))
    with pytest.raises(TypeError, match="floating"):
        tsmlib.tucker(torch.ones(1, 8, 3, 3, dtype=torch.int64))


# ------------------------------------------------ tensorly's stopping rule at the default tol


def _relu_low_rank(B, C, H, W, seed, dtype=torch.float64):
    """Real-ish post-ReLU activations: relu(rank-4 signal + noise)."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.einsum("bck,bkn->bcn", torch.randn(B, C, 4, generator=g, dtype=dtype),
                          torch.randn(B, 4, H * W, generator=g, dtype=dtype)).reshape(B, C, H, W)
    return torch.relu(signal + 0.3 * torch.randn(B, C, H, W, generator=g, dtype=dtype))


def _tensorly_hooi(A_b, ranks, tol=1e-4):
    return tensorly_tucker(A_b, ranks, tol=tol, return_sweeps=True)


@pytest.mark.parametrize("ranks", [(10, 4, 4), (5, 3, 3), (16, 7, 7)])
def test_tucker_default_tol_runs_tensorlys_sweeps_per_item(ranks):
    # items of one batch converge after different numbers of sweeps (3 to 26 here): each must stop
    # where tensorly stops on it alone, with tensorly's factors and core
    A = _relu_low_rank(3, 256, 7, 7, seed=0)
    ours = tsmlib.tucker(A, ranks)
    sweeps = []
    for b in range(3):
        core, factors, n = _tensorly_hooi(A[b], ranks)
        sweeps.append(n)
        for U_ours, U_ref in zip(ours.factors, factors):
            torch.testing.assert_close(U_ours[b], U_ref, atol=1e-10, rtol=0)
        torch.testing.assert_close(ours.core[b], core, atol=1e-10 * core.abs().max().item(), rtol=0)
    assert ours.n_iter == max(sweeps)
    assert min(sweeps) >= 3  # tensorly never tests convergence before its third sweep


@pytest.mark.parametrize("ranks", [(20, 6, 6), (10, 4, 4)])
def test_tucker_default_tol_maps_match_tensorly(ranks):
    # the TSM / MTSM maps built from tensorly's decomposition at its default tol (these differed by
    # 4e-4 (TSM) on (20, 6, 6) when HOOI stopped one sweep earlier than tensorly)
    A = _relu_low_rank(2, 64, 7, 7, seed=0)
    tsm_maps, mtsm_maps = tsmlib.tsm(A, ranks), tsmlib.mtsm(A, ranks)
    for b in range(2):
        ref_tsm, ref_mtsm = tensorly_tsm(A[b], ranks), tensorly_mtsm(A[b], ranks)  # tensorly's default tol
        torch.testing.assert_close(tsm_maps[b], ref_tsm, atol=1e-10, rtol=0)
        torch.testing.assert_close(mtsm_maps[b], ref_mtsm, atol=1e-10, rtol=0)


def test_tucker_batch_equals_one_by_one_at_default_tol():
    A = _relu_low_rank(3, 64, 6, 6, seed=3)
    full = tsmlib.tucker(A, (6, 3, 3))
    for b in range(3):
        one = tsmlib.tucker(A[b : b + 1], (6, 3, 3))
        torch.testing.assert_close(one.core[0], full.core[b], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [({"n_iter_max": -1}, ValueError, "n_iter_max=-1 is out of range"),
     ({"n_iter_max": 2.5}, TypeError, "n_iter_max must be an integer"),
     ({"tol": -1e-4}, ValueError, "tol must be a finite number >= 0"),
     ({"tol": float("nan")}, ValueError, "tol must be a finite number >= 0"),
     ({"tol": "1e-4"}, TypeError, "tol must be a real number"),
     ({"precision": "bogus"}, ValueError, "precision must be one of 'double', 'native'"),
     ({"solver": "qr"}, ValueError, "solver must be one of 'gram', 'gram-eigh', 'gram-iter', 'svd'"),
     ({"ranks": 5}, TypeError, r"ranks must be a sequence \(R1, R2, R3\)"),
     ({"ranks": "555"}, TypeError, r"ranks must be a sequence \(R1, R2, R3\)"),
     ({"ranks": (True, 3, 3)}, TypeError, "must be an int or None")],
)
def test_tucker_bad_arguments_raise_clearly(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tsmlib.tucker(torch.rand(1, 8, 3, 3), **kwargs)


def test_numpy_integer_ranks_and_rank_are_accepted():
    A = _rand(2, 8, 3, 3, seed=4)
    ours = tsmlib.tucker(A, (np.int64(4), np.int32(2), None), tol=0.0, n_iter_max=3)
    ref = tsmlib.tucker(A, (4, 2, 3), tol=0.0, n_iter_max=3)
    torch.testing.assert_close(ours.core, ref.core, atol=0, rtol=0)
    assert tsmlib.tucker(A, ranks=np.array([4, 2, 3]), tol=0.0, n_iter_max=3).core.shape == (2, 4, 2, 3)
    assert tsmlib.tucker(A, n_iter_max=np.int64(0)).n_iter == 0
    U, s, V = truncated_svd(A.flatten(2), np.int64(2))
    assert s.shape == (2, 2)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [({"rank": 2.0}, TypeError, "rank must be an integer"), ({"rank": True}, TypeError, "rank must be an integer"),
     ({"rank": 2, "precision": "bogus"}, ValueError, "precision must be one of"),
     ({"rank": 2, "need": "up"}, ValueError, "need must be one of 'both', 'left', 'right'")],
)
def test_truncated_svd_bad_arguments_raise_clearly(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        truncated_svd(_rand(1, 4, 5), **kwargs)


@pytest.mark.parametrize("precision", ["double", "native"])
@pytest.mark.parametrize("solver", ["gram", "svd"])
def test_huge_float32_values_do_not_overflow(precision, solver):
    # RMS ~1e20: squares overflow float32; the decompositions must scale, not return inf/zero
    A = _rand(2, 16, 4, 4, seed=5, dtype=torch.float32)
    from tsmlib.decomposition import numerical_rank_tolerance

    assert torch.isfinite(numerical_rank_tolerance(A * 1e20)).all()
    U, s, _ = truncated_svd((A * 1e20).flatten(2), 3, solver=solver, precision=precision)
    U0, s0, _ = truncated_svd(A.flatten(2), 3, solver=solver, precision=precision)
    torch.testing.assert_close(s / 1e20, s0, rtol=1e-4, atol=0)
    torch.testing.assert_close(flip_signs(U), flip_signs(U0), atol=1e-4, rtol=0)
    big, small = tsmlib.tucker(A * 1e20, (4, 2, 2), precision=precision), tsmlib.tucker(A, (4, 2, 2), precision=precision)
    torch.testing.assert_close(big.singular_values / 1e20, small.singular_values, rtol=1e-4, atol=0)
    torch.testing.assert_close(big.rec_error, small.rec_error, rtol=1e-3, atol=1e-6)


# ---------------------------------------------------------------- iterative eigensolver (issue 13)


def _with_spectrum(B, m, n, s, seed=0):
    """(B, m, n) matrices with singular values ``s`` and random singular vectors, float64."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(B, m, len(s), generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(B, n, len(s), generator=g, dtype=torch.float64)).Q
    return U @ torch.diag_embed(torch.as_tensor(s, dtype=torch.float64).expand(B, -1)) @ V.mT


def _spectra(m, n):
    r = min(m, n)
    decaying = [2.0 ** -i for i in range(r)]
    low_rank_noise = [10.0, 6.0, 3.0, 1.0] + [1e-3 * (1 - i / r) for i in range(r - 4)]
    near_degenerate = [1.0, 1.0 - 1e-9] + [0.5 ** i for i in range(1, r - 1)]
    return {"decaying": decaying, "low_rank_noise": low_rank_noise, "near_degenerate": near_degenerate}


def _angles(U, V):
    """Largest distance between matching unit columns, up to sign (~ the angle in radians)."""
    return float(torch.minimum((U - V).norm(dim=-2), (U + V).norm(dim=-2)).max())


@pytest.mark.parametrize("kind", ["decaying", "low_rank_noise", "near_degenerate", "random"])
@pytest.mark.parametrize("k", [1, 3])
def test_subspace_eigh_matches_eigh_where_it_converges(kind, k):
    from tsmlib.decomposition import subspace_eigh

    X = _rand(4, 40, 60, seed=3) if kind == "random" else _with_spectrum(4, 40, 60, _spectra(40, 60)[kind])
    G = X @ X.mT
    evals, evecs, ok = subspace_eigh(G, k)
    ref_vals, ref_vecs = torch.linalg.eigh(G)
    ref_vals, ref_vecs = ref_vals.flip(-1)[:, :k], ref_vecs.flip(-1)[..., :k]
    if kind in ("decaying", "low_rank_noise"):
        assert bool(ok.all())  # well separated: must converge
    if kind == "near_degenerate":
        assert not bool(ok.any())  # sigma_1 / sigma_2 = 1 + 1e-9: must hand over to eigh
    for b in ok.nonzero()[:, 0]:
        assert torch.allclose(evals[b], ref_vals[b], rtol=1e-12, atol=1e-12 * float(ref_vals[b, 0]))
        assert _angles(evecs[b], ref_vecs[b]) < 1e-10


@pytest.mark.parametrize("kind", ["decaying", "low_rank_noise", "near_degenerate"])
@pytest.mark.parametrize("shape", [(40, 60), (60, 40)])
@pytest.mark.parametrize("rank", [1, 4])
def test_gram_iter_equals_gram_eigh(kind, shape, rank):
    # the iterative solver (the CUDA default, forced here on the CPU) against LAPACK eigh, with the
    # near-degenerate inputs going through its fallback; float64 to 1e-10, float32 to 1e-5
    X = _with_spectrum(3, *shape, _spectra(*shape)[kind])
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        Xd = X.to(dtype)
        U0, s0, V0 = truncated_svd(Xd, rank, solver="gram-eigh")
        for solver in ("gram-iter", "gram"):
            U, s, V = truncated_svd(Xd, rank, solver=solver)
            assert torch.allclose(s, s0, rtol=tol, atol=0)
            # near-degenerate: the pair (1, 2) is not unique, but the iteration hands it to eigh
            assert _angles(U.double(), U0.double()) < tol and _angles(V.double(), V0.double()) < tol


def test_gram_iter_zero_and_tiny_inputs():
    X = torch.zeros(2, 40, 50, dtype=torch.float64)
    X[1] = _rand(40, 50, seed=4) * 1e-30
    U, s, V = truncated_svd(X, 1, solver="gram-iter")
    assert torch.isfinite(U).all() and torch.isfinite(V).all() and s[0, 0] == 0 and (V[0] == 0).all()
    _, s_ref, _ = truncated_svd(X, 1, solver="gram-eigh")
    assert torch.allclose(s, s_ref, rtol=1e-12)


def test_decompositions_leave_the_process_thread_count_alone(monkeypatch):
    # torch.set_num_threads is process-wide: a library call must not flip it behind the caller's back
    def refuse(n):
        raise AssertionError(f"torch.set_num_threads({n}) called inside tsmlib")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    A = torch.rand(2, 40, 7, 7, generator=torch.Generator().manual_seed(0))
    for solver in ("gram", "gram-eigh", "gram-iter"):
        truncated_svd(A.flatten(2), 3, solver=solver)
    for fn in (tsmlib.eigencam, tsmlib.tsm, tsmlib.multivec_eigencam, tsmlib.mtsm):
        fn(A)
