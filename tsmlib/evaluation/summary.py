"""Summaries of the runner's tidy table: means with bootstrap confidence intervals, best IoU threshold,
and the tables and lines of text the chapters print them in.

The paper's numbers are means over images of the per-image terms in the table (Average Drop % is the
mean of ``100 * max(0, Y - O) / Y``, and so on). NaN values (undefined IoU on an empty mask, ...) are left
out of the mean and counted in ``n_nan``.

Formatting, one way for the whole book: a mean with its interval is ``"0.412 [0.388, 0.437]"`` with the
metric's digits (:func:`interval_cell`, :func:`interval_table`); a relative change of
:func:`tsmlib.evaluation.stats.compare` is ``"+12 % [+3, +20]"`` (:func:`format_relative_change`,
:func:`comparison_table`, :func:`comparison_line`); columns are labelled with the metric's display name
and direction arrow (:func:`metric_column`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .metric_registry import METRICS, higher_is_better
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


def _select(summary: pd.DataFrame, metric: str, where: dict) -> pd.DataFrame:
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
    rows = _select(summary, metric, where)
    rows = rows[rows["method"] == method]
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} summary rows for method {method!r}, metric {metric!r}"
                         + (f" and {where}" if where else "") + "; want exactly one (select with model=..., ...)")
    return float(rows[column].iloc[0])


def best_method(summary: pd.DataFrame, metric: str, **where) -> str:
    """The method with the best ``mean`` on ``metric`` in a :func:`summarize` table (the metric's
    direction from :func:`tsmlib.evaluation.metric_registry.higher_is_better`; NaN means are ignored; a tie
    goes to the method listed first). ``where`` selects a configuration, as in :func:`summary_value`.

    >>> s = pd.DataFrame({"method": ["a", "b"], "metric": ["average_drop"] * 2, "mean": [30.0, 20.0]})
    >>> best_method(s, "average_drop")  # lower is better
    'b'
    """
    rows = _select(summary, metric, where).dropna(subset=["mean"])
    if rows.empty:
        raise ValueError(f"no summary row with a mean for metric {metric!r}" + (f" and {where}" if where else ""))
    means = rows["mean"].reset_index(drop=True)
    best = means.idxmax() if higher_is_better(metric) else means.idxmin()
    return str(rows["method"].iloc[best])


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


def paper_table(summary: pd.DataFrame, metrics: Sequence[str] = ("average_drop", "increase_in_confidence",
                                                                   "average_gain", "mse", "iou")) -> pd.DataFrame:
    """Wide table (methods x metrics) of ``mean [ci_low, ci_high]`` strings from :func:`summarize`."""
    s = summary[summary["metric"].isin(metrics)].copy()
    s["cell"] = s.apply(lambda r: f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]", axis=1)
    index = [c for c in CONFIG_COLUMNS if c in s.columns and s[c].nunique() > 1] + ["method"]
    table = s.pivot_table(index=index, columns="metric", values="cell", aggfunc="first")
    return table[[m for m in metrics if m in table.columns]]


# ------------------------------------------------------------------------------------ formatting
def metric_column(metric: str) -> str:
    """The column label of a metric: display name and direction arrow, ``"Average Drop ↓"`` (the code
    name itself for a metric :mod:`.metric_registry` does not know, e.g. a renamed one)."""
    info = METRICS.get(metric)
    return f"{info.display} {info.arrow}" if info is not None else str(metric)


def _digits(metric: str) -> int:
    info = METRICS.get(metric)
    return info.digits if info is not None else 3


def interval_cell(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``"0.412 [0.388, 0.437]"``; ``"n/a"`` for a NaN mean, the mean alone when the interval is NaN."""
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_table(summary: pd.DataFrame, metrics: Sequence[str], *, index: str = "method",
                   order: Sequence | None = None, count: bool = True) -> pd.DataFrame:
    """Wide table of ``mean [ci_low, ci_high]`` cells: one row per ``index`` value, one column per metric.

    Parameters
    ----------
    summary : DataFrame
        Output of :func:`summarize`, restricted to one configuration (e.g. one model): at most one row per
        (``index``, metric).
    metrics : sequence of str
        Column order; each column is labelled :func:`metric_column` and printed with the metric's digits
        (:mod:`.metric_registry`).
    index : str
        The column of ``summary`` that gives the rows (default ``"method"``).
    order : sequence, optional
        Row order (rows absent from ``summary`` are left out); default the order of first appearance.
    count : bool
        Add a first column ``n``: the largest number of images behind a row's cells.

    Returns
    -------
    DataFrame of str (and ``n`` int), index without a name.
    """
    s = summary[summary["metric"].isin(metrics)]
    if s.duplicated([index, "metric"]).any():
        raise ValueError(f"summary has several rows per ({index}, metric); restrict it to one configuration first")
    cells = {(r[index], r["metric"]): interval_cell(r["mean"], r["ci_low"], r["ci_high"], _digits(r["metric"]))
             for _, r in s.iterrows()}
    rows = list(pd.unique(s[index])) if order is None else [o for o in order if o in set(s[index])]
    table = pd.DataFrame({metric_column(m): [cells.get((r, m), "") for r in rows] for m in metrics}, index=rows)
    if count:
        table.insert(0, "n", s.groupby(index, observed=True)["n"].max().reindex(rows).astype(int).to_numpy())
    table.index.name = None
    return table


