"""Evaluation of saliency maps: the paper's metrics (Average Drop, Increase in Confidence, MSE, mIoU) and
more (Average Gain, deletion/insertion AUC, pointing games, the cascading randomisation sanity check),
one runner that produces a tidy, cached table, and bootstrap summaries.

The protocol (formulas, masking rule, score space) is the one of ``shared/method.md``; see
:mod:`tsmlib.evaluation.metrics` for the exact per-image formulas.
"""

from .metrics import (
    IMAGENET_MEAN,
    VOID,
    average_drop,
    average_gain,
    baseline_image,
    best_threshold,
    blur,
    default_thresholds,
    deletion_insertion_auc,
    energy_pointing_game,
    increase_in_confidence,
    iou,
    iou_curve,
    masked_input,
    mse,
    pointing_game,
)
from .runner import ALL_METRICS, COLUMNS, PAPER_METRICS, Record, as_record, config_hash, evaluate
from .sanity import cascading_randomization, sanity_summary, spearman, ssim
from .scores import ClassScore, EmbeddingSimilarity, make_score, probe_score
from .summary import best_iou_threshold, bootstrap_ci, paper_table, summarize

__all__ = [
    "IMAGENET_MEAN", "VOID", "average_drop", "average_gain", "baseline_image", "best_threshold", "blur",
    "default_thresholds", "deletion_insertion_auc", "energy_pointing_game", "increase_in_confidence", "iou",
    "iou_curve", "masked_input", "mse", "pointing_game", "ALL_METRICS", "COLUMNS", "PAPER_METRICS", "Record",
    "as_record", "config_hash", "evaluate", "cascading_randomization", "sanity_summary", "spearman", "ssim",
    "ClassScore", "EmbeddingSimilarity", "make_score", "probe_score", "best_iou_threshold", "bootstrap_ci",
    "paper_table", "summarize",
]
