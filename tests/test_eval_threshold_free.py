"""Threshold-free mask metrics (IoU AUC, relevance mass and rank accuracy) and the yardstick maps.

Every expected value is worked out by hand in the comments, or is a closed form stated in the docstrings.
"""

import math

import numpy as np
import pytest
import torch

import tsmlib
from tsmlib.evaluation import metrics as M
from tsmlib.yardsticks import CENTRE_PRIOR_SIGMA, centre_prior_map, whole_image_map

nan = float("nan")

# a 2 x 2 map and mask used by several tests:  S = [[0.9, 0.1],   mask = [[1, 0],
#                                                   [0.4, 0.0]]           [1, 0]]
S22 = torch.tensor([[[0.9, 0.1], [0.4, 0.0]]])
M22 = torch.tensor([[[1, 0], [1, 0]]], dtype=torch.uint8)


# -------------------------------------------------------------------------------- relevance mass
def test_relevance_mass_by_hand():
    # inside the mask 0.9 + 0.4 = 1.3, in all 1.4
    assert torch.allclose(M.relevance_mass_accuracy(S22, M22), torch.tensor([1.3 / 1.4]))
    # a void pixel leaves both sums: void the 0.1 -> 1.3 / 1.3
    m = M22.clone()
    m[0, 0, 1] = M.VOID
    assert torch.allclose(M.relevance_mass_accuracy(S22, m), torch.tensor([1.0]))


def test_relevance_mass_counts_only_positive_relevance():
    # negative values count as 0: [[0.9, -5], [0.4, 0.1]] -> 1.3 / 1.4, as if -5 were 0
    S = torch.tensor([[[0.9, -5.0], [0.4, 0.1]]])
    assert torch.allclose(M.relevance_mass_accuracy(S, M22), torch.tensor([1.3 / 1.4]))


def test_relevance_mass_equals_energy_pointing_game_on_nonnegative_maps():
    g = torch.Generator().manual_seed(0)
    S = torch.rand(5, 7, 6, generator=g)
    mask = (torch.rand(5, 7, 6, generator=g) > 0.6).to(torch.uint8)
    mask[:, 0, 0] = 1  # every mask has foreground
    assert torch.allclose(M.relevance_mass_accuracy(S, mask), M.energy_pointing_game(S, mask))


# -------------------------------------------------------------------------------- relevance rank
def test_relevance_rank_by_hand():
    # K = 2 foreground pixels; the two largest values 0.9 and 0.4 are both in the mask -> 1
    assert torch.allclose(M.relevance_rank_accuracy(S22, M22), torch.tensor([1.0]))
    # swap 0.4 and 0.1: the top 2 are 0.9 (in) and 0.4 (out) -> 1/2
    S = torch.tensor([[[0.9, 0.4], [0.1, 0.0]]])
    assert torch.allclose(M.relevance_rank_accuracy(S, M22), torch.tensor([0.5]))
    # 3 x 1 image, mask = first pixel (K = 1), map [0.2, 0.7, 0.1]: the top pixel is out -> 0
    S = torch.tensor([[[0.2], [0.7], [0.1]]])
    m = torch.tensor([[[1], [0], [0]]])
    assert torch.allclose(M.relevance_rank_accuracy(S, m), torch.tensor([0.0]))


def test_relevance_rank_shares_ties_evenly():
    # map [[1, 0.5], [0.5, 0.5]], mask [[1, 0], [1, 0]] (K = 2): the top-2 are 1 (in) and one of three tied
    # 0.5's, one of which is in the mask: 1 + 1 * (1/3) hits -> (4/3) / 2 = 2/3
    S = torch.tensor([[[1.0, 0.5], [0.5, 0.5]]])
    assert torch.allclose(M.relevance_rank_accuracy(S, M22), torch.tensor([2 / 3]))
    # raster order would give 1/2 (the first tie, the 0.5 at (0, 1), is out): not what we compute
    # constant map: the chance level, the mask's share of the valid pixels (2 of 4)
    assert torch.allclose(M.relevance_rank_accuracy(torch.full((1, 2, 2), 0.3), M22), torch.tensor([0.5]))