def format_relative_change(change: float, low: float = float("nan"), high: float = float("nan")) -> str:
    """A relative change (a fraction, as :func:`tsmlib.evaluation.stats.compare` gives it) in percent:
    ``"+12 % [+3, +20]"``; ``"n/a"`` where undefined (reference mean 0), no interval where it is NaN."""
    if not np.isfinite(change):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{100 * change:+.0f} %"
    return f"{100 * change:+.0f} % [{100 * low:+.0f}, {100 * high:+.0f}]"


def comparison_table(comparisons: pd.DataFrame, *, index: str = "model", labels: dict | None = None,
                     metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Wide table of :func:`format_relative_change` cells from a :func:`~tsmlib.evaluation.stats.compare`
    table: one row per ``index`` value (e.g. per model), one column per metric (:func:`metric_column`).

    ``labels`` renames the rows (e.g. ``{"synthetic_simclr": "SimCLR"}``); ``metrics`` orders the columns
    (default the order of first appearance).
    """
    if comparisons.duplicated([index, "metric"]).any():
        raise ValueError(f"several comparisons per ({index}, metric): pass the table of one method pair")
    metrics = list(pd.unique(comparisons["metric"])) if metrics is None else list(metrics)
    rows = list(pd.unique(comparisons[index]))
    cells = {(r[index], r["metric"]): format_relative_change(r["relative_change"], r["ci_low"], r["ci_high"])
             for _, r in comparisons.iterrows()}
    labels = labels or {}
    return pd.DataFrame({metric_column(m): [cells.get((r, m), "") for r in rows] for m in metrics},
                        index=[labels.get(r, r) for r in rows])


def comparison_line(comparisons: pd.DataFrame, *, group: str = "model", labels: dict | None = None) -> str:
    """One line of text from a :func:`~tsmlib.evaluation.stats.compare` table, group by group:
    ``"SimCLR: Average Drop +3 % [-2, +8], mIoU -5 % [-9, -1]; Barlow Twins: ..."``."""
    labels = labels or {}
    parts = []
    for key in pd.unique(comparisons[group]):
        rows = comparisons[comparisons[group] == key]
        cells = ", ".join(f"{METRICS[r.metric].display if r.metric in METRICS else r.metric} "
                          f"{format_relative_change(r.relative_change, r.ci_low, r.ci_high)}"
                          for r in rows.itertuples())
        parts.append(f"{labels.get(key, key)}: {cells}")
    return "; ".join(parts)


def ranked_methods(summary: pd.DataFrame, metric: str, methods: Sequence[str] | None = None) -> list[str]:
    """The methods of ``summary`` (one configuration) ordered best first on ``metric`` by its mean, in the
    metric's direction (:mod:`.metric_registry`); ties keep the order of ``methods``, NaN means go last."""
    s = summary[summary["metric"] == metric]
    if s["method"].duplicated().any():
        raise ValueError("summary has several rows per method; restrict it to one configuration first")
    means = s.set_index("method")["mean"]
    methods = list(means.index) if methods is None else [m for m in methods if m in means.index]
    sign = -1.0 if higher_is_better(metric) else 1.0
    key = {m: (np.isnan(means[m]), sign * means[m] if np.isfinite(means[m]) else 0.0) for m in methods}
    return sorted(methods, key=lambda m: key[m])
