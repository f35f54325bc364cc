"""The four saliency methods: closed forms, parity with references (numpy SVD, tensorly, pytorch-grad-cam),
batch/dtype/device consistency, combination options and bad inputs."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

import tsmlib
from tsmlib.methods import Components, _orient
from tsmlib.reference import tensorly_mtsm, tensorly_tsm

METHODS = [tsmlib.eigencam, tsmlib.tsm, tsmlib.multivec_eigencam, tsmlib.mtsm]


def _features(B=4, C=48, H=7, W=7, seed=0, dtype=torch.float64):
    """Post-ReLU-like features: a few non-negative spatial patterns mixed into C channels, plus noise."""
    g = torch.Generator().manual_seed(seed)
    spatial = torch.relu(torch.randn(B, 3, H, W, generator=g, dtype=dtype))
    mix = torch.relu(torch.randn(B, C, 3, generator=g, dtype=dtype))
    noise = 0.1 * torch.randn(B, C, H, W, generator=g, dtype=dtype)
    return torch.relu(torch.einsum("bck,bkhw->bchw", mix, spatial) + noise)


def _np_minmax(x):
    x = x - x.min()
    return x / x.max()


# ---------------------------------------------------------------- closed forms


def test_planted_object_rank1_is_recovered_by_every_method():
    # A = a (x) s: every channel is a positive multiple of one spatial pattern s, a 2x2 "object".
    s = torch.zeros(6, 6, dtype=torch.float64)
    s[1:3, 3:5] = 1.0
    a = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    A = (a[:, None, None] * s)[None]
    for method in METHODS:
        torch.testing.assert_close(method(A)[0], s, msg=method.__name__)


def test_rank1_with_graded_pattern():
    # TSM = minmax(|s|); EigenCAM = minmax(relu(s - mean(s))) with the deterministic sign
    g = torch.Generator().manual_seed(3)
    s = torch.rand(5, 5, generator=g, dtype=torch.float64)
    a = torch.rand(16, generator=g, dtype=torch.float64) + 0.1
    A = (a[:, None, None] * s)[None]
    torch.testing.assert_close(tsmlib.tsm(A)[0], (s - s.min()) / (s.max() - s.min()))
    c = torch.relu(s - s.mean())
    torch.testing.assert_close(tsmlib.eigencam(A)[0], c / c.max())


def test_raw_tsm_is_projection_on_first_singular_vector():
    A = _features(B=2)
    raw = tsmlib.tsm(A, normalize=False)
    for b in range(2):
        M = A[b].reshape(A.shape[1], -1).numpy()
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        expected = np.abs(U[:, 0] @ M).reshape(7, 7)
        np.testing.assert_allclose(raw[b].numpy(), expected, rtol=1e-9)
        assert raw[b].max().item() <= S[0] + 1e-9


def test_untruncated_tsm_equals_abs_uncentred_eigencam():
    A = _features(B=3)
    ours = tsmlib.tsm(A)
    for b in range(3):
        M = A[b].reshape(A.shape[1], -1).T.numpy()  # (HW, C), NOT centred
        _, _, Vt = np.linalg.svd(M, full_matrices=False)
        np.testing.assert_allclose(ours[b].numpy(), _np_minmax(np.abs(M @ Vt[0])).reshape(7, 7), atol=1e-9)


# ---------------------------------------------------------------- references


def test_eigencam_matches_pytorch_grad_cam_up_to_sign():
    A = _features(B=5, C=64, dtype=torch.float32, seed=1)
    theirs = get_2d_projection(A.numpy())  # (B, H, W), arbitrary sign
    ours = tsmlib.eigencam_components(A, 1, sign="none").maps[:, 0].numpy()
    for b in range(5):
        sign = np.sign(np.sum(ours[b] * theirs[b]))
        np.testing.assert_allclose(sign * ours[b], theirs[b], atol=2e-4 * np.abs(theirs[b]).max())
        # the full pipeline: their ReLU + scale_cam_image vs our relu + minmax with the same orientation
        expected = np.maximum(theirs[b], 0)
        expected = (expected - expected.min()) / (1e-7 + expected.max())
        P = torch.as_tensor(sign * ours[b])[None, None]
        ours_map = tsmlib.minmax_normalize(P.clamp_min(0))[0, 0].numpy()
        np.testing.assert_allclose(ours_map, expected, atol=1e-4)


def test_multivec_eigencam_matches_numpy_reference():
    A = _features(B=2, C=20, H=5, W=5)
    ours = tsmlib.multivec_eigencam(A)
    for b in range(2):
        M = A[b].reshape(20, -1).T.numpy()
        M = M - M.mean(axis=0)
        _, S, Vt = np.linalg.svd(M, full_matrices=False)
        keep = S > max(M.shape) * np.finfo(float).eps * np.linalg.norm(A[b].numpy())
        maps = [_np_minmax(np.abs(M @ Vt[k])) for k in range(len(S)) if keep[k]]
        combined = sum(S[k] * maps[k] for k in range(len(maps))) / S[keep].sum()
        np.testing.assert_allclose(ours[b].numpy(), _np_minmax(combined).reshape(5, 5), atol=1e-8)


def _tensorly_maps(F, ranks):
    """Reference TSM and MTSM of one (C, H, W) tensor from tensorly's tucker (tsmlib.reference)."""
    opts = {"tol": 0.0, "n_iter_max": 30}
    return tensorly_tsm(F, ranks, **opts).numpy(), tensorly_mtsm(F, ranks, **opts).numpy()


