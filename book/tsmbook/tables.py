"""The tables and lines of text the chapters print their numbers in, one way for the whole book.

* a mean with its interval is ``"0.412 [0.388, 0.437]"`` with the metric's digits (:func:`tsmlib.evaluation.interval_cell`,
  :func:`interval_table`);
* a relative change of :func:`tsmlib.evaluation.stats.compare` is ``"+12 % [+3, +20]"``
  (:func:`format_relative_change`, :func:`comparison_table`, :func:`comparison_line`);
* columns are labelled with the metric's display name and direction arrow (:func:`metric_column`);
* methods are ranked in the metric's direction (:func:`ranked_methods`, :func:`best_method`).

All of them read :func:`tsmlib.evaluation.summarize` or :func:`tsmlib.evaluation.stats.compare` tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tsmlib.evaluation import METRICS, format_number, higher_is_better, interval_cell, summary_rows

from .names import display_name

__all__ = ["metric_column", "interval_table", "interval_table_across", "format_relative_change", "comparison_table",
           "comparison_line", "ranked_methods", "best_method"]


def metric_column(metric: str) -> str:
    """The column label of a metric: display name and direction arrow, ``"Average Drop ↓"`` (the code
    name itself for a metric the metric table does not know, e.g. a renamed one)."""
    info = METRICS.get(metric)
    return f"{info.display} {info.arrow}" if info is not None else str(metric)


def _digits(metric: str) -> int:
    info = METRICS.get(metric)
    return info.digits if info is not None else 3


#: The cell of a method a metric was not run on (deletion and insertion run on a subset of the methods).
NOT_RUN = "not run"


def interval_table(summary: pd.DataFrame, metrics: Sequence[str], *, index: str = "method",
                   order: Sequence | None = None, count: bool = True) -> pd.DataFrame:
    """Wide table of ``mean [ci_low, ci_high]`` cells: one row per ``index`` value, one column per metric.

    Parameters
    ----------
    summary : DataFrame
        Output of :func:`tsmlib.evaluation.summarize`, restricted to one configuration (e.g. one model): at most one row per
        (``index``, metric).
    metrics : sequence of str
        Column order; each column is labelled :func:`metric_column` and printed with the metric's digits
        (``tsmlib.evaluation.metric_registry``).
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
    table = _cell_table(s, index, "metric", metrics, metric_column, order)
    if count:
        table.insert(0, "n", s.groupby(index, observed=True)["n"].max().reindex(table.index).astype(int).to_numpy())
    return table


def interval_table_across(summary: pd.DataFrame, metric: str, across: str = "model", *, index: str = "method",
                          order: Sequence | None = None, columns: Sequence | None = None) -> pd.DataFrame:
    """One metric's ``mean [ci_low, ci_high]`` cells with one column per value of ``across`` (each model):
    rows ``index`` (methods), columns labelled ``"<metric column>, <display name>"``, "not run" where a pair
    is missing.

    ``order`` and ``columns`` fix the rows and columns (default: their order of first appearance)."""
    s = summary[summary["metric"] == metric]
    return _cell_table(s, index, across, list(pd.unique(s[across])) if columns is None else list(columns),
                       lambda c: f"{metric_column(metric)}, {display_name(c)}", order)


def _cell_table(s: pd.DataFrame, index: str, across: str, columns: Sequence, label,
                order: Sequence | None) -> pd.DataFrame:
    """The :func:`interval_cell` of each (``index``, ``across``) row of ``s``, rows ``order`` (default: first
    appearance), one column ``label(c)`` per value ``c`` in ``columns``, :data:`NOT_RUN` where a pair is missing."""
    if s.duplicated([index, across]).any():
        raise ValueError(f"summary has several rows per ({index}, {across}); restrict it to one configuration first")
    cells = {(r[index], r[across]): interval_cell(r["mean"], r["ci_low"], r["ci_high"], _digits(r["metric"]))
             for _, r in s.iterrows()}
    rows = list(pd.unique(s[index])) if order is None else [o for o in order if o in set(s[index])]
    table = pd.DataFrame({label(c): [cells.get((r, c), NOT_RUN) for r in rows] for c in columns}, index=rows)
    table.index.name = None
    return table


def format_relative_change(change: float, low: float = float("nan"), high: float = float("nan")) -> str:
    """A relative change (a fraction, as :func:`tsmlib.evaluation.stats.compare` gives it) in percent:
    ``"+12 % [+3, +20]"``; ``"n/a"`` where undefined (reference mean 0), no interval where it is NaN."""
    if not np.isfinite(change):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{format_number(100 * change, '+.0f')} %"
    return (f"{format_number(100 * change, '+.0f')} % "
            f"[{format_number(100 * low, '+.0f')}, {format_number(100 * high, '+.0f')}]")


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
    metric's direction (``tsmlib.evaluation.metric_registry``); ties keep the order of ``methods``, NaN means go last."""
    s = summary[summary["metric"] == metric]
    if s["method"].duplicated().any():
        raise ValueError("summary has several rows per method; restrict it to one configuration first")
    means = s.set_index("method")["mean"]
    methods = list(means.index) if methods is None else [m for m in methods if m in means.index]
    sign = -1.0 if higher_is_better(metric) else 1.0
    key = {m: (np.isnan(means[m]), sign * means[m] if np.isfinite(means[m]) else 0.0) for m in methods}
    return sorted(methods, key=lambda m: key[m])


def best_method(summary: pd.DataFrame, metric: str, **where) -> str:
    """The method with the best ``mean`` on ``metric`` in a :func:`summarize` table (the metric's
    direction from :func:`tsmlib.evaluation.metric_registry.higher_is_better`; NaN means are ignored; a tie
    goes to the method listed first). ``where`` selects a configuration (``model="simclr"``), as in
    :func:`tsmlib.evaluation.summary_value`.

    >>> s = pd.DataFrame({"method": ["a", "b"], "metric": ["average_drop"] * 2, "mean": [30.0, 20.0]})
    >>> best_method(s, "average_drop")  # lower is better
    'b'
    """
    rows = summary_rows(summary, metric, **where).dropna(subset=["mean"])
    if rows.empty:
        raise ValueError(f"no summary row with a mean for metric {metric!r}" + (f" and {where}" if where else ""))
    means = rows["mean"].reset_index(drop=True)
    best = means.idxmax() if higher_is_better(metric) else means.idxmin()
    return str(rows["method"].iloc[best])
