"""ROAD (tsmlib.evaluation.road): hand-worked imputations, parity with pytorch-grad-cam, the runner entry."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from tsmlib.evaluation.road import noisy_linear_imputation, road, road_masks

gradcam_road = pytest.importorskip("pytorch_grad_cam.metrics.road")
from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,  # noqa: E402
                                                               RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget  # noqa: E402


def _setup(B=3, H=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                        nn.Linear(54, 4)).eval()
    x = torch.rand(B, 3, H, H, generator=g)
    S = torch.rand(B, H, H, generator=g)
    with torch.no_grad():
        target = net(x).argmax(1)

    def score(imgs, k):
        return torch.softmax(net(imgs), 1)[torch.arange(len(k)), target[k]]

    return net, x, S, target, score


def test_imputation_hand_cases():
    # a 1 x 3 strip with the middle removed: its in-image neighbours (weight 1/6 each) average to 0.5
    x = torch.tensor([[[[0.0, 7.0, 1.0]]]])
    out = noisy_linear_imputation(x, torch.tensor([[[False, True, False]]]), noise=0)
    assert out[0, 0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    # the centre of a 3 x 3 image: the weighted mean of its 8 neighbours (weights sum to 1)
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    w = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
    assert noisy_linear_imputation(x, removed, noise=0)[0, 0, 1, 1].item() == pytest.approx(float((w * x[0, 0]).sum()))
    # every pixel removed: nothing to interpolate from, the minimum-norm fill 0 (spsolve: singular)
    assert noisy_linear_imputation(torch.rand(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), noise=0).abs().max() == 0


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_imputation_hand_cases_hold_for_both_solvers(solver):
    x = torch.tensor([[[[0.0, 7.0, 1.0]]]])
    out = noisy_linear_imputation(x, torch.tensor([[[False, True, False]]]), noise=0, solver=solver)
    assert out[0, 0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    everything = torch.ones(1, 4, 4, dtype=torch.bool)
    assert noisy_linear_imputation(torch.rand(1, 3, 4, 4), everything, noise=0, solver=solver).abs().max() == 0


def test_direct_and_conjugate_gradient_solvers_agree():
    """The sparse LU solve (CPU default) and the batched CG (GPU default) solve one system: random masks at
    every percentile, plus an image with every pixel removed (nothing to interpolate from: 0)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, 24, 20, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(5, 1, 24, 20, generator=g), 5, 1, 2)[:, 0]
    morf, lerf = road_masks(smooth, [10, 50, 90])
    removed = torch.cat([morf, lerf], 1)[:, 0].clone()
    removed[4] = True
    direct = noisy_linear_imputation(x.double(), removed, noise=0, solver="direct")
    cg = noisy_linear_imputation(x.double(), removed, noise=0, solver="cg")
    assert torch.allclose(direct, cg, atol=1e-8)
    assert torch.equal(direct[0][:, ~removed[0]], x.double()[0][:, ~removed[0]])  # kept pixels untouched
    with pytest.raises(ValueError, match="solver"):
        noisy_linear_imputation(x, removed, solver="lsqr")


def test_road_masks_hand_case():
    S = (torch.arange(16.0) / 15).reshape(1, 4, 4)
    morf, lerf = road_masks(S, [50, 25])
    # 50th percentile of 0, 1/15, ..., 1 is 7.5/15: the 8 largest go (MoRF), the 8 smallest (LeRF)
    assert morf[0, 0].flatten().tolist() == [False] * 8 + [True] * 8
    assert lerf[0, 0].flatten().tolist() == [True] * 8 + [False] * 8
    # 25 % kept: 12 removed
    assert int(morf[0, 1].sum()) == 12 and int(lerf[0, 1].sum()) == 12
    with pytest.raises(ValueError, match="percentiles"):
        road_masks(S, [0])


@pytest.mark.parametrize("p", [10, 50, 90])
def test_road_curves_match_pytorch_grad_cam_without_noise(p):
    net, x, S, target, score = _setup()
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    ours = road(score, x, S, percentiles=[p], noise=0, return_curves=True)
    for cls, key in ((RemoveMostRelevantFirst, "morf_curve"), (RemoveLeastRelevantFirst, "lerf_curve")):
        theirs = PerturbationConfidenceMetric(cls(p, gradcam_road.NoisyLinearImputer(noise=0)))(
            x, S.numpy(), targets, net)
        np.testing.assert_allclose(ours[key][:, 0].numpy(), theirs, atol=1e-6)