@pytest.mark.parametrize("ranks", [None, (10, 7, 7), (None, 4, 4), (12, 3, 5), (4, 2, 2)])
def test_tsm_and_mtsm_match_tensorly(ranks):
    A = _features(B=3, C=64, H=7, W=7, seed=4)
    full = {None: (49, 7, 7), (None, 4, 4): (16, 4, 4)}.get(ranks, ranks)
    ours_tsm = tsmlib.tsm(A, ranks, tol=0.0, n_iter_max=30)
    ours_mtsm = tsmlib.mtsm(A, ranks, tol=0.0, n_iter_max=30)
    for b in range(3):
        ref_tsm, ref_mtsm = _tensorly_maps(A[b], full)
        np.testing.assert_allclose(ours_tsm[b].numpy(), ref_tsm, atol=1e-7)
        np.testing.assert_allclose(ours_mtsm[b].numpy(), ref_mtsm, atol=1e-7)


# ---------------------------------------------------------------- consistency


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_batch_equals_image_by_image(method):
    A = _features(B=4, dtype=torch.float32, seed=5)
    batch = method(A)
    for b in range(4):
        torch.testing.assert_close(method(A[b : b + 1])[0], batch[b], atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_float32_matches_float64_and_is_deterministic(method):
    A64 = _features(B=3, C=256, seed=6)
    A32 = A64.float()
    m32 = method(A32)
    assert m32.dtype == torch.float32 and m32.shape == (3, 7, 7)
    torch.testing.assert_close(m32.double(), method(A64), atol=2e-4, rtol=0)
    torch.testing.assert_close(method(A32), m32, atol=0, rtol=0)


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_maps_are_in_unit_range_with_min_0_and_max_1(method):
    m = method(_features(B=3, seed=7))
    assert torch.all(m.amin(dim=(1, 2)) == 0) and torch.allclose(m.amax(dim=(1, 2)), torch.ones(3, dtype=m.dtype))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_cuda_equals_cpu(method):
    A = _features(B=8, C=512, dtype=torch.float32, seed=8)
    gpu = method(A.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), method(A), atol=1e-4, rtol=0)


def test_half_precision_is_promoted():
    m = tsmlib.tsm(_features(B=1, dtype=torch.float16))
    assert m.dtype == torch.float32 and torch.isfinite(m).all()


# ---------------------------------------------------------------- sign rule


