"""Edge cases of tsmlib.evaluation's statistics and verdicts found by the audit (scipy, statsmodels, hand-worked values).

Each test starts from the smallest input that showed the defect.
"""

import numpy as np
import pandas as pd
import pytest

from tsmlib.evaluation import stats as S
from tsmbook import verdicts as V


# ---------------------------------------------------------------------------------------- stats
def test_paired_test_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        S.paired_test([1.0, 2.0, np.nan], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        S.paired_test([1.0, 2.0, 3.0], [0.0, np.nan, 2.0], test="t")


def test_min_sample_rule():
    # the smallest n with n**-n < (1 - confidence) / 2
    assert S.min_sample(0.95) == 4     # 3**-3 = 0.037 > 0.025 > 4**-4 = 0.0039
    assert S.min_sample(0.8) == 3      # 2**-2 = 0.25 > 0.1 > 3**-3
    assert S.min_sample(0.999) == 5    # 4**-4 = 0.0039 > 0.0005 > 5**-5 = 0.00032
    with pytest.raises(ValueError, match="confidence"):
        S.min_sample(1.0)


def test_too_few_images_give_no_interval():
    # one value: no interval (was (v, v), read as "better")
    assert all(np.isnan(S.mean_ci([0.3])))
    # two equal differences: no interval (was (0.1, 0.1), read as "better")
    d = S.paired_difference([1.1, 2.1], [1.0, 2.0])
    assert d["mean difference"] == pytest.approx(0.1) and np.isnan(d["ci_low"]) and np.isnan(d["ci_high"])
    assert S.interval_outcome(d["ci_low"], d["ci_high"]) == "undecided"
    # the relative change agrees: a point estimate, no interval, below the minimum sample
    for n in (1, 2, 3):
        a, b = np.full(n, 2.0), np.full(n, 1.0)
        change, low, high = S.paired_relative_change(a, b, higher_is_better=True)
        assert change == 1.0 and np.isnan(low) and np.isnan(high)
        assert all(np.isnan(S.mean_ci(a - b)))
    # at the minimum sample both give an interval; equal values give a zero-width one
    a, b = np.full(4, 2.0), np.full(4, 1.0)
    assert S.paired_relative_change(a, b, higher_is_better=True)[1:] == (1.0, 1.0)
    assert S.mean_ci(a - b) == (1.0, 1.0)
    # a lower confidence needs fewer images (n = 3 at 80 %)
    assert np.isfinite(S.mean_ci([1.0, 2.0, 4.0], confidence=0.8)).all()


def test_percentile_fallback_with_zero_reference_resamples_is_nan():
    # the reference is 0 on two of four images: some resamples have a zero reference mean, where the
    # relative change is undefined. BCa and the percentile interval are then both NaN: not computable.
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 1.0, 2.0])
    change, low, high = S.paired_relative_change(a, b, higher_is_better=True, n_resamples=999)
    assert change == pytest.approx((2.5 - 0.75) / 0.75)
    assert np.isnan(low) and np.isnan(high)


# ------------------------------------------------------------------------------------- verdicts
def test_metric_outcomes_with_duplicate_index_labels():
    # two families joined without ignore_index: labels 0, 1, 0
    fam1 = pd.DataFrame({"method": ["tsm", "tsm"], "reference": ["eigencam"] * 2, "metric": ["mse", "iou"],
                         "ci_low": [0.2, 0.1], "ci_high": [0.4, 0.3]})
    fam2 = pd.DataFrame({"method": ["tsm"], "reference": ["gradcam"], "metric": ["iou"], "ci_low": [0.1],
                         "ci_high": [0.3]})
    family = pd.concat([fam1, fam2])
    assert family.index.tolist() == [0, 1, 0]
    # the control: only the iou gain over gradcam (label 0, like mse's) is an artefact
    control = pd.concat([fam1, fam2], ignore_index=True).assign(
        relative_change=0.0, ci_low=[-0.5, -0.5, 0.15], ci_high=[-0.3, -0.3, 0.25])
    out = V.metric_outcomes(family, control=control).set_index("metric")
    assert out.loc["mse", "outcome"] == "better" and out.loc["mse", "artefacts"] == 0  # was "artefact", 1
    assert out.loc["iou", "outcome"] == "artefact" and out.loc["iou", "artefacts"] == 1
    # the same as with a clean index
    clean = V.metric_outcomes(family.reset_index(drop=True), control=control).set_index("metric")
    pd.testing.assert_frame_equal(out, clean)
    assert V.verdict(family, control=control) == V.verdict(family.reset_index(drop=True), control=control)


def test_partly_supported_when_better_on_a_majority_but_short_of_the_target():
    # book/claims.md's clause: better on 2 of 3 metrics, worse on the third, +50 % inside no interval
    family = pd.DataFrame({"metric": ["ad", "iou", "mse"], "ci_low": [0.1, 0.1, -0.4], "ci_high": [0.3, 0.3, -0.1]})
    assert V.verdict(family, target=0.5) == "partly supported"
    assert V.verdict(family) == "supported"           # without a target size: better on a majority
    assert V.verdict(family.iloc[[0, 2]], target=0.5) == "not supported"  # 1 of 2 better, one worse