def test_relevance_rank_ignores_void_pixels():
    # void the 0.9 (a foreground pixel): K = 1 (the 0.4), valid values 0.1, 0.4, 0.0 -> the top one is 0.4 -> 1
    m = M22.clone()
    m[0, 0, 0] = M.VOID
    assert torch.allclose(M.relevance_rank_accuracy(S22, m), torch.tensor([1.0]))
    # void the 0.1 instead, and make it huge: a void pixel never enters the top K
    S = S22.clone()
    S[0, 0, 1] = 1.0
    m = M22.clone()
    m[0, 0, 1] = M.VOID
    assert torch.allclose(M.relevance_rank_accuracy(S, m), torch.tensor([1.0]))


def test_relevance_rank_matches_a_direct_sort_without_ties():
    g = torch.Generator().manual_seed(1)
    S = torch.rand(4, 9, 9, generator=g, dtype=torch.float64)  # continuous: no ties
    mask = (torch.rand(4, 9, 9, generator=g) > 0.7).to(torch.uint8)
    mask[:, 4, 4] = 1
    got = M.relevance_rank_accuracy(S, mask)
    for b in range(4):
        fg = mask[b].flatten().numpy() > 0
        k = int(fg.sum())
        top = np.argsort(-S[b].flatten().numpy(), kind="stable")[:k]
        assert math.isclose(float(got[b]), fg[top].mean(), rel_tol=1e-12)


# ----------------------------------------------------------------------------------------- IoU AUC
def test_iou_auc_by_hand():
    # IoU at t: t = 0 -> 2/4; 0 < t <= 0.1 -> 2/3; 0.1 < t <= 0.4 -> 2/2; 0.4 < t <= 0.9 -> 1/2; t > 0.9 -> 0.
    # On 0, 0.05, ..., 1 (trapezoid, width 0.05): (0.5/2 + 2 * 2/3 + 6 * 1 + 10 * 0.5 + 0 + 0/2) / 20
    want = (0.25 + 4 / 3 + 6 + 5) / 20
    assert torch.allclose(M.iou_auc(S22, M22), torch.tensor([want]))
    # on three thresholds 0, 0.5, 1: IoU 0.5, 0.5, 0 -> (0.5 + 0.5) / 2 * 0.5 + (0.5 + 0) / 2 * 0.5 = 0.375
    assert torch.allclose(M.iou_auc(S22, M22, [0.0, 0.5, 1.0]), torch.tensor([0.375]))


def test_iou_auc_matches_scikit_learn():
    from sklearn.metrics import jaccard_score

    g = torch.Generator().manual_seed(2)
    S = torch.rand(3, 8, 8, generator=g, dtype=torch.float64)
    mask = (torch.rand(3, 8, 8, generator=g) > 0.5).to(torch.uint8)
    t = M.default_thresholds().numpy()
    got = M.iou_auc(S, mask)
    for b in range(3):
        y = mask[b].flatten().numpy() > 0
        ious = [jaccard_score(y, S[b].flatten().numpy() >= th, zero_division=0) for th in t]
        assert math.isclose(float(got[b]), np.trapezoid(ious, t), rel_tol=1e-9)


def test_iou_auc_bad_thresholds():
    for bad in ([0.5], [0.0, 0.5, 0.4], [-0.1, 1.0], [0.0, 1.2]):
        with pytest.raises(ValueError, match="increasing thresholds"):
            M.iou_auc(S22, M22, bad)


