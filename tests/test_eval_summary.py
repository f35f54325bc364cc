"""Summaries: means, bootstrap intervals, NaN accounting, best IoU threshold, paper table."""

import numpy as np
import pandas as pd
import pytest

from tsmlib.evaluation import best_iou_threshold, format_number, interval_cell, mean_ci, paper_table, summarize

from _eval_helpers import model_summary


def _table():
    rows = []
    for i, (a, b) in enumerate([(10.0, 30.0), (20.0, 50.0), (30.0, float("nan")), (40.0, 70.0)]):
        rows.append({"image": i, "method": "tsm", "metric": "average_drop", "value": a, "threshold": np.nan,
                     "model": "m", "layer": "l", "score_space": "softmax", "masking": "black"})
        rows.append({"image": i, "method": "gradcam", "metric": "iou", "value": b, "threshold": 0.5,
                     "model": "m", "layer": "l", "score_space": "softmax", "masking": "black"})
    return pd.DataFrame(rows)


def test_summarize_mean_ci_and_nan_count():
    s = summarize(_table(), n_boot=500)
    tsm = s[s.method == "tsm"].iloc[0]
    assert tsm["mean"] == 25.0 and tsm["n"] == 4 and tsm["n_nan"] == 0
    assert 10.0 <= tsm["ci_low"] < 25.0 < tsm["ci_high"] <= 40.0
    g = s[s.method == "gradcam"].iloc[0]
    assert g["mean"] == 50.0 and g["n"] == 3 and g["n_nan"] == 1  # the NaN IoU is counted, not averaged
    assert g["threshold"] == 0.5
    assert {"model", "layer", "score_space", "masking"} <= set(s.columns)
    # deterministic for a seed
    pd.testing.assert_frame_equal(s, summarize(_table(), n_boot=500))


def test_summarize_interval_is_mean_ci_with_2000_resamples_by_default():
    # the book's intervals: summarize's default (2,000 resamples, seed 0) is not mean_ci's (9,999)
    values = np.random.default_rng(0).normal(50.0, 10.0, 30)
    table = pd.DataFrame({"method": "tsm", "metric": "average_drop", "value": values})
    row = summarize(table).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == mean_ci(values, n_resamples=2000, seed=0)
    assert (row["ci_low"], row["ci_high"]) != mean_ci(values)


def test_best_iou_threshold_and_paper_table():
    rows = []
    for m, curve in (("a", [0.2, 0.6, 0.6, 0.1]), ("b", [0.5, 0.3, float("nan"), 0.0])):
        for t, v in zip([0.0, 0.25, 0.5, 0.75], curve):
            rows.append({"image": 0, "method": m, "metric": "iou_curve", "value": v, "threshold": t})
    best = best_iou_threshold(pd.DataFrame(rows)).set_index("method")
    assert best.loc["a", "best_threshold"] == 0.25 and best.loc["a", "best_miou"] == 0.6  # smallest of a tie
    assert best.loc["b", "best_threshold"] == 0.0
    with pytest.raises(ValueError, match="iou_curve"):
        best_iou_threshold(_table())
    table = paper_table(summarize(_table(), n_boot=200))
    assert list(table.columns) == ["average_drop", "iou"]
    assert table.loc["tsm", "average_drop"].startswith("25.00 [")


def test_interval_cells_never_print_nan():
    """One image has no interval (the mean alone); an undefined metric is n/a; never "[nan, nan]"."""
    nan = float("nan")
    assert interval_cell(0.41234, 0.4, 0.43, 3) == "0.412 [0.400, 0.430]"
    assert interval_cell(nan, nan, nan) == "n/a"
    assert interval_cell(0.5, nan, nan) == "0.50"
    assert interval_cell(0.5, 0.1, nan) == "0.50"
    summary = pd.DataFrame([
        {"method": "one-image", "metric": "average_drop", "mean": 11.5, "ci_low": nan, "ci_high": nan, "n": 1},
        {"method": "constant", "metric": "average_drop", "mean": nan, "ci_low": nan, "ci_high": nan, "n": 0},
        {"method": "tsm", "metric": "average_drop", "mean": 20.0, "ci_low": 18.0, "ci_high": 22.5, "n": 9},
    ])
    table = paper_table(summary, metrics=["average_drop"])
    assert table["average_drop"].to_dict() == {"constant": "n/a", "one-image": "11.50", "tsm": "20.00 [18.00, 22.50]"}




def test_summary_value_reads_one_cell_and_refuses_an_ambiguous_selection():
    from tsmlib.evaluation import summary_value

    assert summary_value(model_summary(), "mtsm", "iou", model="a") == 0.5
    assert summary_value(model_summary(), "tsm", "average_drop") == 20.0  # one row without a model filter
    with pytest.raises(ValueError, match="2 summary rows"):
        summary_value(model_summary(), "tsm", "iou")  # two models: say which
    with pytest.raises(ValueError, match="0 summary rows"):
        summary_value(model_summary(), "gradcam", "iou", model="a")
    with pytest.raises(ValueError, match="lacks column"):
        summary_value(model_summary(), "tsm", "iou", dataset="x")


def test_numbers_that_round_to_zero_lose_their_sign():
    """A mean of tiny negative changes (ROAD on a flat softmax) printed "-0.000"."""
    assert format_number(-1e-6, ".3f") == "0.000" and format_number(-0.0012, ".3f") == "-0.001"
    assert format_number(-0.0, "+.0f") == "+0" and format_number(-1e-9, ".0%") == "0%"
    assert format_number(-2e-7, ".2e") == "-2.00e-07"  # not zero: the sign stays
    assert interval_cell(-1e-5, -2e-5, 1e-5, 3) == "0.000 [0.000, 0.000]"