def test_activation_sign_rule_is_invariant_to_the_solver_sign():
    g = torch.Generator().manual_seed(9)
    P = torch.randn(3, 4, 10, generator=g)
    ref = torch.randn(3, 10, generator=g)
    flips = torch.tensor([1.0, -1.0, -1.0, 1.0])[None, :, None]
    for rule in ("activation", "max"):
        torch.testing.assert_close(_orient(P, ref, rule), _orient(P * flips, ref, rule))
    oriented = _orient(P, ref, "activation")
    assert torch.all(torch.einsum("bkn,bn->bk", oriented, ref) >= 0)


def test_eigencam_sign_follows_total_activation():
    # object bright in every channel but one; the map must light up the object, not the background
    A = torch.full((1, 8, 6, 6), 0.1, dtype=torch.float64)
    A[:, :, 2:4, 2:4] = 2.0
    A[:, 0] = 0.5 - 0.3 * (A[:, 1] > 1)  # one anti-correlated channel
    m = tsmlib.eigencam(A)[0]
    assert m[2:4, 2:4].min() > 0.99 and m.sum() == pytest.approx(4.0, abs=1e-6)


# ---------------------------------------------------------------- combination options


def test_combine_components_by_hand():
    # two components on a 1x3 strip, weights 3 and 1
    P = torch.tensor([[[[0.0, 1.0, 2.0]], [[-2.0, 0.0, 0.0]]]])
    comps = Components(maps=P, weights=torch.tensor([[3.0, 1.0]]))
    # abs + per-component minmax: [0, .5, 1] and [1, 0, 0]; sigma-weighted mean: [1/4, 3/8, 3/4]
    torch.testing.assert_close(tsmlib.combine_components(comps), torch.tensor([[[0.25, 0.375, 0.75]]]))
    # uniform weights: [1/2, 1/4, 1/2]
    torch.testing.assert_close(tsmlib.combine_components(comps, weighting="uniform"), torch.tensor([[[0.5, 0.25, 0.5]]]))
    # sigma^2: (9*[0,.5,1] + [1,0,0]) / 10
    torch.testing.assert_close(tsmlib.combine_components(comps, weighting="sigma2"), torch.tensor([[[0.1, 0.45, 0.9]]]))
    # relu: second component becomes all zero -> normalised to zeros
    torch.testing.assert_close(tsmlib.combine_components(comps, transform="relu"), torch.tensor([[[0.0, 0.375, 0.75]]]))
    # no per-component normalisation: (3*[0,1,2] + [2,0,0]) / 4
    torch.testing.assert_close(
        tsmlib.combine_components(comps, normalize_components=False), torch.tensor([[[0.5, 0.75, 1.5]]])
    )
    # k=1 keeps the first component only
    torch.testing.assert_close(tsmlib.combine_components(comps, k=1), torch.tensor([[[0.0, 0.5, 1.0]]]))


def test_mtsm_with_k1_equals_tsm():
    A = _features(B=3, seed=10)
    torch.testing.assert_close(tsmlib.mtsm(A, k=1), tsmlib.tsm(A))


def test_multivec_eigencam_with_k1_abs_vs_eigencam_relu():
    A = _features(B=2, seed=11)
    one = tsmlib.multivec_eigencam(A, k=1, transform="relu")
    torch.testing.assert_close(one, tsmlib.eigencam(A))


