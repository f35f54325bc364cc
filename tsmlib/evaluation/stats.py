"""The statistics of the book, in one place: intervals of a mean, paired comparisons of two methods on
the same images, and the correction across the comparisons of one claim.

Every chapter that says "method A is x % better than method B" computes it here, with one definition:

* **relative change** of A over B on a metric = ``s * (mean(A) - mean(B)) / |mean(B)|``, where
  ``s = +1`` when higher is better and ``-1`` when lower is better (:mod:`.metric_registry` holds the
  direction). Positive always means *A is better*; ``+0.5`` is "50 % better". Undefined (NaN) when
  ``mean(B) = 0``.
* its **interval** is a paired bootstrap over the images both methods were evaluated on
  (:func:`scipy.stats.bootstrap` with ``paired=True``, BCa by default);
* its **test** is the Wilcoxon signed-rank test of the per-image differences
  (:func:`scipy.stats.wilcoxon`; ``test="t"`` for the paired t-test);
* the **paired difference** of two settings on one metric (:func:`paired_difference`) is the mean of
  the per-image differences ``A - B`` in the metric's own unit, with the BCa interval of that mean and
  the same test; chapter 3 compares ablation settings with it;
* an **interval needs at least** :func:`min_sample` values (4 at 95 % and up to 99.2 %, 5 up to 99.9 %): with fewer,
  one resample (every draw the smallest value) is more likely than the tail an interval leaves out, so a
  bootstrap interval cannot be narrower than the values' range and says nothing about the mean.
  :func:`mean_ci`, :func:`paired_difference` and :func:`paired_relative_change` then give a NaN interval
  ("undecided" for :func:`interval_outcome`, "not computable" for the verdicts), and keep the point value;
* a **family** of comparisons (all the metrics and models of one claim) gets Holm-adjusted p-values
  (:func:`statsmodels.stats.multitest.multipletests`) and Bonferroni-widened intervals (each at level
  ``1 - alpha / m``, so that all ``m`` intervals hold together with probability at least ``1 - alpha``).

The functions take plain arrays or the runner's tidy table (one row per image x method x metric).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .metric_registry import higher_is_better as _higher_is_better

__all__ = [
    "min_sample",
    "mean_ci",
    "relative_change",
    "paired_relative_change",
    "paired_test",
    "holm",
    "interval_outcome",
    "paired_values",
    "paired_difference",
    "row_correlation",
    "compare",
    "compare_family",
    "compare_to_references",
    "beats_all_references",
    "COMPARISON_COLUMNS",
]

#: Columns of the tables :func:`compare` and :func:`compare_family` return.
COMPARISON_COLUMNS = ["method", "reference", "metric", "n", "mean_method", "mean_reference", "relative_change",
                      "ci_low", "ci_high", "confidence", "p_value", "test"]


def _finite_1d(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    if np.isinf(v).any():
        raise ValueError(f"{name} holds infinite values")
    return v


def _check_level(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def min_sample(confidence: float = 0.95) -> int:
    """The fewest values a bootstrap interval at level ``confidence`` is computed from.

    The smallest ``n >= 2`` with ``n ** -n < (1 - confidence) / 2``. With fewer values, the resample that
    draws the smallest value ``n`` times (probability ``n ** -n``) is more likely than the tail the interval
    leaves out, so the interval cannot be narrower than the range of the values: one value or two equal
    differences would otherwise give a zero-width interval that reads as certain.

    >>> min_sample(0.95), min_sample(0.8), min_sample(0.999)
    (4, 3, 5)
    """
    _check_level(confidence)
    tail = (1 - confidence) / 2
    n = 2
    while n ** -n >= tail:
        n += 1
    return n


def _bootstrap(data: tuple, statistic, *, paired: bool, confidence: float, n_resamples: int, seed: int,
               method: str) -> tuple[float, float]:
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: handled by the callers (equal values)
        res = stats.bootstrap(data, statistic, paired=paired, vectorized=True, axis=-1,
                              confidence_level=confidence, n_resamples=n_resamples, method=method,
                              rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(values, *, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0,
            method: str = "BCa") -> tuple[float, float]:
    """Bootstrap confidence interval of the mean (:func:`scipy.stats.bootstrap`).

    Parameters
    ----------
    values : array-like, shape (n,)
        Finite values (drop NaN first).
    confidence : float
        Coverage in (0, 1).
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling: the interval is deterministic.
    method : {"BCa", "percentile", "basic"}
        scipy's interval method.

    Returns
    -------
    (low, high) : tuple of float
        ``(nan, nan)`` for fewer than :func:`min_sample` values (4 at 95 %; one value included);
        ``(v, v)`` when every value is ``v``.
    """
    _check_level(confidence)
    v = _finite_1d(values, "values")
    if np.isnan(v).any():
        raise ValueError("mean_ci got NaN values; drop them first (summarize does and counts them)")
    if v.size < min_sample(confidence):
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    return _bootstrap((v,), lambda x, axis=-1: x.mean(axis=axis), paired=False, confidence=confidence,
                      n_resamples=n_resamples, seed=seed, method=method)


def relative_change(mean_method, mean_reference, higher_is_better: bool):
    """``s * (mean_method - mean_reference) / |mean_reference|``: positive when the method is better.

    Works elementwise on arrays; NaN where ``mean_reference == 0``.

    >>> relative_change(30.0, 60.0, higher_is_better=False)   # Average Drop halved: 50 % better
    0.5
    >>> relative_change(0.75, 0.5, higher_is_better=True)     # mIoU 0.5 -> 0.75
    0.5
    """
    a = np.asarray(mean_method, dtype=np.float64)
    b = np.asarray(mean_reference, dtype=np.float64)
    sign = 1.0 if higher_is_better else -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(b == 0, np.nan, sign * (a - b) / np.abs(b))
    return float(out) if out.ndim == 0 else out


def paired_relative_change(method_values, reference_values, *, higher_is_better: bool, confidence: float = 0.95,
                           n_resamples: int = 9999, seed: int = 0, method: str = "BCa") -> tuple[float, float, float]:
    """Relative change of the mean (see :func:`relative_change`) with a paired bootstrap interval.

    Parameters
    ----------
    method_values, reference_values : array-like, shape (n,)
        The metric of the two methods on the same ``n`` images, in the same order (finite).
    higher_is_better : bool
        The metric's direction.
    confidence, n_resamples, seed, method
        As in :func:`mean_ci`; the images are resampled in pairs.

    Returns
    -------
    (change, low, high) : tuple of float
        NaN where undefined (no images, reference mean 0); the interval is NaN for fewer than
        :func:`min_sample` images (4 at 95 %), as :func:`mean_ci`'s, and ``(0, 0)`` when the two methods
        agree on every image.
    """
    _check_level(confidence)
    a = _finite_1d(method_values, "method_values")
    b = _finite_1d(reference_values, "reference_values")
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired values hold NaN; keep only the images both methods have a value for "
                         "(paired_values does)")
    nan = float("nan")
    if a.size == 0:
        return nan, nan, nan
    point = relative_change(a.mean(), b.mean(), higher_is_better)
    if not np.isfinite(point) or a.size < min_sample(confidence):
        return point, nan, nan
    if np.all(a == b):
        return point, 0.0, 0.0

    def statistic(x, y, axis=-1):
        return relative_change(x.mean(axis=axis), y.mean(axis=axis), higher_is_better)

    low, high = _bootstrap((a, b), statistic, paired=True, confidence=confidence, n_resamples=n_resamples,
                           seed=seed, method=method)
    if not (np.isfinite(low) and np.isfinite(high)) and method == "BCa":
        # BCa can be NaN where the percentile interval is not (a degenerate jackknife, too few distinct
        # resamples). Where some resamples have a zero reference mean, the relative change is undefined
        # there and both intervals are NaN (scipy's percentiles propagate NaN, scipy >= 1.17 at least):
        # the comparison is then not computable, rather than an interval from the other resamples only.
        low, high = _bootstrap((a, b), statistic, paired=True, confidence=confidence, n_resamples=n_resamples,
                               seed=seed, method="percentile")
    return point, low, high


def paired_test(method_values, reference_values, test: str = "wilcoxon") -> float:
    """Two-sided p-value of a paired test that the two methods score alike on the same images.

    ``"wilcoxon"``: :func:`scipy.stats.wilcoxon` (signed ranks of the differences; zero differences
    dropped, as Wilcoxon's original rule); ``"t"``: :func:`scipy.stats.ttest_rel`. Returns 1.0 when
    every difference is zero and NaN for fewer than two images. NaN values raise ``ValueError``, as in
    :func:`paired_relative_change` (keep the images both methods have a value for: :func:`paired_values`).
    """
    from scipy import stats

    a = _finite_1d(method_values, "method_values")
    b = _finite_1d(reference_values, "reference_values")
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    if test not in ("wilcoxon", "t"):
        raise ValueError(f"test must be 'wilcoxon' or 't', got {test!r}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired values hold NaN; keep only the images both methods have a value for "
                         "(paired_values does)")
    if a.size < 2:
        return float("nan")
    d = a - b
    if np.all(d == 0):
        return 1.0
    if test == "t":
        if np.all(d == d[0]):  # constant non-zero difference: no spread, the difference is certain
            return 0.0
        return float(stats.ttest_rel(a, b).pvalue)
    return float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)


def holm(p_values, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction (:func:`statsmodels.stats.multitest.multipletests`).

    NaN p-values (comparisons that could not be made) stay NaN and do not count in the family.

    Returns
    -------
    reject : np.ndarray of bool
        Which hypotheses are rejected at family-wise level ``alpha``.
    adjusted : np.ndarray of float
        Holm-adjusted p-values.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=np.float64).ravel()
    reject = np.zeros(p.shape, dtype=bool)
    adjusted = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        r, adj, _, _ = multipletests(p[ok], alpha=alpha, method="holm")
        reject[ok], adjusted[ok] = r, adj
    return reject, adjusted


def interval_outcome(ci_low, ci_high) -> np.ndarray:
    """What an interval of the relative change says: ``"better"`` when it lies above 0, ``"worse"`` when
    it lies below 0, ``"undecided"`` otherwise (also for a NaN interval). Element-wise on arrays.

    >>> interval_outcome([0.1, -0.3, -0.1], [0.4, -0.1, 0.2]).tolist()
    ['better', 'worse', 'undecided']
    """
    low, high = np.asarray(ci_low, dtype=np.float64), np.asarray(ci_high, dtype=np.float64)
    return np.select([low > 0, high < 0], ["better", "worse"], "undecided")


def paired_values(results: pd.DataFrame, method: str, reference: str, metric: str) -> pd.DataFrame:
    """The per-image values of two methods on one metric, side by side (images both have a value for).

    ``results`` is the runner's tidy table restricted to one configuration (one model, one score
    space); the returned frame has the image ids as index and the columns ``method``, ``reference``.
    """
    rows = results[(results["metric"] == metric) & results["method"].isin([method, reference])]
    wide = rows.pivot_table(index="image", columns="method", values="value", aggfunc="first", observed=True)
    if method not in wide or reference not in wide:
        return pd.DataFrame(columns=["method", "reference"], dtype=float)
    return wide[[method, reference]].set_axis(["method", "reference"], axis=1).dropna()


def paired_difference(method_values, reference_values, *, confidence: float = 0.95, n_resamples: int = 9999,
                      seed: int = 0, test: str = "wilcoxon") -> dict:
    """The per-image difference ``method - reference`` of one metric, in the metric's own unit.

    Parameters
    ----------
    method_values, reference_values : array-like, shape (n,)
        The two settings' values on the same ``n`` images, in the same order (e.g. the columns of
        :func:`paired_values`).
    confidence, n_resamples, seed
        The bootstrap interval of the mean difference (:func:`mean_ci`, BCa; NaN for fewer than
        :func:`min_sample` images).
    test : {"wilcoxon", "t"}
        The paired test (:func:`paired_test`).

    Returns
    -------
    dict
        ``mean difference`` (NaN for no images), ``ci_low``, ``ci_high``, ``n`` and ``p_value``.
    """
    a = _finite_1d(method_values, "method_values")
    b = _finite_1d(reference_values, "reference_values")
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    d = a - b
    low, high = mean_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return {"mean difference": float(d.mean()) if d.size else float("nan"), "ci_low": low, "ci_high": high,
            "n": int(d.size), "p_value": paired_test(a, b, test)}


def row_correlation(a, b) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``.

    Parameters
    ----------
    a, b : array-like (numpy arrays or CPU tensors), shape (B, ...)
        Batches of maps; everything after the first axis is flattened.

    Returns
    -------
    np.ndarray, shape (B,)
        ``sum(a_c * b_c) / (||a_c|| ||b_c||)`` with ``a_c``, ``b_c`` the rows minus their means, in float64;
        0 where a row is constant (no variation to correlate), where :func:`scipy.stats.pearsonr` gives NaN.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"row_correlation needs two batches of the same shape, got {a.shape} and {b.shape}")
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-30)


def _groups(results: pd.DataFrame, by: Sequence[str]):
    if not by:
        yield {}, results
        return
    for key, part in results.groupby(list(by), observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(by, key)), part


def compare(results: pd.DataFrame, method: str, reference: str, metrics: Iterable[str], *,
            by: Sequence[str] = (), confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0,
            test: str = "wilcoxon") -> pd.DataFrame:
    """Paired comparison of ``method`` with ``reference`` on each metric (and each group of ``by``).

    Parameters
    ----------
    results : pandas.DataFrame
        The runner's tidy table (columns ``image``, ``method``, ``metric``, ``value`` and those of ``by``).
    method, reference : str
        Method names in the table.
    metrics : iterable of str
        Metric names (their direction comes from :mod:`.metric_registry`).
    by : sequence of str
        Columns that split the table into separate comparisons (e.g. ``["model"]``).
    confidence, n_resamples, seed, test
        See :func:`paired_relative_change` and :func:`paired_test`.

    Returns
    -------
    pandas.DataFrame
        One row per group and metric, columns ``by`` + :data:`COMPARISON_COLUMNS`; ``relative_change``
        and its interval are fractions (0.5 = 50 % better).
    """
    rows = []
    for group, part in _groups(results, by):
        for metric in metrics:
            pairs = paired_values(part, method, reference, metric)
            a, b = pairs["method"].to_numpy(float), pairs["reference"].to_numpy(float)
            change, low, high = paired_relative_change(a, b, higher_is_better=_higher_is_better(metric),
                                                       confidence=confidence, n_resamples=n_resamples, seed=seed)
            rows.append({**group, "method": method, "reference": reference, "metric": metric, "n": int(a.size),
                         "mean_method": float(a.mean()) if a.size else np.nan,
                         "mean_reference": float(b.mean()) if b.size else np.nan,
                         "relative_change": change, "ci_low": low, "ci_high": high, "confidence": confidence,
                         "p_value": paired_test(a, b, test) if a.size else np.nan, "test": test})
    return pd.DataFrame(rows, columns=list(by) + COMPARISON_COLUMNS)


def compare_family(results: pd.DataFrame, pairs: Iterable[tuple[str, str]], metrics: Iterable[str], *,
                   by: Sequence[str] = (), alpha: float = 0.05, n_resamples: int = 9999, seed: int = 0,
                   test: str = "wilcoxon") -> pd.DataFrame:
    """Every comparison of one claim, corrected together.

    Runs :func:`compare` for each ``(method, reference)`` of ``pairs`` on each metric and group; with
    ``m`` comparisons in all, each interval is at level ``1 - alpha / m`` (Bonferroni) and the p-values
    are Holm-adjusted at family-wise level ``alpha``.

    Returns
    -------
    pandas.DataFrame
        :func:`compare`'s columns plus ``p_holm``, ``significant`` (Holm rejects at ``alpha``) and
        ``outcome``: ``"better"`` when the corrected interval lies above 0, ``"worse"`` when it lies
        below, ``"undecided"`` otherwise.
    """
    pairs, metrics = list(pairs), list(metrics)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n_groups = sum(1 for _ in _groups(results, by))
    m = max(1, len(pairs) * len(metrics) * n_groups)
    level = 1 - alpha / m
    table = pd.concat([compare(results, a, b, metrics, by=by, confidence=level, n_resamples=n_resamples, seed=seed,
                               test=test) for a, b in pairs], ignore_index=True) if pairs else \
        pd.DataFrame(columns=list(by) + COMPARISON_COLUMNS)
    reject, adjusted = holm(table["p_value"].to_numpy(float), alpha=alpha)
    table["p_holm"] = adjusted
    table["significant"] = reject
    table["outcome"] = interval_outcome(table["ci_low"], table["ci_high"])
    return table


def compare_to_references(results: pd.DataFrame, methods: Iterable[str], references: Iterable[str],
                          metrics: Iterable[str], *, by: Sequence[str] = (), alpha: float = 0.05,
                          n_resamples: int = 9999, seed: int = 0, test: str = "wilcoxon") -> pd.DataFrame:
    """Every method against every reference map (the yardsticks ``"whole-image"``, ``"centre-prior"``).

    One family per metric: all ``methods x references`` pairs on that metric (and every group of ``by``)
    go through :func:`compare_family` together, so that a metric's intervals hold jointly at level
    ``1 - alpha``. A method *beats* a reference on a metric in a group when its corrected interval of the
    relative change lies above 0 (``outcome == "better"``).

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`compare_family` for all metrics, one after the other (``confidence`` says the
        corrected level of each metric's family).
    """
    methods, references = list(methods), list(references)
    pairs = [(m, r) for m in methods for r in references if m != r]
    tables = [compare_family(results, pairs, [metric], by=by, alpha=alpha, n_resamples=n_resamples, seed=seed,
                             test=test) for metric in metrics]
    return pd.concat(tables, ignore_index=True) if tables else compare_family(results, [], [], by=by)


def beats_all_references(table: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """From :func:`compare_to_references`: per method, metric (and group), whether it beats *every*
    reference (``beats``: all its rows there are ``"better"``), and how many references it beats.

    Returns
    -------
    pandas.DataFrame
        Columns ``by`` + ``method``, ``metric``, ``n_references``, ``n_beaten``, ``beats``.
    """
    keys = list(by) + ["method", "metric"]
    if table.empty:
        return pd.DataFrame(columns=keys + ["n_references", "n_beaten", "beats"])
    better = table.assign(_better=table["outcome"] == "better")
    out = better.groupby(keys, observed=True, sort=False).agg(n_references=("reference", "nunique"),
                                                              n_beaten=("_better", "sum")).reset_index()
    out["n_beaten"] = out["n_beaten"].astype(int)
    out["beats"] = out["n_beaten"] == out["n_references"]
    return out
