"""Cascading randomisation: Spearman/SSIM against scipy/skimage, and the check catches a weight-free map."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tsmlib.evaluation.sanity import (
    average_ranks,
    cascading_randomization,
    parameterised_modules_in_call_order,
    sanity_summary,
    spearman,
    ssim,
)


def test_average_ranks_and_spearman_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    a = torch.tensor([[3.0, 1.0, 3.0, 2.0, 5.0, 1.0]])
    assert average_ranks(a)[0].tolist() == stats.rankdata(a[0].numpy()).tolist()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (3, 5, 5), generator=g).double()  # many ties
    y = x + torch.randint(0, 3, (3, 5, 5), generator=g)
    ours = spearman(x, y)
    ref = [stats.spearmanr(x[i].ravel(), y[i].ravel()).statistic for i in range(3)]
    assert np.allclose(ours.numpy(), ref)
    assert spearman(x, -x).tolist() == pytest.approx([-1.0] * 3)
    # a constant map has no ranking: NaN, not a division by zero
    assert torch.isnan(spearman(torch.ones(1, 4, 4), torch.rand(1, 4, 4))).all()
    with pytest.raises(ValueError, match="same shape"):
        spearman(torch.rand(1, 4, 4), torch.rand(1, 5, 5))


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(2, 32, 32, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(a, b)
    ref = [metrics.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False) for i in range(2)]
    assert np.allclose(ours.numpy(), ref, atol=1e-6)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def channel_mean_cam(model, x, layer, targets):
    """A real (label-free) CAM: channel mean of the target layer's activations, min-max normalised."""
    with torch.no_grad():
        A = model.get_submodule(layer)(x)  # "features" is the whole trunk here
    m = A.mean(1, keepdim=True)
    m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = m.flatten(1).min(1).values, m.flatten(1).max(1).values
    return (m - lo[:, None, None]) / (hi - lo).clamp(min=1e-12)[:, None, None]


def input_edge_detector(model, x, layer, targets):
    """Not an explanation: gradient magnitude of the input's grey levels; ignores the model."""
    grey = x.mean(1, keepdim=True)
    gx = grey[..., :, 1:] - grey[..., :, :-1]
    gy = grey[..., 1:, :] - grey[..., :-1, :]
    e = F.pad(gx.abs(), (0, 1)) + F.pad(gy.abs(), (0, 0, 0, 1))
    e = e[:, 0]
    return e / e.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]


def test_call_order_is_forward_order():
    model = SmallConvNet().eval()
    order = parameterised_modules_in_call_order(model, torch.rand(1, 3, 8, 8))
    assert order == ["features.0", "features.2", "features.3", "features.5", "head"]
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_sanity_check_flags_edge_detector_and_passes_a_cam():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # images with structure: smooth blobs plus noise
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    blob = torch.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) / 0.1)
    x = (0.6 * blob[None, None] + 0.4 * torch.rand(4, 3, 16, 16)).clamp(0, 1)
    res = cascading_randomization(model, x, [channel_mean_cam, input_edge_detector], "features", seed=0)
    # the trained model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(res["layer_randomized"]) == {"(none)", "head", "features.5", "features.3", "features.2", "features.0"}
    assert res["step"].max() == 5
    summary = sanity_summary(res)
    assert bool(summary.loc["input_edge_detector", "weight_independent"])
    assert summary.loc["input_edge_detector", "final_similarity"] == pytest.approx(1.0)
    assert not bool(summary.loc["channel_mean_cam", "weight_independent"])
    # randomising only the head (above the target layer) leaves a label-free CAM unchanged: step 1 is 1.0
    step1 = res[(res.step == 1) & (res.method == "channel_mean_cam") & (res.similarity == "spearman")]
    assert step1["value"].to_numpy() == pytest.approx(1.0)
    # deterministic
    again = cascading_randomization(model, x, [channel_mean_cam], "features", seed=0)
    mine = res[res.method == "channel_mean_cam"].reset_index(drop=True)
    assert np.allclose(again["value"].to_numpy(), mine["value"].to_numpy(), equal_nan=True)


def test_sanity_bad_inputs():
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="similarity"):
        cascading_randomization(model, x, [channel_mean_cam], "features", similarities=("pearson",))

    def wrong_size(model, x, layer, targets):
        return torch.rand(x.shape[0], 4, 4)

    with pytest.raises(ValueError, match="expected"):
        cascading_randomization(model, x, [wrong_size], "features")


def test_registry_cams_pass_the_sanity_check():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 16, 16)
    res = cascading_randomization(model, x, ["lafam", "gradcam"], "features", similarities=("spearman",), seed=0)
    summary = sanity_summary(res)
    assert not summary["weight_independent"].any(), summary


def test_blocks_randomise_groups_of_modules():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 16, 16)
    res = cascading_randomization(model, x, [channel_mean_cam], "features", blocks=["head", "features"],
                                  similarities=("spearman",))
    assert res.groupby("step")["layer_randomized"].first().tolist() == ["(none)", "head", "features"]
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        cascading_randomization(model, x, [channel_mean_cam], "features", blocks=["nope"])