@pytest.mark.parametrize("kwargs,match", [({"k": 0}, "out of range"), ({"k": 50}, "out of range"),
                                          ({"weighting": "softmax"}, "weighting"), ({"transform": "square"}, "transform")])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tsmlib.mtsm(_features(B=1), **kwargs)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_nan_raises_by_default_and_zero_policy_replaces(method):
    A = _features(B=2)
    A[1, 3, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        method(A)
    out = method(A, nan_policy="zero")
    clean = A.clone()
    clean[1, 3, 2, 2] = 0
    torch.testing.assert_close(out, method(clean))
    A[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/Inf"):
        method(A)


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", [0.0, 3.7])
def test_zero_and_constant_activations_give_zero_maps(method, value):
    A = torch.full((2, 32, 7, 7), value)
    m = method(A)
    assert torch.all(m == 0)
    assert torch.isfinite(method(A, normalize=False)).all()


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_one_by_one_spatial_map_is_defined(method):
    m = method(torch.rand(3, 16, 1, 1))
    assert m.shape == (3, 1, 1) and torch.all(m == 0)  # a single pixel has no contrast


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_fewer_channels_than_pixels(method):
    A = _features(B=2, C=3, H=6, W=6)
    m = method(A)
    assert m.shape == (2, 6, 6) and torch.isfinite(m).all() and m.max() == 1


def test_channel_constant_but_spatially_varying_still_works():
    # every channel identical: rank 1, EigenCAM and TSM both give the pattern
    s = torch.arange(9.0).reshape(3, 3)
    A = s.expand(1, 5, 3, 3).clone()
    torch.testing.assert_close(tsmlib.tsm(A)[0], s / 8)


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_wrong_shapes_raise(method):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        method(torch.rand(8, 7, 7))
    with pytest.raises(ValueError, match="empty"):
        method(torch.rand(0, 8, 7, 7))
    with pytest.raises(TypeError):
        method(np.zeros((1, 8, 7, 7)))


def test_minmax_normalize_by_hand():
    m = torch.tensor([[[0.0, 2.0], [4.0, 1.0]], [[5.0, 5.0], [5.0, 5.0]]])
    torch.testing.assert_close(tsmlib.minmax_normalize(m), torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.0] * 2] * 2]))
    with pytest.raises(ValueError, match="NaN"):
        tsmlib.minmax_normalize(torch.tensor([[[float("nan"), 1.0]]]))


def test_upsample_bilinear_matches_opencv_convention():
    cv2 = pytest.importorskip("cv2")
    m = torch.rand(2, 7, 7)
    up = tsmlib.upsample(m, (224, 224))
    ref = cv2.resize(m[0].numpy(), (224, 224))
    np.testing.assert_allclose(up[0].numpy(), ref, atol=1e-5)
    assert tsmlib.upsample(m, 7) is m
    with pytest.raises(ValueError):
        tsmlib.upsample(torch.rand(7, 7), 14)


