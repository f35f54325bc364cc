"""Every evaluation metric in one registry: what it is (display name, unit, direction, digits) and how
:func:`tsmlib.evaluation.evaluate` computes it (kind, per-batch function, thresholds).

Every chapter, figure and comparison reads a metric's direction and label from here, so that "lower is
better" is written once; the runner reads the same entry to compute it. The per-image formulas are in
:mod:`tsmlib.evaluation.metrics`. A new metric is one :func:`register_metric` call.

>>> metric_info("average_drop").higher_is_better
False
>>> metric_info("iou").label
'mIoU (higher is better)'
>>> metrics_of_kind("perturbation")
('deletion', 'insertion', 'road')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from . import metrics as M

__all__ = ["KINDS", "MetricInfo", "METRICS", "register_metric", "metric_info", "higher_is_better", "metric_label",
           "metrics_of_kind"]

#: What a metric's ``compute`` receives per batch of one method (see :class:`MetricInfo`).
KINDS = ("confidence", "mask", "perturbation")


@dataclass(frozen=True)
class MetricInfo:
    """One metric of the tidy table (the ``metric`` column of :func:`tsmlib.evaluation.evaluate`).

    Attributes
    ----------
    name : str
        The code name in the table (``"average_drop"``).
    display : str
        The name a reader sees (``"Average Drop"``).
    unit : str
        ``"%"`` or ``""`` (a fraction, a ratio or an AUC in [0, 1]).
    higher_is_better : bool
        The direction in which a saliency map is better.
    digits : int
        Decimals to print a mean with.
    kind : {"confidence", "mask", "perturbation"} or None
        What ``compute`` receives, per batch of one method (B images):

        * ``"confidence"``: ``compute(Y, O)`` with the scores of the full images ``Y`` (B,) and of the
          explanation-masked inputs ``O`` (B,) (masked once per batch for all confidence metrics);
        * ``"mask"``: ``compute(S, mask, config)`` with maps ``S`` (b, S, S) in [0, 1] and label masks
          (b, S, S) of the b images that have a mask, and the :class:`~tsmlib.evaluation.EvaluationConfig`;
        * ``"perturbation"``: ``compute(curves, config)`` with a mapping of the batch's perturbation
          results, each computed once, on first use: the keys of
          :func:`~tsmlib.evaluation.metrics.deletion_insertion_auc` (``"deletion"``, ``"insertion"``) and
          of :func:`~tsmlib.evaluation.road.road` (``"road"``, ``"morf"``, ``"lerf"``).

        None for a metric the runner does not compute (a name for rows made otherwise, such as
        ``"similarity_drop"``: Average Drop in the cosine score space, renamed by a chapter).
    compute : callable or None
        Returns (B,) values; with ``thresholds`` (``config -> sequence``) it returns (B, T), one row per
        threshold, and with ``threshold`` (``config -> float``) the rows record that threshold.
    threshold, thresholds : callable or None
    by_default : bool
        Computed by :func:`tsmlib.evaluation.evaluate` when no metrics are named (in ``ALL_METRICS``);
        False for a costly metric asked for by name (``"road"``).
    """

    name: str
    display: str
    unit: str
    higher_is_better: bool
    digits: int
    kind: str | None = None
    compute: Callable | None = field(default=None, repr=False)
    threshold: Callable | None = field(default=None, repr=False)
    thresholds: Callable | None = field(default=None, repr=False)
    by_default: bool = True

    def __post_init__(self):
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS} or None, got {self.kind!r}")
        if (self.kind is None) != (self.compute is None):
            raise ValueError(f"metric {self.name!r}: give kind and compute together (or neither, for a metric "
                             "the runner does not compute)")
        if self.threshold is not None and self.thresholds is not None:
            raise ValueError(f"metric {self.name!r}: give threshold or thresholds, not both")

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def axis_label(self) -> str:
        """``"Average Drop (%)"``: the label of a metric axis."""
        return f"{self.display} ({self.unit})" if self.unit else self.display

    @property
    def label(self) -> str:
        """``"Average Drop (%, lower is better)"``: an axis label that says the direction."""
        direction = "higher is better" if self.higher_is_better else "lower is better"
        return f"{self.display} ({self.unit}, {direction})" if self.unit else f"{self.display} ({direction})"


#: Every metric, by code name: those :func:`tsmlib.evaluation.evaluate` computes (in the order of the
#: table's rows within a kind), then the names of rows made otherwise.
METRICS: dict[str, MetricInfo] = {}


def register_metric(name: str, kind: str | None = None, compute: Callable | None = None, *, display: str,
                    higher_is_better: bool, unit: str = "", digits: int = 3, threshold: Callable | None = None,
                    thresholds: Callable | None = None, by_default: bool = True,
                    overwrite: bool = False) -> MetricInfo:
    """Add a metric to :data:`METRICS`; with ``kind`` and ``compute``, :func:`tsmlib.evaluation.evaluate`
    computes it when asked for it by name. The arguments are the fields of :class:`MetricInfo`.

    A name already registered raises ``ValueError`` unless ``overwrite=True``.
    """
    if name in METRICS and not overwrite:
        raise ValueError(f"a metric named {name!r} is already registered (pass overwrite=True)")
    info = MetricInfo(name, display, unit, bool(higher_is_better), int(digits), kind, compute, threshold, thresholds,
                      bool(by_default))
    METRICS[name] = info
    return info


def metric_info(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of a metric; a clear ``KeyError`` listing the known ones otherwise."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` means a better map."""
    return metric_info(name).higher_is_better


