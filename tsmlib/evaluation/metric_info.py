"""What each evaluation metric is, in one table: display name, unit, which direction is better.

Every chapter, figure and comparison reads a metric's direction and label from here, so that
"lower is better" is written once. The per-image formulas are in :mod:`tsmlib.evaluation.metrics`.

>>> metric_info("average_drop").higher_is_better
False
>>> metric_info("iou").label
'mIoU (higher is better)'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MetricInfo", "METRICS", "metric_info", "higher_is_better", "metric_label"]


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
    """

    name: str
    display: str
    unit: str
    higher_is_better: bool
    digits: int

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


def _m(name, display, unit, higher, digits):
    return name, MetricInfo(name, display, unit, higher, digits)


#: Every metric the runner writes, by code name.
METRICS: dict[str, MetricInfo] = dict([
    _m("average_drop", "Average Drop", "%", False, 1),
    _m("increase_in_confidence", "Increase in Confidence", "%", True, 1),
    _m("average_gain", "Average Gain", "%", True, 1),
    _m("similarity_drop", "Similarity drop", "%", False, 1),
    _m("mse", "MSE", "", False, 3),
    _m("iou", "mIoU", "", True, 3),
    _m("iou_auc", "IoU AUC", "", True, 3),
    _m("relevance_mass_accuracy", "Relevance mass accuracy", "", True, 3),
    _m("relevance_rank_accuracy", "Relevance rank accuracy", "", True, 3),
    _m("energy_pointing_game", "Energy pointing game", "", True, 3),
    _m("pointing_game", "Pointing game", "", True, 3),
    _m("deletion", "Deletion AUC", "", False, 3),
    _m("insertion", "Insertion AUC", "", True, 3),
])


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