# ---------------------------------------------------------------- audit (issue 10)


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_huge_float32_activations_give_the_map_of_the_scaled_down_input(method):
    # RMS ~1e20: the squares overflow float32; the map must not silently become all-zero
    A = _features(B=2, C=48, dtype=torch.float32, seed=3)
    small = method(A)
    big = method(A * 1e20)
    assert small.amax() == 1.0
    torch.testing.assert_close(big, small, atol=1e-4, rtol=0)
    A[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/Inf"):
        method(A * 1e20)


@pytest.mark.parametrize("weighting", ["sigma", "sigma2", "uniform"])
def test_huge_activations_with_truncated_ranks_and_every_weighting(weighting):
    A = _features(B=2, C=48, dtype=torch.float32, seed=4)
    for kwargs in ({"ranks": (6, 4, 4)}, {}):
        small = tsmlib.mtsm(A, weighting=weighting, **kwargs)
        torch.testing.assert_close(tsmlib.mtsm(A * 1e20, weighting=weighting, **kwargs), small, atol=1e-4, rtol=0)
    torch.testing.assert_close(tsmlib.multivec_eigencam(A * 1e20, weighting=weighting),
                               tsmlib.multivec_eigencam(A, weighting=weighting), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_maps_are_detached_from_the_autograd_graph(method):
    A = _features(B=2).requires_grad_(True)
    out = method(A)
    assert not out.requires_grad and out.grad_fn is None
    torch.testing.assert_close(out, method(A.detach()), atol=0, rtol=0)


@pytest.mark.parametrize("components", [tsmlib.eigencam_components, tsmlib.tsm_components])
def test_components_are_detached_and_combination_too(components):
    A = _features(B=2).requires_grad_(True)
    comps = components(A)
    assert not comps.maps.requires_grad and not comps.weights.requires_grad
    with_grad = Components(comps.maps.clone().requires_grad_(True), comps.weights.clone().requires_grad_(True))
    assert not tsmlib.combine_components(with_grad).requires_grad


def test_numpy_integer_k_and_ranks_are_accepted():
    A = _features(B=2)
    torch.testing.assert_close(tsmlib.mtsm(A, (np.int64(6), 4, np.int32(4)), k=np.int64(3)),
                               tsmlib.mtsm(A, (6, 4, 4), k=3), atol=0, rtol=0)
    torch.testing.assert_close(tsmlib.multivec_eigencam(A, k=np.int16(2)), tsmlib.multivec_eigencam(A, k=2), atol=0, rtol=0)
    comps = tsmlib.eigencam_components(A)
    torch.testing.assert_close(tsmlib.combine_components(comps, k=np.int64(2)), tsmlib.combine_components(comps, k=2))


@pytest.mark.parametrize(
    "call,exc,match",
    [(lambda A: tsmlib.mtsm(A, k=True), TypeError, "k must be an int or None"),
     (lambda A: tsmlib.mtsm(A, k=2.0), TypeError, "k must be an int or None"),
     (lambda A: tsmlib.mtsm(A, ranks=5), TypeError, r"ranks must be a sequence \(R1, R2, R3\)"),
     (lambda A: tsmlib.tsm(A, (6, 4, 4), n_iter_max=-1), ValueError, "n_iter_max=-1 is out of range"),
     (lambda A: tsmlib.mtsm(A, n_iter_max=-1), ValueError, "n_iter_max=-1 is out of range"),
     (lambda A: tsmlib.tsm(A, tol=-1.0), ValueError, "tol must be a finite number >= 0"),
     (lambda A: tsmlib.eigencam(A, precision="bogus"), ValueError, "precision must be one of 'double', 'native'"),
     (lambda A: tsmlib.tsm(A, precision="bogus"), ValueError, "precision must be one of 'double', 'native'"),
     (lambda A: tsmlib.eigencam(A, sign="positive"), ValueError, "sign must be one of 'activation', 'max', 'none'"),
     (lambda A: tsmlib.combine_components(tsmlib.eigencam_components(A), k=np.int64(0)), ValueError, "k=0 is out of range"),
     (lambda A: tsmlib.combine_components(tsmlib.eigencam_components(A), weighting="max"), ValueError,
      "weighting must be one of 'sigma', 'sigma2', 'uniform'")],
)
def test_bad_arguments_raise_clearly(call, exc, match):
    with pytest.raises(exc, match=match):
        call(_features(B=1))


# ---------------------------------------------------------------- iterative eigensolver (issue 13)


def _near_degenerate(B=3, C=48, H=6, W=6):
    """Features whose two leading channel directions carry equal energy (sigma_1 ~ sigma_2)."""
    g = torch.Generator().manual_seed(5)
    spatial = torch.linalg.qr(torch.randn(B, H * W, 2, generator=g, dtype=torch.float64)).Q
    mix = torch.linalg.qr(torch.randn(B, C, 2, generator=g, dtype=torch.float64)).Q
    F = 10 * mix @ torch.diag_embed(torch.tensor([1.0, 1.0 - 1e-9]).expand(B, 2).double()) @ spatial.mT
    return (F + 1e-3 * torch.randn(B, C, H * W, generator=g, dtype=torch.float64)).reshape(B, C, H, W)


@pytest.mark.parametrize("inputs", ["features", "random", "near_degenerate", "fewer_channels"])
@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_iterative_solver_gives_the_eigh_maps(method, inputs):
    # default ("gram": iteration for the single-vector methods) and forced "gram-iter" (the CUDA
    # default) against "gram-eigh": 1e-10 max abs on the normalised maps in float64, 1e-5 in float32
    A = {
        "features": lambda: _features(B=4, C=64, H=6, W=6),
        "random": lambda: torch.relu(torch.randn(4, 64, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)),
        "near_degenerate": _near_degenerate,
        "fewer_channels": lambda: _features(B=3, C=40, H=8, W=8),
    }[inputs]()
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        Ad = A.to(dtype)
        ref = method(Ad, solver="gram-eigh")
        for solver in ("gram", "gram-iter"):
            assert (method(Ad, solver=solver) - ref).abs().max() <= tol, (solver, dtype)
