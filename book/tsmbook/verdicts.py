"""Verdicts on the paper's claims, computed from a family of paired comparisons.

A claim of the paper ("TSM is about 50 % better than EigenCAM", "MTSM is the best", "competitive with
Grad-CAM") is tested in the book by one *family* of comparisons: every (method, reference) pair of the
claim on every metric of the claim (and every model, where the claim covers several), made by
:func:`tsmlib.evaluation.stats.compare_family`, whose intervals are Bonferroni-widened so that they hold
together. :func:`verdict` turns that table into one word, by a rule fixed before the numbers are seen.

The rule, per metric first. A metric's comparisons are all the rows of the family on that metric
(several pairs, several models); a row whose interval could not be computed (NaN: the reference mean is
0, or too few images) is left out, and a metric with no row left is *not computable*. On a computable
metric, the worst case over its rows decides:

* the metric is **better** when every row's corrected interval lies above 0, **worse** when at least one
  row's interval lies below 0, **undecided** otherwise;
* with a ``target`` (e.g. ``0.5`` for "50 % better"), the metric **reaches the target** when every row's
  interval contains it.

Then, with ``n`` the number of computable metrics and "a majority" meaning more than ``n / 2``:

``claim="better"`` (A is better than B; with ``target``, by about that much):

* **supported**: better on a majority of the metrics (and, with a target, reaching it on a majority);
* **partly supported**: better on at least one metric and worse on none (or supported but for the size
  of the effect);
* **not supported**: otherwise;
* **not testable here**: no computable metric.

``claim="not worse"`` (A is competitive with B):

* **supported**: not worse (better or undecided) on a majority of the metrics;
* **partly supported**: not worse on at least one metric;
* **not supported**: worse on every metric;
* **not testable here**: no computable metric.

"Not worse" is not "equivalent": with few images every interval is wide, and a wide interval that
contains 0 counts as not worse. The pages say so next to each such verdict.

**The random-weight control** (``control=``): the same comparisons made on a model of the same
architecture whose weights were never trained (:func:`tsmlib.models.randomise.randomised_copy`). A
*gain* (a row whose corrected interval lies above 0) is an **artefact of the metric** when the control
shows it too: the control's interval of the same (method, reference, metric) also lies above 0, or
overlaps the trained model's interval (:func:`control_outcomes`). A gain that a model which learnt nothing
shows as well, or that the data cannot tell apart from the random model's, is not evidence that the method
explains what the model learnt. A metric that would be *better* but has an artefact among its rows is
**artefact** instead; an artefact metric counts as neither better nor worse in the verdicts above (so it
can keep a "better" claim from being supported, and does not change a "not worse" claim). A gain whose
control comparison could not be computed stays a gain (``control_checked`` says so).

**The sanity check's verdicts** (chapter 9), on the tables of :mod:`tsmlib.evaluation.sanity`:
:func:`sanity_thresholds` derives two thresholds from the data (the noise floor of a tiny weight nudge, and
the random-map anchor), :func:`sanity_verdicts` reads one of :data:`SANITY_VERDICTS` per scheme and method
off a bootstrap interval, and :func:`label_free_verdict` turns those into the verdict on the chapter's
claim.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["VERDICTS", "CLAIMS", "CONTROL_KEYS", "control_outcomes", "metric_outcomes", "verdict", "verdict_detail",
           "SANITY_VERDICTS", "similarity_values", "sanity_thresholds", "sanity_verdicts", "label_free_verdict"]

#: The four possible verdicts.
VERDICTS = ("supported", "partly supported", "not supported", "not testable here")
#: The two kinds of claim :func:`verdict` knows.
CLAIMS = ("better", "not worse")
#: Columns that match a comparison with its counterpart on the control model.
CONTROL_KEYS = ("method", "reference", "metric")


def control_outcomes(family: pd.DataFrame, control: pd.DataFrame, *, on=CONTROL_KEYS) -> pd.DataFrame:
    """Each comparison of ``family`` next to the same comparison on the control model, and whether its gain
    is an artefact (the rule is in the module docstring).

    Parameters
    ----------
    family : pandas.DataFrame
        The claim's comparisons on the trained model(s) (:func:`tsmlib.evaluation.stats.compare_family`;
        columns ``on``, ``ci_low``, ``ci_high``). Rows for several trained models may share one control row.
    control : pandas.DataFrame
        The same comparisons on the control model (columns ``on``, ``relative_change``, ``ci_low``,
        ``ci_high``), one row per key.
    on : sequence of str
        The columns that match a row with its control row.

    Returns
    -------
    pandas.DataFrame
        ``family`` (same rows and order) plus ``control_change``, ``control_low``, ``control_high`` (NaN where
        the control has no finite interval for the key), ``gain`` (the trained interval lies above 0),
        ``control_checked`` (a finite control interval exists) and ``artefact`` (a gain the control shows too:
        its interval lies above 0 or overlaps the trained one).

    Examples
    --------
    >>> fam = pd.DataFrame({"method": ["tsm"] * 2, "reference": ["eigencam"] * 2, "metric": ["ad", "iou"],
    ...                     "ci_low": [0.3, 0.2], "ci_high": [0.6, 0.5]})
    >>> ctl = fam.assign(relative_change=[0.05, 0.0], ci_low=[0.01, -0.1], ci_high=[0.1, 0.1])
    >>> control_outcomes(fam, ctl)["artefact"].tolist()    # AD: the random model gains too
    [True, False]
    """
    on = list(on)
    for name, table in (("family", family), ("control", control)):
        missing = (set(on) | {"ci_low", "ci_high"}) - set(table.columns)
        if missing:
            raise KeyError(f"the {name} table lacks the column(s) {sorted(missing)}")
    if control.duplicated(on).any():
        raise ValueError(f"the control table has several rows for one key {on}: restrict it to one control model")
    ctl = control[on].copy()
    ctl["control_change"] = control["relative_change"] if "relative_change" in control else np.nan
    ctl["control_low"], ctl["control_high"] = control["ci_low"], control["ci_high"]
    out = family.drop(columns=[c for c in ("control_change", "control_low", "control_high") if c in family])
    out = out.reset_index(drop=True).merge(ctl, on=on, how="left", sort=False)
    low, high = out["ci_low"].to_numpy(float), out["ci_high"].to_numpy(float)
    c_low, c_high = out["control_low"].to_numpy(float), out["control_high"].to_numpy(float)
    gain = np.isfinite(low) & np.isfinite(high) & (low > 0)
    checked = np.isfinite(c_low) & np.isfinite(c_high)
    overlaps = (c_low <= high) & (c_high >= low)
    out["gain"] = gain
    out["control_checked"] = checked
    out["artefact"] = gain & checked & ((c_low > 0) | overlaps)
    out.index = family.index
    return out


def metric_outcomes(family: pd.DataFrame, *, target: float | None = None, control: pd.DataFrame | None = None,
                    on=CONTROL_KEYS) -> pd.DataFrame:
    """The per-metric worst case of a family table (the first step of :func:`verdict`).

    Parameters
    ----------
    family : pandas.DataFrame
        A table with the columns ``metric``, ``ci_low``, ``ci_high`` (that of
        :func:`tsmlib.evaluation.stats.compare_family`); intervals are fractions (0.5 = 50 % better).
    target : float, optional
        A relative change the claim states (0.5 for "50 % better").
    control : pandas.DataFrame, optional
        The same comparisons on the random-weight control (see :func:`control_outcomes`).
    on : sequence of str
        Columns matching a row with its control row.

    Returns
    -------
    pandas.DataFrame
        One row per metric, in order of first appearance: ``comparisons`` (rows computed),
        ``outcome`` (``"better"``, ``"worse"``, ``"undecided"``, ``"artefact"`` (only with a control: better,
        but a gain of one of its rows is an artefact), or ``"not computable"``), ``reaches_target`` (bool;
        False without a target or where not computable) and ``artefacts`` (rows whose gain is an artefact).
    """
    missing = {"metric", "ci_low", "ci_high"} - set(family.columns)
    if missing:
        raise KeyError(f"the family table lacks the column(s) {sorted(missing)}")
    # rows are matched by position: families joined by pd.concat without ignore_index repeat labels
    family = family.reset_index(drop=True)
    artefact = (control_outcomes(family, control, on=on)["artefact"] if control is not None
                else pd.Series(False, index=family.index))
    rows = []
    for metric in pd.unique(family["metric"]):
        part = family[family["metric"] == metric]
        low, high = part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float)
        ok = np.isfinite(low) & np.isfinite(high)
        low, high = low[ok], high[ok]
        if not low.size:
            outcome = "not computable"
        elif (high < 0).any():
            outcome = "worse"
        elif (low > 0).all():
            outcome = "better"
        else:
            outcome = "undecided"
        n_artefacts = int(artefact[part.index].sum())
        if outcome == "better" and n_artefacts:
            outcome = "artefact"
        reaches = bool(low.size and target is not None and ((low <= target) & (target <= high)).all())
        rows.append({"metric": metric, "comparisons": int(low.size), "outcome": outcome, "reaches_target": reaches,
                     "artefacts": n_artefacts})
    return pd.DataFrame(rows, columns=["metric", "comparisons", "outcome", "reaches_target", "artefacts"])


def verdict(family: pd.DataFrame, *, claim: str = "better", target: float | None = None,
            control: pd.DataFrame | None = None, on=CONTROL_KEYS) -> str:
    """One of :data:`VERDICTS` for a claim tested by ``family`` (the rule is in the module docstring).

    Parameters
    ----------
    family : pandas.DataFrame
        The claim's comparisons, as :func:`tsmlib.evaluation.stats.compare_family` returns them
        (columns ``metric``, ``ci_low``, ``ci_high``; the intervals already corrected for the family).
        An empty table is "not testable here".
    claim : {"better", "not worse"}
        What the claim says of the method(s) against the reference(s).
    target : float, optional
        The size of the claimed effect as a fraction (0.5 for "about 50 % better"); only with
        ``claim="better"``.
    control : pandas.DataFrame, optional
        The same comparisons on the random-weight control: a metric whose gain is an artefact
        (:func:`control_outcomes`) is not counted as better.
    on : sequence of str
        Columns matching a row with its control row.

    Examples
    --------
    >>> t = pd.DataFrame({"metric": ["ad", "iou"], "ci_low": [0.1, -0.2], "ci_high": [0.9, 0.3]})
    >>> verdict(t), verdict(t, claim="not worse")
    ('partly supported', 'supported')
    """
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    if target is not None and claim != "better":
        raise ValueError("a target size only applies to claim='better'")
    per_metric = metric_outcomes(family, target=target, control=control, on=on)
    per_metric = per_metric[per_metric["outcome"] != "not computable"]
    n = len(per_metric)
    if n == 0:
        return "not testable here"
    outcome = per_metric["outcome"]
    n_better, n_worse = int((outcome == "better").sum()), int((outcome == "worse").sum())
    majority = n / 2
    if claim == "not worse":
        n_ok = n - n_worse
        return "supported" if n_ok > majority else "partly supported" if n_ok >= 1 else "not supported"
    reaches = int(per_metric["reaches_target"].sum()) if target is not None else n
    if n_better > majority and reaches > majority:
        return "supported"
    if n_better >= 1 and n_worse == 0 or n_better > majority:
        return "partly supported"
    return "not supported"


def verdict_detail(family: pd.DataFrame, *, target: float | None = None, control: pd.DataFrame | None = None,
                   on=CONTROL_KEYS) -> str:
    """One line that says what decided a verdict: each metric's worst-case outcome and the family's size
    (with a ``control``, a metric whose gain is an artefact reads "artefact of the metric (gain also on the
    random-weight control)").

    >>> t = pd.DataFrame({"metric": ["average_drop", "iou"], "ci_low": [0.1, -0.2], "ci_high": [0.9, 0.3],
    ...                   "confidence": [0.975, 0.975]})
    >>> verdict_detail(t, target=0.5)
    'Average Drop better (+50 % inside), mIoU undecided; 2 comparisons, 97.5 % intervals'
    """
    from tsmlib.evaluation.metric_registry import METRICS

    per_metric = metric_outcomes(family, target=target, control=control, on=on)
    if per_metric.empty:
        return "no comparison"
    shown = f"+{100 * target:.0f} % inside" if target is not None else ""
    words = {"artefact": "artefact of the metric (gain also on the random-weight control)"}
    parts = [(METRICS[r.metric].display if r.metric in METRICS else str(r.metric)) + f" {words.get(r.outcome, r.outcome)}"
             + (f" ({shown})" if r.reaches_target else "") for r in per_metric.itertuples()]
    level = family["confidence"].dropna() if "confidence" in family else pd.Series(dtype=float)
    level = f", {100 * float(level.iloc[0]):.1f} % intervals" if len(level) else ""
    return f"{', '.join(parts)}; {len(family)} comparisons{level}"


# ------------------------------------------------------------------------------------------------
# The sanity check's verdicts (on tsmlib.evaluation.sanity's tables)

#: The four verdicts of :func:`sanity_verdicts`.
SANITY_VERDICTS = ("stays similar", "changes partly", "as different as a random map", "undecided")


def similarity_values(df: pd.DataFrame, similarity: str = "spearman", *, absolute: bool | None = None) -> pd.DataFrame:
    """The rows of one similarity, as the verdicts read them: ``|value|`` when ``absolute`` (default: for
    Spearman only; an inverted map keeps its ranking, while a negative SSIM is a real dissimilarity), and NaN
    (Spearman's rho of a *constant* map, e.g. a Grad-CAM that a random network leaves all zero) as 0: a
    constant map keeps no ranking of the trained one's pixels."""
    df = df[df["similarity"] == similarity].copy()
    if df.empty:
        raise ValueError(f"no {similarity!r} rows in the results")
    df["value"] = df["value"].fillna(0.0)
    if absolute is None:
        absolute = similarity == "spearman"
    if absolute:
        df["value"] = df["value"].abs()
    return df


def sanity_thresholds(floor: pd.DataFrame, results: pd.DataFrame, *, methods: Sequence[str], random_method: str,
                      similarity: str = "spearman", absolute: bool | None = None, quantile: float = 0.05) -> dict:
    """The two thresholds of :func:`sanity_verdicts`, derived from the data rather than chosen.

    * ``similar``: the ``quantile`` of the per-image similarities of ``methods`` under a tiny nudge of the
      weights (:func:`tsmlib.evaluation.sanity.noise_floor`), pooled over methods and images: a similarity at least this high is
      indistinguishable from noise-level change.
    * ``random``: the ``1 - quantile`` quantile of the random-map anchor's per-image similarities over
      every randomisation step (``step > 0``) of ``results``: up to this, a map is as unrelated as a
      random one.

    Values are read by :func:`similarity_values` (``absolute``: ``|rho|`` for Spearman by default; NaN
    counts as 0). Raises
    ``ValueError`` when the two overlap (``random >= similar``): the check could not tell the cases apart.
    """
    if not 0 < quantile < 0.5:
        raise ValueError(f"quantile must be in (0, 0.5), got {quantile}")
    fl = similarity_values(floor, similarity, absolute=absolute)
    fl = fl[(fl["step"] > 0) & fl["method"].isin(list(methods))]["value"].dropna()
    rnd = similarity_values(results, similarity, absolute=absolute)
    rnd = rnd[(rnd["step"] > 0) & (rnd["method"] == random_method)]["value"].dropna()
    if fl.empty:
        raise ValueError(f"the noise floor has no rows for {list(methods)}")
    if rnd.empty:
        raise ValueError(f"the results have no rows of the random anchor {random_method!r}")
    out = {"similar": float(np.quantile(fl, quantile)), "random": float(np.quantile(rnd, 1 - quantile))}
    if out["random"] >= out["similar"]:
        raise ValueError(f"thresholds overlap ({out}): the random anchor is as similar as the noise floor")
    return out


def sanity_verdicts(results: pd.DataFrame, *, similar: float, random: float, similarity: str = "spearman",
                    absolute: bool | None = None, confidence: float = 0.95, n_resamples: int = 9999,
                    seed: int = 0) -> pd.DataFrame:
    """Per scheme and method: does the map stay similar once the weights are randomised?

    The statistic, per scheme: ``"cascading"``: the similarity at the last step (every listed block
    re-initialised); ``"independent"``: the similarity at the step whose randomisation lowers the method's
    mean similarity most (the block the map depends on most). Its mean over the images gets a bootstrap
    interval (:func:`tsmlib.evaluation.stats.mean_ci`; values read by :func:`similarity_values`: ``|rho|``,
    a constant map as 0), and the rule is:

    * **stays similar**: the interval reaches ``similar`` (its upper end >= ``similar``): the change cannot
      be told apart from noise-level change, the check *fails* for this method;
    * **as different as a random map**: the interval reaches ``random`` (lower end <= ``random``);
    * **changes partly**: between the two; **undecided**: the interval reaches both, or there is none (fewer
      than two images).

    Parameters
    ----------
    results : DataFrame
        Rows of :func:`tsmlib.evaluation.sanity.model_randomization` (one or both schemes concatenated).
    similar, random : float
        The thresholds of :func:`sanity_thresholds`.

    Returns
    -------
    DataFrame indexed by ``(scheme, method)``: ``step``, ``block`` (``layer_randomized``), ``mean``,
    ``ci_low``, ``ci_high``, ``verdict``.
    """
    from tsmlib.evaluation.stats import mean_ci

    if not random < similar:
        raise ValueError(f"need random < similar, got random={random}, similar={similar}")
    df = similarity_values(results, similarity, absolute=absolute)
    if "scheme" not in df:
        df = df.assign(scheme="cascading")
    rows = []
    for (scheme, method), d in df[df["step"] > 0].groupby(["scheme", "method"], sort=False):
        means = d.groupby("step")["value"].mean()
        step = int(means.index.max()) if scheme != "independent" else int(means.idxmin())
        at = d[d["step"] == step]
        vals = at["value"].to_numpy()
        lo, hi = mean_ci(vals, confidence=confidence, n_resamples=n_resamples, seed=seed)
        # no interval (fewer than two images): it reaches neither threshold nor excludes either: undecided
        no_interval = not (np.isfinite(lo) and np.isfinite(hi))
        reaches_similar, reaches_random = no_interval or hi >= similar, no_interval or lo <= random
        verdict = ("undecided" if reaches_similar and reaches_random else "stays similar" if reaches_similar
                   else "as different as a random map" if reaches_random else "changes partly")
        rows.append({"scheme": scheme, "method": method, "step": step,
                     "block": at["layer_randomized"].iloc[0], "mean": float(vals.mean()) if vals.size else np.nan,
                     "ci_low": lo, "ci_high": hi, "verdict": verdict})
    if not rows:
        raise ValueError("no randomisation steps (step > 0) in the results")
    return pd.DataFrame(rows).set_index(["scheme", "method"])


def label_free_verdict(verdicts: pd.DataFrame, label_free: Sequence[str]) -> dict:
    """The verdict on "the label-free maps explain the model", from :func:`sanity_verdicts`.

    The rule: **not testable here** without label-free methods; **not supported** when one of them stays
    similar (or is undecided) under any scheme; **partly supported** when none does but some change only
    partly; **supported** when every one is as different as a random map under every scheme.

    Parameters
    ----------
    verdicts : DataFrame
        :func:`sanity_verdicts` output, indexed by ``(scheme, method)``.
    label_free : sequence of str
        The label-free methods the claim is about (each must be in ``verdicts`` under every scheme).

    Returns
    -------
    dict
        ``verdict``; ``failing`` (methods that stay similar or are undecided somewhere); ``partly``
        (method -> the schemes where it changes only partly); ``at_chance`` (method -> the schemes where
        it is as different as a random map); methods in the order given.

    >>> v = pd.DataFrame({"scheme": ["cascading"] * 2 + ["independent"] * 2, "method": ["a", "b"] * 2,
    ...                   "verdict": ["changes partly", "as different as a random map"] + ["as different as a random map"] * 2}
    ...                  ).set_index(["scheme", "method"])
    >>> r = label_free_verdict(v, ["a", "b"])
    >>> r["verdict"], r["partly"], r["failing"]
    ('partly supported', {'a': ['cascading']}, [])
    """
    schemes = list(dict.fromkeys(verdicts.index.get_level_values("scheme")))
    missing = [(s, m) for s in schemes for m in label_free if (s, m) not in verdicts.index]
    if missing:
        raise KeyError(f"no verdict for {missing}; the verdicts cover {sorted(set(verdicts.index))}")

    def where(method, wanted):
        return [s for s in schemes if verdicts.loc[(s, method), "verdict"] in wanted]

    failing = [m for m in label_free if where(m, ("stays similar", "undecided"))]
    partly = {m: where(m, ("changes partly",)) for m in label_free if where(m, ("changes partly",))}
    at_chance = {m: where(m, ("as different as a random map",)) for m in label_free
                 if where(m, ("as different as a random map",))}
    verdict = ("not testable here" if not label_free else "not supported" if failing
               else "partly supported" if partly else "supported")
    return {"verdict": verdict, "failing": failing, "partly": partly, "at_chance": at_chance}
