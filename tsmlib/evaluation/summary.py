"""Summaries of the runner's tidy table: means with bootstrap confidence intervals, one number of a summary,
the best IoU threshold, the paper's table. (The book's tables and sentences are ``tsmbook.tables``.)

The paper's numbers are means over images of the per-image terms in the table (Average Drop % is the
mean of ``100 * max(0, Y - O) / Y``, and so on). NaN values (undefined IoU on an empty mask, ...) are left
out of the mean and counted in ``n_nan``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .stats import mean_ci

#: Configuration columns a summary keeps apart (when present in the table).
CONFIG_COLUMNS = ("model", "layer", "score_space", "masking")


def summarize(results: pd.DataFrame, by: Sequence[str] | None = None, *, n_boot: int = 2000, ci: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """Mean and bootstrap confidence interval per method and metric (and configuration).

    Parameters
    ----------
    results : DataFrame
        The table of :func:`tsmlib.evaluation.evaluate` (columns ``method, metric, value`` at least).
    by : sequence of str, optional
        Grouping columns. Default: the configuration columns present (model, layer, score space,
        masking), then ``method`` (and ``label_free``), ``metric`` and ``threshold`` (so ``iou_curve`` keeps one row per threshold).
    n_boot, ci, seed
        Resamples, coverage and seed of each group's BCa bootstrap interval of the mean
        (:func:`tsmlib.evaluation.stats.mean_ci` with ``n_resamples=n_boot, confidence=ci``); note the
        default of 2,000 resamples here, against 9,999 for ``mean_ci`` called alone.

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, ``mean``, ``ci_low``, ``ci_high``, ``n`` (finite values)
        and ``n_nan`` (undefined values left out). Plot it with seaborn, or pivot it for a table.
    """
    if by is None:
        by = [c for c in CONFIG_COLUMNS if c in results.columns] + ["method"]
        if "label_free" in results.columns:
            by.append("label_free")  # a function of the method: kept for plots
        by.append("metric")
        if "threshold" in results.columns:
            by.append("threshold")
    missing = [c for c in list(by) + ["value"] if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}")
    rows = []
    for key, group in results.groupby(list(by), dropna=False, sort=True):
        values = group["value"].to_numpy(dtype=np.float64)
        finite = values[~np.isnan(values)]
        lo, hi = mean_ci(finite, confidence=ci, n_resamples=n_boot, seed=seed)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "mean": float(finite.mean()) if finite.size else float("nan"),
                     "ci_low": lo, "ci_high": hi, "n": int(finite.size), "n_nan": int(values.size - finite.size)})
    return pd.DataFrame(rows)


def summary_rows(summary: pd.DataFrame, metric: str, **where) -> pd.DataFrame:
    """The rows of a :func:`summarize` table for ``metric`` and the configuration ``where``
    (``model="simclr"``); ``ValueError`` naming the columns the table lacks."""
    missing = [c for c in ["method", "metric", *where] if c not in summary.columns]
    if missing:
        raise ValueError(f"the summary lacks column(s) {missing}")
    rows = summary[summary["metric"] == metric]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows


def summary_value(summary: pd.DataFrame, method: str, metric: str, column: str = "mean", **where) -> float:
    """One number of a :func:`summarize` table: ``column`` of the row of ``method`` and ``metric``.

    ``where`` selects among configurations (``model="simclr"``); exactly one row must remain.

    >>> s = pd.DataFrame({"method": ["tsm", "tsm"], "metric": ["iou", "mse"], "mean": [0.4, 0.1]})
    >>> summary_value(s, "tsm", "mse")
    0.1
    """
    rows = summary_rows(summary, metric, **where)
    rows = rows[rows["method"] == method]
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} summary rows for method {method!r}, metric {metric!r}"
                         + (f" and {where}" if where else "") + "; want exactly one (select with model=..., ...)")
    return float(rows[column].iloc[0])


def best_iou_threshold(results: pd.DataFrame) -> pd.DataFrame:
    """Per method (and configuration): the threshold of highest mean IoU on the ``iou_curve`` rows.

    Returns
    -------
    DataFrame
        ``best_threshold`` (the smallest one attaining the maximum) and ``best_miou``, one row per method.
    """
    curve = results[results["metric"] == "iou_curve"]
    if curve.empty:
        raise ValueError("no 'iou_curve' rows: evaluate with metrics including 'iou_curve' and masks")
    by = [c for c in CONFIG_COLUMNS if c in curve.columns] + ["method"]
    means = curve.groupby(by + ["threshold"], dropna=False)["value"].mean().reset_index()
    means = means.sort_values(by + ["threshold"])
    idx = means.dropna(subset=["value"]).groupby(by)["value"].idxmax()
    best = means.loc[idx, by + ["threshold", "value"]]
    return best.rename(columns={"threshold": "best_threshold", "value": "best_miou"}).reset_index(drop=True)


def format_number(value: float, spec: str) -> str:
    """``format(value, spec)`` without the sign of a value that rounds to zero: ``"0.000"``, not ``"-0.000"``
    for -1e-6 (a mean of tiny negative changes still reads as no change).

    >>> format_number(-1e-6, ".3f"), format_number(-0.0012, ".3f"), format_number(-0.0, "+.0f")
    ('0.000', '-0.001', '+0')
    """
    text = format(value, spec)
    if text.startswith("-") and not any(ch in "123456789" for ch in text.split("e")[0]):
        text = ("+" if "+" in spec else "") + text[1:]
    return text


def interval_cell(mean: float, low: float, high: float, digits: int = 2) -> str:
    """A mean and its interval as one table cell: ``"0.41 [0.39, 0.44]"``; ``"n/a"`` for a NaN mean (the metric
    is undefined, e.g. the pointing game of a constant map), the mean alone when an end of the interval is NaN
    (one image: nothing to resample).

    >>> interval_cell(0.41234, 0.388, 0.437, 3), interval_cell(0.5, float("nan"), float("nan"))
    ('0.412 [0.388, 0.437]', '0.50')
    """
    if not np.isfinite(mean):
        return "n/a"
    spec = f".{digits}f"
    if not (np.isfinite(low) and np.isfinite(high)):
        return format_number(mean, spec)
    return f"{format_number(mean, spec)} [{format_number(low, spec)}, {format_number(high, spec)}]"


def paper_table(summary: pd.DataFrame, metrics: Sequence[str] = ("average_drop", "increase_in_confidence",
                                                                   "average_gain", "mse", "iou")) -> pd.DataFrame:
    """Wide table (methods x metrics) of ``mean [ci_low, ci_high]`` strings (:func:`interval_cell`, two
    decimals) from :func:`summarize`."""
    s = summary[summary["metric"].isin(metrics)].copy()
    s["cell"] = [interval_cell(m, lo, hi) for m, lo, hi in zip(s["mean"], s["ci_low"], s["ci_high"])]
    index = [c for c in CONFIG_COLUMNS if c in s.columns and s[c].nunique() > 1] + ["method"]
    table = s.pivot_table(index=index, columns="metric", values="cell", aggfunc="first")
    return table[[m for m in metrics if m in table.columns]]