# ------------------------------------------------------------------------------ closed forms, NaN
@pytest.mark.parametrize("fn", [M.iou_auc, M.relevance_mass_accuracy, M.relevance_rank_accuracy])
def test_perfect_map_scores_one(fn):
    # the binary map equal to the mask: IoU 1 at every threshold t > 0 and 1/2 at t = 0 (2 of 4 pixels)...
    perfect = M22.to(torch.float32)
    value = float(fn(perfect, M22)[0])
    if fn is M.iou_auc:
        # ... so the AUC on 0, 0.05, ..., 1 is 1 - (1 - 1/2) * 0.05 / 2
        assert math.isclose(value, 1 - 0.5 * 0.05 / 2, rel_tol=1e-6)
    else:
        assert value == 1.0


@pytest.mark.parametrize("fn", [M.iou_auc, M.relevance_mass_accuracy, M.relevance_rank_accuracy,
                                M.energy_pointing_game, M.iou])
def test_whole_image_map_scores_the_mask_fraction(fn):
    # 3 of 8 valid pixels are foreground (one more is void)
    mask = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, M.VOID]], [[1, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.uint8)
    ones = torch.ones(2, 2, 4)
    got = fn(ones, mask)
    assert torch.allclose(got, torch.tensor([3 / 7, 1 / 8]))
    assert torch.allclose(M.mse(ones, mask), 1 - torch.tensor([3 / 7, 1 / 8]))


@pytest.mark.parametrize("fn", [M.iou_auc, M.relevance_mass_accuracy, M.relevance_rank_accuracy])
def test_empty_mask_is_nan(fn):
    empty = torch.zeros(1, 2, 2, dtype=torch.uint8)
    assert torch.isnan(fn(S22, empty)).all()
    all_void = torch.full((1, 2, 2), M.VOID, dtype=torch.uint8)
    assert torch.isnan(fn(S22, all_void)).all()
    # only the image without foreground is NaN in a batch
    both = torch.cat([M22, empty])
    out = fn(torch.cat([S22, S22]), both)
    assert not torch.isnan(out[0]) and torch.isnan(out[1])


def test_all_zero_map_is_nan_for_the_relevance_accuracies_and_zero_for_iou_auc():
    zero = torch.zeros(1, 2, 2)
    assert torch.isnan(M.relevance_mass_accuracy(zero, M22)).all()
    assert torch.isnan(M.relevance_rank_accuracy(zero, M22)).all()
    # the zero map is "all foreground" at t = 0 (IoU 1/2) and empty above (IoU 0): 0.5 * 0.05 / 2
    assert torch.allclose(M.iou_auc(zero, M22), torch.tensor([0.5 * 0.05 / 2]))


def test_threshold_free_metrics_bad_inputs():
    for fn in (M.iou_auc, M.relevance_mass_accuracy, M.relevance_rank_accuracy):
        with pytest.raises(ValueError, match="NaN/Inf"):
            fn(torch.tensor([[[nan, 0.1], [0.4, 0.0]]]), M22)
        with pytest.raises(ValueError, match="does not match"):
            fn(S22, torch.zeros(1, 3, 3, dtype=torch.uint8))
        with pytest.raises(ValueError, match=r"\(B, H, W\)"):
            fn(torch.rand(2, 2), M22)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.iou_auc(S22 * 2, M22)


def test_threshold_free_metrics_batched_equal_per_image():
    g = torch.Generator().manual_seed(3)
    S = torch.rand(4, 6, 6, generator=g)
    mask = (torch.rand(4, 6, 6, generator=g) > 0.5).to(torch.uint8)
    mask[1] = 0  # one empty mask
    for fn in (M.iou_auc, M.relevance_mass_accuracy, M.relevance_rank_accuracy):
        batched = fn(S, mask)
        single = torch.cat([fn(S[i:i + 1], mask[i:i + 1]) for i in range(4)])
        assert torch.allclose(batched, single, equal_nan=True)


# ----------------------------------------------------------------------------------- the runner
def test_runner_computes_the_new_metrics_by_name():
    from tsmlib.evaluation import evaluate, metric_info

    from _eval_helpers import MeanProbabilityModel

    model = MeanProbabilityModel()
    x = torch.rand(3, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.uint8)
    mask[2:6, 2:6] = 1  # 16 of 64 pixels
    records = [{"image": x, "label": 0, "mask": mask, "id": "a"}]
    names = ["iou_auc", "relevance_mass_accuracy", "relevance_rank_accuracy"]
    df = evaluate(model, records, ["whole-image", "centre-prior"], names, layer="conv", progress=False)
    assert set(df.metric) == set(names)
    whole = df[df.method == "whole-image"].set_index("metric")["value"]
    assert np.allclose(whole.to_numpy(float), 16 / 64)  # the closed form on every metric
    # the centre prior is largest on the centre 4 x 4: the top 16 pixels are the mask
    centre = df[df.method == "centre-prior"].set_index("metric")["value"]
    assert centre["relevance_rank_accuracy"] == 1.0
    assert 16 / 64 < centre["relevance_mass_accuracy"] < 1
    # yardsticks are references: their label_free column is None
    assert df["label_free"].isna().all()
    for name in names:
        assert metric_info(name).higher_is_better and metric_info(name).unit == ""


# ----------------------------------------------------------------------------------- the yardsticks
def test_yardstick_maps():
    x = torch.rand(2, 3, 6, 10)
    assert torch.equal(whole_image_map(x), torch.ones(2, 6, 10))
    c = centre_prior_map(x)
    assert c.shape == (2, 6, 10) and torch.equal(c[0], c[1])
    # pixel (2, 4): centre (2.5, 4.5) vs image centre (3, 5), d^2 = 0.5; sigma = 0.25 * 6 = 1.5
    assert math.isclose(float(c[0, 2, 4]), math.exp(-0.5 / (2 * 1.5 ** 2)), rel_tol=1e-6)
    assert torch.allclose(c, c.flip(-1)) and torch.allclose(c, c.flip(-2))  # symmetric about the centre
    assert CENTRE_PRIOR_SIGMA == 0.25
    with pytest.raises(ValueError, match="sigma"):
        centre_prior_map(x, sigma=0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        whole_image_map(torch.rand(3, 6, 6))


def test_yardsticks_run_by_name():
    x = torch.rand(2, 3, 8, 8)
    assert tsmlib.available_methods(family="yardstick") == ["whole-image", "centre-prior"]
    # the constant map is kept (min-max normalisation would make it zeros); no model or layer needed
    assert torch.equal(tsmlib.saliency(None, x, method="whole-image"), torch.ones(2, 8, 8))
    c = tsmlib.saliency(None, x, method="centre-prior")
    assert float(c.min()) == 0.0 and float(c.max()) == 1.0  # min-max normalised like every method
    assert torch.allclose(tsmlib.saliency(None, x, method="centre-prior", sigma=0.1, normalize=False),
                          centre_prior_map(x, 0.1))
    info = tsmlib.method_info("Whole_Image")  # the usual lookup rule
    assert info.family == "yardstick" and info.label_free and info.normalized
    assert not tsmlib.method_info("centre-prior").normalized
    assert tsmlib.method_info("tsm").family == "ours" and tsmlib.method_info("mtsm[k=3]").family == "variant"
    with pytest.raises(ValueError, match="family"):
        tsmlib.available_methods(family="nope")
    from tsmbook.names import display_name

    assert display_name("centre-prior") == "Centre prior" and display_name("whole-image") == "Whole image"


def test_yardsticks_need_no_model_in_saliency_maps_either():
    from tsmlib.cam import saliency_maps

    x = torch.rand(2, 3, 16, 16)
    res = saliency_maps(None, x, ["whole-image", "centre-prior"])
    assert res["whole-image"].output is None and res["whole-image"].maps.shape == (2, 16, 16)
    torch.testing.assert_close(res["centre-prior"].maps, tsmlib.saliency(None, x, "centre-prior"))
