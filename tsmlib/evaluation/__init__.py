"""Evaluation of saliency maps: the paper's metrics (Average Drop, Increase in Confidence, MSE, mIoU) and
more (Average Gain, deletion/insertion AUC, pointing games, the cascading randomisation sanity check),
one runner that produces a tidy, cached table, bootstrap summaries, and the paired comparisons of
:mod:`.stats` (relative change with a paired bootstrap interval, Wilcoxon test, Holm across a claim).

The protocol (formulas, masking rule, score space) is the one of the book's "Method specification" page; see
:mod:`tsmlib.evaluation.metrics` for the exact per-image formulas.

Typical use in a notebook::

    from tsmlib.evaluation import evaluate, summarize, paper_table
    df = evaluate(model, records, ["eigencam", "tsm", "multivec-eigencam", "mtsm", "lafam", "gradcam"],
                  layer=loaded.target_layer, model_name=loaded.name, cache_dir=".cache/eval",
                  max_images={"scorecam": 8})            # one row per image x method x metric
    summary = summarize(df)                              # mean + bootstrap 95 % CI per method and metric
    paper_table(summary)                                 # methods x (AD, IC, AG, MSE, IoU)
    sns.barplot(df[df.metric == "average_drop"], x="method", y="value", hue="label_free")

With the project's loaders: ``records = prepare_records(tsmlib.data.photos.PhotoSet(), loaded)``.
Otherwise ``records`` is any iterable of dicts ``{"image": (3, S, S) in [0, 1], "label": int | None,
"mask": (H, W) uint8 | None, "id": name}`` (or tuples ``(image, label, mask)``).
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
    foreground_and_valid,
    increase_in_confidence,
    iou,
    iou_auc,
    iou_curve,
    masked_input,
    mse,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from .runner import ALL_METRICS, COLUMNS, PAPER_METRICS, EvaluationConfig, Record, as_record, evaluate, prepare_records
from .sanity import (cascading_randomization, independent_randomization, model_randomization, noise_floor,
                     sanity_summary, spearman, ssim)
from .scores import ClassScore, EmbeddingSimilarity, make_score, probe_score
from .summary import best_iou_threshold, format_number, interval_cell, paper_table, summarize, summary_rows, summary_value
from . import stats
from .metric_registry import METRICS, MetricInfo, higher_is_better, metric_info, metric_label, register_metric
from .stats import (beats_all_references, compare, compare_family, compare_to_references, holm, interval_outcome,
                    mean_ci, paired_relative_change, paired_test, relative_change)

__all__ = [
    "IMAGENET_MEAN", "VOID", "average_drop", "average_gain", "baseline_image", "best_threshold", "blur",
    "default_thresholds", "deletion_insertion_auc", "energy_pointing_game", "foreground_and_valid", "increase_in_confidence", "iou",
    "iou_curve", "iou_auc", "masked_input", "mse", "pointing_game", "relevance_mass_accuracy",
    "relevance_rank_accuracy", "ALL_METRICS", "COLUMNS", "PAPER_METRICS", "Record",
    "EvaluationConfig", "register_metric",
    "as_record", "evaluate", "prepare_records", "cascading_randomization",
    "independent_randomization", "model_randomization", "noise_floor", "sanity_summary", "spearman", "ssim",
    "ClassScore", "EmbeddingSimilarity", "make_score", "probe_score", "best_iou_threshold",
    "summary_rows", "summary_value", "format_number", "interval_cell", "paper_table", "summarize", "stats",
    "METRICS", "MetricInfo", "higher_is_better", "metric_info", "metric_label",
    "compare", "compare_family", "compare_to_references", "beats_all_references", "holm", "interval_outcome",
    "mean_ci", "paired_relative_change", "paired_test", "relative_change",
]
