"""sMPRT and eMPRT (tsmlib.evaluation.sanity) against Quantus's definitions.

Quantus is not installed here (quantus 0.6.0 pulls in opencv-python, which clashes with the
opencv-python-headless that grad-cam uses), so the references below re-derive its formulas, from
``quantus/metrics/randomisation/smooth_mprt.py`` (``SmoothMPRT.explain_smooth_batch`` /
``explain_smooth_batch_numpy``, ``evaluate_instance``) and ``efficient_mprt.py`` (``EfficientMPRT.__call__``:
``(b - a) / a`` of the complexities) with ``quantus/functions/complexity_func.py::discrete_entropy``
(``np.histogram(a, bins=n_bins)``, ``scipy.stats.entropy``) and ``similarity_func.py::correlation_spearman``
(``scipy.stats.spearmanr``). Both sides use the same randomised model (``sanity.randomised_models``) and the
same noise draws, so the values must agree to float precision.
"""

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn as nn

from tsmlib.evaluation import sanity as SC


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def activation_map(model, x, layer, targets):
    """A weight-dependent method: the channel sum of the second conv's ReLU output, min-max normalised."""
    with torch.no_grad():
        a = model[:4](x).sum(1)
    lo, hi = a.flatten(1).min(1).values[:, None, None], a.flatten(1).max(1).values[:, None, None]
    return (a - lo) / (hi - lo).clamp(min=1e-12)


def _x():
    return torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------- eMPRT
def test_discrete_entropy_matches_numpy_histogram_and_scipy():
    maps = torch.rand(3, 9, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    maps[1] = maps[1] ** 4  # a skewed one
    for n_bins in (100, 7):
        ref = [scipy.stats.entropy(np.histogram(m.numpy().ravel(), bins=n_bins)[0]) for m in maps]
        np.testing.assert_allclose(SC.discrete_entropy(maps, n_bins).numpy(), ref, rtol=1e-12)
    # hand cases: two equal halves -> log 2; a constant map -> 0
    half = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert SC.discrete_entropy(half).item() == pytest.approx(np.log(2))
    assert SC.discrete_entropy(torch.full((1, 4), 0.3)).item() == 0.0
    with pytest.raises(ValueError, match="n_bins"):
        SC.discrete_entropy(half, 0)


def test_emprt_matches_quantus_formula():
    model, x = _net(), _x()
    df = SC.efficient_model_randomization(model, x, {"act": activation_map}, "2", seed=3)
    # the reference: the same two model states, Quantus's complexity and its relative rise
    blocks = SC.parameterised_modules_in_call_order(model, x)[::-1]
    maps = {}
    for step, _, net in SC.randomised_models(model, blocks, scheme="cascading", seed=3):
        if step in (0, len(blocks)):
            maps[step] = activation_map(net, x, None, None).double().numpy()
    for i in range(2):
        a = scipy.stats.entropy(np.histogram(maps[0][i], bins=100)[0])
        b = scipy.stats.entropy(np.histogram(maps[len(blocks)][i], bins=100)[0])
        row = df[df.image == i].iloc[0]
        assert row["complexity_trained"] == pytest.approx(a, rel=1e-12)
        assert row["complexity_random"] == pytest.approx(b, rel=1e-12)
        assert row["emprt"] == pytest.approx((b - a) / a, rel=1e-12)
    assert list(df.columns) == ["image", "method", "complexity_trained", "complexity_random", "emprt"]


def test_emprt_of_a_constant_map_is_nan():
    def flat(model, x, layer, targets):
        return torch.zeros(x.shape[0], *x.shape[-2:])

    df = SC.efficient_model_randomization(_net(), _x(), {"flat": flat}, "2")
    assert df["emprt"].isna().all() and (df["complexity_trained"] == 0).all()


# ---------------------------------------------------------------------------------------------- sMPRT
def test_smooth_noise_rule():
    x = torch.zeros(2, 3, 4, 4)
    x[0] = 2.0
    x[0, 0, 0, 0] = 0.0  # image 0 spans [0, 2], image 1 is constant (range 0: no noise)
    eps = SC.smooth_noise(x, 4, 0.1, seed=5)
    assert eps.shape == (4, 2, 3, 4, 4) and bool((eps[-1] == 0).all()) and bool((eps[:, 1] == 0).all())
    g = torch.randn((4, 2, 3, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(eps[:-1, 0], 0.2 * g[:-1, 0])


def test_smprt_matches_quantus_formula():
    model, x = _net(), _x()
    n, noise, blocks = 4, 0.1, ["6", "2"]
    df = SC.smooth_model_randomization(model, x, {"act": activation_map}, "2", n_samples=n, noise=noise,
                                       noise_seed=7, blocks=blocks, seed=3, similarities=["spearman"])
    eps = SC.smooth_noise(x, n, noise, seed=7).float()

    def quantus_smooth(net):  # SmoothMPRT.explain_smooth_batch: mean over the copies, normalise_by_max, abs
        a = sum(activation_map(net, x + e, None, None).double() for e in eps) / n
        a = a / a.flatten(1).abs().max(1).values[:, None, None]
        return a.abs().numpy()

    reference = None
    for step, _, net in SC.randomised_models(model, blocks, scheme="cascading", seed=3):
        a = quantus_smooth(net)
        reference = a if reference is None else reference
        for i in range(2):
            rho = scipy.stats.spearmanr(a[i].ravel(), reference[i].ravel())[0]
            got = df[(df.step == step) & (df.image == i)]["value"].item()
            assert got == pytest.approx(rho, abs=1e-10)
    assert set(df.step) == {0, 1, 2}


def test_smoothing_changes_the_maps_and_one_sample_is_plain_mprt():
    model, x = _net(), _x()
    kw = dict(blocks=["6", "2"], seed=3, similarities=["spearman"])
    plain = SC.model_randomization(model, x, {"act": activation_map}, "2", **kw)
    one = SC.smooth_model_randomization(model, x, {"act": activation_map}, "2", n_samples=1, **kw)
    np.testing.assert_allclose(one["value"], plain["value"], atol=1e-12)  # the last copy is noise-free
    smooth = SC.smooth_model_randomization(model, x, {"act": activation_map}, "2", n_samples=3, noise=0.3, **kw)
    assert not np.allclose(smooth["value"], plain["value"])


def test_smprt_bad_inputs():
    with pytest.raises(ValueError, match="n_samples"):
        SC.smooth_model_randomization(_net(), _x(), {"act": activation_map}, "2", n_samples=0)
    with pytest.raises(ValueError, match="noise"):
        SC.smooth_model_randomization(_net(), _x(), {"act": activation_map}, "2", noise=-1)
    with pytest.raises(ValueError, match="block"):
        SC.efficient_model_randomization(_net(), _x(), {"act": activation_map}, "2", blocks=[])
