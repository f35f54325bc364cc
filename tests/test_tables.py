"""tsmbook.tables: the cells, columns, tables, sentences and rankings the chapters print, on hand-built tables."""

import numpy as np
import pandas as pd
import pytest

from tsmlib.evaluation import compare
from tsmbook.tables import (best_method, comparison_line, comparison_table, format_relative_change,
                            interval_table, interval_table_across, metric_column, ranked_methods)

from _eval_helpers import yardstick_results, model_summary

nan = float("nan")


def _summary():
    return pd.DataFrame([
        {"method": "tsm", "metric": "average_drop", "mean": 12.345, "ci_low": 10.0, "ci_high": 14.5, "n": 10},
        {"method": "tsm", "metric": "iou", "mean": 0.41234, "ci_low": 0.4, "ci_high": 0.43, "n": 8},
        {"method": "eigencam", "metric": "average_drop", "mean": 20.0, "ci_low": 18.0, "ci_high": 22.0, "n": 10},
        {"method": "eigencam", "metric": "iou", "mean": nan, "ci_low": nan, "ci_high": nan, "n": 0},
        {"method": "mtsm", "metric": "average_drop", "mean": 12.345, "ci_low": 11.0, "ci_high": 13.0, "n": 10},
    ])


def test_cells_and_columns():
    assert format_relative_change(0.5, 0.123, 0.789) == "+50 % [+12, +79]"
    assert format_relative_change(-0.034) == "-3 %"
    assert format_relative_change(nan, 0.1, 0.2) == "n/a"
    assert metric_column("average_drop") == "Average Drop ↓" and metric_column("iou_auc") == "IoU AUC ↑"
    assert metric_column("similarity_increase") == "similarity_increase"  # unknown: the code name


def test_interval_table_uses_the_metric_digits_and_order():
    t = interval_table(_summary(), ["iou", "average_drop"], order=["eigencam", "tsm", "absent"])
    assert list(t.index) == ["eigencam", "tsm"]
    assert list(t.columns) == ["n", "mIoU ↑", "Average Drop ↓"]
    assert t.loc["tsm", "Average Drop ↓"] == "12.3 [10.0, 14.5]"  # 1 digit for a percentage
    assert t.loc["tsm", "mIoU ↑"] == "0.412 [0.400, 0.430]"       # 3 for a fraction
    assert t.loc["eigencam", "mIoU ↑"] == "n/a"
    assert t.loc["tsm", "n"] == 10
    assert interval_table(_summary(), ["iou", "average_drop"]).loc["mtsm", "mIoU ↑"] == "not run"  # no row: not measured
    with pytest.raises(ValueError, match="one configuration"):
        interval_table(pd.concat([_summary(), _summary()]), ["iou"])


def test_interval_table_across_puts_one_metric_of_each_model_in_a_column():
    rows = [{"model": mo, "method": me, "metric": "road", "mean": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "n": 4}
            for mo, me, v in [("efficientnet_lite0", "tsm", 0.1234), ("efficientnet_lite0", "eigencam", 0.05),
                              ("efficientnet_lite0_random", "tsm", 0.0)]]
    rows.append({"model": "efficientnet_lite0_random", "method": "eigencam", "metric": "road", "mean": 0.02,
                 "ci_low": nan, "ci_high": nan, "n": 1})
    t = interval_table_across(pd.DataFrame(rows), "road", order=["eigencam", "tsm"])
    assert list(t.columns) == ["ROAD ↑, EfficientNet-Lite0", "ROAD ↑, EfficientNet-Lite0 (random weights)"]
    assert t.loc["tsm"].tolist() == ["0.123 [0.113, 0.133]", "0.000 [-0.010, 0.010]"]
    assert t.loc["eigencam"].tolist() == ["0.050 [0.040, 0.060]", "0.020"]  # one image: no interval
    missing = interval_table_across(pd.DataFrame(rows[:3]), "road", columns=["efficientnet_lite0_random"])
    assert missing.loc["eigencam"].tolist() == ["not run"]


def test_ranked_methods_follow_the_direction():
    s = _summary()
    # Average Drop: lower is better; tsm and mtsm tie at 12.345 and keep the given order
    assert ranked_methods(s, "average_drop", ["mtsm", "eigencam", "tsm"]) == ["mtsm", "tsm", "eigencam"]
    assert ranked_methods(s, "average_drop") == ["tsm", "mtsm", "eigencam"]
    # mIoU: higher is better; a NaN mean goes last
    assert ranked_methods(s, "iou") == ["tsm", "eigencam"]


def test_comparison_table_and_line():
    r = yardstick_results()
    c = compare(r, "good", "whole-image", ["iou"], by=["model"], n_resamples=200)
    t = comparison_table(c, labels={"a": "model A"})
    assert list(t.index) == ["model A", "b"] and list(t.columns) == ["mIoU ↑"]
    assert t.iloc[0, 0].startswith("+120 % [")
    line = comparison_line(c, labels={"a": "model A"})
    assert line.startswith("model A: mIoU +120 % [") and "; b: mIoU +120 %" in line
    with pytest.raises(ValueError, match="one method pair"):
        comparison_table(pd.concat([c, c]))




def test_best_method_follows_the_metric_direction_and_skips_undefined_means():
    assert best_method(model_summary(), "iou", model="a") == "mtsm"  # higher is better
    assert best_method(model_summary(), "average_drop", model="a") == "tsm"  # lower is better
    assert best_method(model_summary(), "iou", model="b") == "tsm"  # the NaN mean is not a winner
    tie = pd.DataFrame({"method": ["x", "y"], "metric": ["iou", "iou"], "mean": [0.5, 0.5]})
    assert best_method(tie, "iou") == "x"  # a tie goes to the first listed
    with pytest.raises(ValueError, match="no summary row"):
        best_method(model_summary(), "mse")
