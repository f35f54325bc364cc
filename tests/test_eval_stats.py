"""tsmlib.evaluation.stats and the metric registry: hand-computed cases, exact enumerations, bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from tsmlib.evaluation import metric_registry as MI
from tsmlib.evaluation import stats as S


# ------------------------------------------------------------------------------------ metric table
def test_metric_directions_and_labels():
    assert not MI.higher_is_better("average_drop") and not MI.higher_is_better("mse")
    assert MI.higher_is_better("iou") and MI.higher_is_better("increase_in_confidence")
    assert MI.metric_info("average_drop").axis_label == "Average Drop (%)"
    assert MI.metric_label("average_drop") == "Average Drop (%, lower is better)"
    assert MI.metric_label("iou") == "mIoU (higher is better)"
    with pytest.raises(KeyError, match="unknown metric 'bogus'.*average_drop"):
        MI.metric_info("bogus")


def test_every_metric_the_runner_writes_has_an_entry():
    from tsmlib.evaluation.runner import ALL_METRICS

    assert set(ALL_METRICS) <= set(MI.METRICS)
    assert all(MI.METRICS[m].kind is not None for m in ALL_METRICS)
    assert MI.METRICS["similarity_drop"].kind is None  # a name for rows the runner does not compute


# -------------------------------------------------------------------------------- relative change
def test_relative_change_hand_cases():
    assert S.relative_change(30.0, 60.0, higher_is_better=False) == pytest.approx(0.5)   # AD halved
    assert S.relative_change(90.0, 60.0, higher_is_better=False) == pytest.approx(-0.5)
    assert S.relative_change(0.6, 0.4, higher_is_better=True) == pytest.approx(0.5)
    # a negative reference mean: the sign still says "better" (higher: -1 -> -0.5 is better)
    assert S.relative_change(-0.5, -1.0, higher_is_better=True) == pytest.approx(0.5)
    assert np.isnan(S.relative_change(1.0, 0.0, higher_is_better=True))
    np.testing.assert_allclose(S.relative_change([2.0, 1.0], [1.0, 2.0], True), [1.0, -0.5])


def test_paired_relative_change_of_a_constant_ratio_is_exact():
    # every image: the method's Average Drop is half the reference's -> every resample gives +50 %
    b = np.array([40.0, 60.0, 80.0, 20.0, 50.0])
    change, low, high = S.paired_relative_change(b / 2, b, higher_is_better=False, n_resamples=2000)
    assert change == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)


def test_paired_bootstrap_percentile_interval_matches_exact_enumeration():
    # n = 3 images: the 27 equally likely paired resamples give the exact bootstrap distribution
    a, b = np.array([1.0, 2.0, 6.0]), np.array([2.0, 2.0, 3.0])
    exact = [S.relative_change(a[list(i)].mean(), b[list(i)].mean(), True) for i in itertools.product(range(3), repeat=3)]
    exact = np.sort(exact)
    low, high = S.paired_relative_change(a, b, higher_is_better=True, n_resamples=40000, method="percentile",
                                         confidence=0.8)[1:]
    # the 10 % / 90 % quantiles of a 27-point distribution, up to resampling noise
    assert np.quantile(exact, 0.05) <= low <= np.quantile(exact, 0.2)
    assert np.quantile(exact, 0.8) <= high <= np.quantile(exact, 0.95)
    change = S.paired_relative_change(a, b, higher_is_better=True)[0]
    assert change == pytest.approx((3.0 - 7 / 3) / (7 / 3))


def test_paired_relative_change_edge_cases():
    nan3 = S.paired_relative_change([], [], higher_is_better=True)
    assert all(np.isnan(nan3))
    change, low, high = S.paired_relative_change([2.0], [1.0], higher_is_better=True)
    assert change == 1.0 and np.isnan(low) and np.isnan(high)
    assert S.paired_relative_change([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], higher_is_better=True) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="equal lengths"):
        S.paired_relative_change([1.0, 2.0], [1.0], higher_is_better=True)
    with pytest.raises(ValueError, match="NaN"):
        S.paired_relative_change([1.0, np.nan], [1.0, 2.0], higher_is_better=True)
    with pytest.raises(ValueError, match="confidence"):
        S.paired_relative_change([1.0, 2.0], [1.0, 2.0], higher_is_better=True, confidence=95)


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    a, b = rng.random(12), rng.random(12)
    first = S.paired_relative_change(a, b, higher_is_better=True, seed=3, n_resamples=500)
    assert first == S.paired_relative_change(a, b, higher_is_better=True, seed=3, n_resamples=500)
    assert first[1] < first[0] < first[2]


# -------------------------------------------------------------------------------------- tests, Holm
def test_wilcoxon_hand_case():
    # five positive differences: exact two-sided p = 2 / 2^5
    assert S.paired_test([2, 3, 4, 5, 6], [1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    assert S.paired_test([1, 2, 3], [1, 2, 3]) == 1.0
    assert np.isnan(S.paired_test([1.0], [0.0]))
    with pytest.raises(ValueError, match="'wilcoxon' or 't'"):
        S.paired_test([1, 2], [0, 1], test="sign")


def test_paired_t_hand_case():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3), df = 2
    t = 2 / (1 / np.sqrt(3))
    assert S.paired_test([2, 4, 6], [1, 2, 3], test="t") == pytest.approx(2 * sps.t.sf(t, 2))
    assert S.paired_test([2, 3, 4], [1, 2, 3], test="t") == 0.0  # constant difference


def test_holm_hand_case():
    reject, adjusted = S.holm([0.01, 0.04, 0.03, np.nan])
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(2 * 0.03, .) = 0.06, max(1 * 0.04, 0.06) = 0.06
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert reject.tolist() == [True, False, False, False]


def test_mean_ci():
    assert S.mean_ci([3.0] * 4) == (3.0, 3.0)
    assert all(np.isnan(S.mean_ci([])))
    lo, hi = S.mean_ci([1.0, 2.0, 3.0, 4.0, 10.0], n_resamples=2000)
    assert lo < 4.0 < hi
    with pytest.raises(ValueError, match="NaN"):
        S.mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="confidence must be in"):
        S.mean_ci([1.0, 2.0], confidence=95)
    assert all(np.isnan(S.mean_ci([3.0])))  # one value: no interval (stats.min_sample)
    # a wide sample has a wider interval than a narrow one
    rng = np.random.default_rng(0)
    lo1, hi1 = S.mean_ci(rng.normal(0, 1, 200), n_resamples=2000)
    lo2, hi2 = S.mean_ci(rng.normal(0, 5, 200), n_resamples=2000)
    assert hi2 - lo2 > 3 * (hi1 - lo1)
    # coverage roughly right: the interval of a large N(0, 1) sample holds 0 and has width ~ 2*1.96/sqrt(n)
    lo, hi = S.mean_ci(rng.normal(0, 1, 2000), n_resamples=2000)
    assert lo < 0.1 and hi > -0.1 and (hi - lo) == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.2)


# ---------------------------------------------------------------------------------- tidy tables
def _table():
    rows = []
    ad = {"a": [10.0, 20.0, 30.0, 40.0], "b": [20.0, 40.0, 60.0, 80.0]}
    iou = {"a": [0.5, 0.6, 0.7, np.nan], "b": [0.5, 0.5, 0.5, 0.5]}
    for model in ("m1", "m2"):
        for method in ("a", "b"):
            for i in range(4):
                rows.append({"model": model, "image": f"img{i}", "method": method, "metric": "average_drop",
                             "value": ad[method][i]})
                rows.append({"model": model, "image": f"img{i}", "method": method, "metric": "iou",
                             "value": iou[method][i]})
    return pd.DataFrame(rows)


def test_compare_on_the_tidy_table():
    out = S.compare(_table(), "a", "b", ["average_drop", "iou"], by=["model"], n_resamples=500)
    assert list(out.columns) == ["model"] + S.COMPARISON_COLUMNS and len(out) == 4
    ad = out[(out.model == "m1") & (out.metric == "average_drop")].iloc[0]
    assert ad.n == 4 and ad.relative_change == pytest.approx(0.5) and ad.mean_reference == 50.0
    iou = out[(out.model == "m1") & (out.metric == "iou")].iloc[0]
    assert iou.n == 3  # the image without a value for `a` is left out of the pair
    assert iou.relative_change == pytest.approx((0.6 - 0.5) / 0.5)
    missing = S.compare(_table(), "a", "nobody", ["iou"])
    assert missing.n.tolist() == [0] and np.isnan(missing.relative_change.iloc[0])


def test_compare_family_widens_intervals_and_corrects():
    fam = S.compare_family(_table(), [("a", "b")], ["average_drop", "iou"], by=["model"], alpha=0.05,
                           n_resamples=500)
    assert np.allclose(fam.confidence, 1 - 0.05 / 4)
    _, adjusted = S.holm(fam.p_value.to_numpy())
    np.testing.assert_allclose(fam.p_holm, adjusted)
    assert (fam[fam.metric == "average_drop"].outcome == "better").all()
    # 4 images with all-positive differences: Wilcoxon's smallest two-sided p is 1/8 -> not significant
    assert not fam.significant.any()
    with pytest.raises(ValueError, match="alpha"):
        S.compare_family(_table(), [("a", "b")], ["iou"], alpha=5)


def test_interval_outcome_reads_the_side_of_zero():
    from tsmlib.evaluation import interval_outcome

    out = interval_outcome([0.1, -0.5, -0.1, 0.0, np.nan], [0.3, -0.2, 0.2, 0.4, np.nan])
    assert out.tolist() == ["better", "worse", "undecided", "undecided", "undecided"]  # 0 inside: undecided
    assert interval_outcome(0.2, 0.3) == "better"  # scalars too


# ----------------------------------------------------------------------------- paired differences
def test_paired_difference_by_hand():
    a, b = np.array([0.5, 0.7, 0.9, 0.2]), np.array([0.4, 0.4, 0.5, 0.4])  # differences 0.1, 0.3, 0.4, -0.2
    out = S.paired_difference(a, b, n_resamples=999, seed=0)
    assert out["n"] == 4 and out["mean difference"] == pytest.approx(0.15)
    assert out["ci_low"] < 0.15 < out["ci_high"]
    assert (out["ci_low"], out["ci_high"]) == S.mean_ci(a - b, n_resamples=999, seed=0)
    # Wilcoxon, exact: ranks of |d| 1, 3, 4 positive and 2 negative, W- = 2; of the 16 sign patterns
    # 3 give W- <= 2 (sums 0, 1, 2), so the two-sided p = 2 * 3/16
    assert out["p_value"] == pytest.approx(0.375)
    assert out["p_value"] == pytest.approx(sps.wilcoxon(a, b).pvalue)


def test_paired_difference_degenerate_and_bad_inputs():
    same = S.paired_difference([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert same["mean difference"] == 0 and (same["ci_low"], same["ci_high"]) == (0, 0) and same["p_value"] == 1.0
    empty = S.paired_difference([], [])
    assert empty["n"] == 0 and np.isnan(empty["mean difference"]) and np.isnan(empty["p_value"])
    with pytest.raises(ValueError, match="equal lengths"):
        S.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="test must be"):
        S.paired_difference([1.0, 2.0], [0.0, 1.0], test="sign")


def test_row_correlation_closed_forms():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(S.row_correlation(x, 2 * x + 1), [1.0, 1.0])
    np.testing.assert_allclose(S.row_correlation(x, -x), [-1.0, -1.0])
    # (1, 0, -1) against (1, -2, 1): orthogonal after centring
    assert S.row_correlation([[1.0, 0.0, -1.0]], [[1.0, -2.0, 1.0]])[0] == pytest.approx(0.0)
    # trailing axes are flattened (maps (B, H, W)); matches scipy row by row
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4, 5)), rng.random((3, 4, 5))
    expected = [sps.pearsonr(a[i].ravel(), b[i].ravel())[0] for i in range(3)]
    np.testing.assert_allclose(S.row_correlation(a, b), expected, rtol=1e-12)
    # a constant row has no variation: 0, not NaN
    assert S.row_correlation([[1.0, 1.0, 1.0]], [[0.0, 1.0, 2.0]])[0] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        S.row_correlation(np.ones((2, 3)), np.ones((3, 2)))


def test_compare_to_references_and_beats_all():
    from _eval_helpers import yardstick_results
    from tsmlib.evaluation import beats_all_references, compare_to_references

    r = yardstick_results()
    table = compare_to_references(r, ["good", "same", "mixed"], ["whole-image", "centre-prior"], ["iou"], by=["model"],
                                  n_resamples=500)
    assert len(table) == 3 * 2 * 2  # methods x references x models, one family
    assert np.allclose(table["confidence"], 1 - 0.05 / 12)  # Bonferroni over the family of the metric
    beats = beats_all_references(table, by=["model"]).set_index(["model", "method"])
    assert beats.loc[("a", "good"), "beats"] and beats.loc[("b", "good"), "beats"]
    assert not beats.loc[("a", "same"), "beats"] and beats.loc[("a", "same"), "n_beaten"] == 1  # beats the centre only
    assert not beats.loc[("a", "mixed"), "beats"]
    assert (beats["n_references"] == 2).all()
    # the relative change of "good" over the whole image, by hand: +0.3 on a mean of 0.25 -> +120 %
    good = table[(table.method == "good") & (table.reference == "whole-image") & (table.model == "a")].iloc[0]
    assert np.isclose(good["relative_change"], 0.3 / 0.25)