def metric_label(name: str) -> str:
    """The axis label of metric ``name`` with its unit and direction."""
    return metric_info(name).label


def metrics_of_kind(kind: str, metrics: Iterable[str] | None = None) -> tuple[str, ...]:
    """The computed metrics of ``kind`` (among ``metrics``, default all registered), in registry order."""
    chosen = set(METRICS if metrics is None else metrics)
    return tuple(n for n, info in METRICS.items() if info.kind == kind and n in chosen)


# ------------------------------------------------------------------------------------------ built-ins
def _mask_metric(fn: Callable) -> Callable:
    return lambda S, mk, c: fn(S, mk, void=c.void)


def _curve(key: str) -> Callable:
    return lambda curves, c: curves[key]


for _name, _display, _higher in (("average_drop", "Average Drop", False),
                                 ("increase_in_confidence", "Increase in Confidence", True),
                                 ("average_gain", "Average Gain", True)):
    register_metric(_name, "confidence", getattr(M, _name), display=_display, unit="%", higher_is_better=_higher,
                    digits=1)
register_metric("iou", "mask", lambda S, mk, c: M.iou(S, mk, c.iou_threshold, void=c.void),
                threshold=lambda c: c.iou_threshold, display="mIoU", higher_is_better=True)
register_metric("iou_curve", "mask", lambda S, mk, c: M.iou_curve(S, mk, c.thresholds, void=c.void),
                thresholds=lambda c: c.thresholds.tolist(), display="mIoU per threshold", higher_is_better=True)
register_metric("iou_auc", "mask", lambda S, mk, c: M.iou_auc(S, mk, c.thresholds, void=c.void),
                display="IoU AUC", higher_is_better=True)
for _name, _display, _higher in (("mse", "MSE", False), ("energy_pointing_game", "Energy pointing game", True),
                                 ("pointing_game", "Pointing game", True),
                                 ("relevance_mass_accuracy", "Relevance mass accuracy", True),
                                 ("relevance_rank_accuracy", "Relevance rank accuracy", True)):
    register_metric(_name, "mask", _mask_metric(getattr(M, _name)), display=_display, higher_is_better=_higher)
register_metric("deletion", "perturbation", _curve("deletion"), display="Deletion AUC", higher_is_better=False)
register_metric("insertion", "perturbation", _curve("insertion"), display="Insertion AUC", higher_is_better=True)
# ROAD (Rong et al. 2022; tsmlib.evaluation.road): the combined score (LeRF - MoRF) / 2 at the percentiles
# 10, ..., 90 with noisy linear imputation (noise 0.01, seed 0), in the run's score space. Not computed by
# default: it costs 18 imputations (linear solves) and forward passes per image and method.
register_metric("road", "perturbation", _curve("road"), display="ROAD", higher_is_better=True, by_default=False)
# not computed by the runner: Average Drop in the cosine score space, as chapter 6 names its rows
register_metric("similarity_drop", display="Similarity drop", unit="%", higher_is_better=False, digits=1)
del _name, _display, _higher