def test_road_combined_matches_pytorch_grad_cam_with_the_same_noise(monkeypatch):
    net, x, S, target, score = _setup()
    percentiles = [20, 60]
    B, C, H, W = x.shape
    P = len(percentiles)
    # road() draws its noise on the CPU in one piece, (image, MoRF/LeRF, percentile) order; hand the same
    # values to pytorch-grad-cam, which draws randn_like(C, n_removed) per image in its own order
    draws = torch.randn((B * 2 * P, C, H, W), generator=torch.Generator().manual_seed(0))
    morf, lerf = road_masks(S, percentiles)
    queue = [draws[(b * 2 + kind) * P + i].reshape(C, -1)[:, (morf if kind == 0 else lerf)[b, i].flatten()]
             for kind in (1, 0) for i in range(P) for b in range(B)]  # ROADCombined: LeRF first

    def same_noise(t):
        nxt = queue.pop(0)
        assert nxt.shape == t.shape
        return nxt.to(t.dtype)

    monkeypatch.setattr(torch, "randn_like", same_noise)
    theirs = gradcam_road.ROADCombined(percentiles=percentiles)(
        x, S.numpy(), [ClassifierOutputSoftmaxTarget(int(t)) for t in target], net)
    monkeypatch.undo()
    assert not queue
    ours = road(score, x, S, percentiles=percentiles, noise=0.01, seed=0)
    np.testing.assert_allclose(ours["road"].numpy(), theirs, atol=1e-6)
    # the noise matters (a different seed gives other values) and the chunking does not
    assert not torch.allclose(road(score, x, S, percentiles=percentiles, seed=1)["road"], ours["road"], atol=1e-9)
    torch.testing.assert_close(road(score, x, S, percentiles=percentiles, chunk_size=5)["road"], ours["road"])


def test_road_bad_inputs():
    _, x, S, _, score = _setup(B=2, H=6)
    with pytest.raises(ValueError, match="do not match"):
        road(score, x, S[:1])
    with pytest.raises(ValueError, match="chunk_size"):
        road(score, x, S, chunk_size=0)
    with pytest.raises(ValueError, match="NaN"):
        road(score, x, torch.full_like(S, float("nan")))


def test_road_is_one_entry_of_the_runner_table():
    from tsmlib.evaluation import ALL_METRICS, METRICS, evaluate, metric_info

    net, x, S, target, score = _setup(B=2, H=8)

    def fixed(model, xs, layer, targets):
        return S[: xs.shape[0]]

    records = [{"image": x[i], "id": i} for i in range(2)]
    df = evaluate(net, records, {"fixed": fixed}, ["road", "average_drop"], layer="0", progress=False,
                  score_batch_size=64)
    assert METRICS["road"].kind == "perturbation" and "road" not in ALL_METRICS
    assert metric_info("road").higher_is_better
    got = df[df.metric == "road"].sort_values("image")["value"].to_numpy()
    np.testing.assert_allclose(got, road(score, x, S)["road"].numpy(), atol=1e-6)


def test_runner_imputes_at_the_configured_percentiles():
    from tsmlib.evaluation import evaluate

    net, x, S, target, score = _setup(B=2, H=8)
    records = [{"image": x[i], "id": i} for i in range(2)]
    df = evaluate(net, records, {"fixed": lambda model, xs, layer, targets: S[: xs.shape[0]]}, ["road"], layer="0",
                  progress=False, road_percentiles=[20, 50, 80])
    got = df.sort_values("image")["value"].to_numpy()
    np.testing.assert_allclose(got, road(score, x, S, percentiles=(20, 50, 80))["road"].numpy(), atol=1e-6)
    assert not np.allclose(got, road(score, x, S)["road"].numpy(), atol=1e-6)
    assert tuple(df.attrs["config"]["road_percentiles"]) == (20.0, 50.0, 80.0)  # in the cache key


def test_road_of_an_empty_batch():
    _, x, S, _, score = _setup(B=2, H=6)
    out = road(score, x[:0], S[:0], return_curves=True)
    assert out["road"].shape == (0,) and out["morf_curve"].shape == (0, 9)
