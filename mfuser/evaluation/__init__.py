"""Multi-domain semantic-segmentation evaluation (one detectron2 ``SemSegEvaluator`` per target domain) and the
majority-class baseline (:mod:`.baselines`)."""
from .baselines import class_histogram, majority_class_baseline
from .multi_domain import (
    average_over_domains,
    build_sem_seg_evaluator,
    check_registered,
    evaluate_domains,
    format_results_table,
    summarize_sem_seg,
    write_results_json,
)

__all__ = [
    "average_over_domains",
    "build_sem_seg_evaluator",
    "check_registered",
    "class_histogram",
    "evaluate_domains",
    "format_results_table",
    "majority_class_baseline",
    "summarize_sem_seg",
    "write_results_json",
]
