"""Scoring learners: metrics, episodic evaluation, statistics, results tables, plots and training curves.

Examples:
    >>> from torchcross.evaluation import summarize_values
    >>> s = summarize_values([0.7, 0.8, 0.9])
    >>> round(s.mean, 3), s.n
    (0.8, 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.evaluation.diverged import DIVERGED_RULES as DIVERGED_RULES
    from torchcross.evaluation.diverged import chance_scores as chance_scores
    from torchcross.evaluation.diverged import is_diverged as is_diverged
    from torchcross.evaluation.diverged import score_diverged as score_diverged
    from torchcross.evaluation.episodic import METRICS as METRICS
    from torchcross.evaluation.episodic import BatchPredictor as BatchPredictor
    from torchcross.evaluation.episodic import EvaluationResult as EvaluationResult
    from torchcross.evaluation.episodic import Predictor as Predictor
    from torchcross.evaluation.episodic import evaluate as evaluate
    from torchcross.evaluation.episodic import format_summary as format_summary
    from torchcross.evaluation.episodic import summarize as summarize
    from torchcross.evaluation.loggers import CSVLogger as CSVLogger
    from torchcross.evaluation.loggers import MetricsLogger as MetricsLogger
    from torchcross.evaluation.loggers import TensorBoardLogger as TensorBoardLogger
    from torchcross.evaluation.metrics import METRIC_NAMES as METRIC_NAMES
    from torchcross.evaluation.metrics import ORDINAL_METRIC_NAMES as ORDINAL_METRIC_NAMES
    from torchcross.evaluation.metrics import accuracy as accuracy
    from torchcross.evaluation.metrics import auroc as auroc
    from torchcross.evaluation.metrics import compute_metrics as compute_metrics
    from torchcross.evaluation.metrics import ordinal_mae as ordinal_mae
    from torchcross.evaluation.metrics import quadratic_weighted_kappa as quadratic_weighted_kappa
    from torchcross.evaluation.paired import paired_comparisons as paired_comparisons
    from torchcross.evaluation.paired import seed_spread as seed_spread
    from torchcross.evaluation.plotting import plot_metric as plot_metric
    from torchcross.evaluation.plotting import plot_shot_curve as plot_shot_curve
    from torchcross.evaluation.results import ResultsTable as ResultsTable
    from torchcross.evaluation.stats import PairedComparison as PairedComparison
    from torchcross.evaluation.stats import Summary as Summary
    from torchcross.evaluation.stats import holm_adjust as holm_adjust
    from torchcross.evaluation.stats import paired_difference as paired_difference
    from torchcross.evaluation.stats import sign_test as sign_test
    from torchcross.evaluation.stats import summarize_values as summarize_values
    from torchcross.evaluation.stats import t_quantile as t_quantile
    from torchcross.evaluation.stats import wilcoxon_signed_rank as wilcoxon_signed_rank

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DIVERGED_RULES": "diverged",
    "chance_scores": "diverged",
    "is_diverged": "diverged",
    "score_diverged": "diverged",
    "METRICS": "episodic",
    "EvaluationResult": "episodic",
    "Predictor": "episodic",
    "BatchPredictor": "episodic",
    "evaluate": "episodic",
    "format_summary": "episodic",
    "summarize": "episodic",
    "METRIC_NAMES": "metrics",
    "ORDINAL_METRIC_NAMES": "metrics",
    "accuracy": "metrics",
    "auroc": "metrics",
    "compute_metrics": "metrics",
    "ordinal_mae": "metrics",
    "quadratic_weighted_kappa": "metrics",
    "Summary": "stats",
    "summarize_values": "stats",
    "t_quantile": "stats",
    "PairedComparison": "stats",
    "paired_difference": "stats",
    "sign_test": "stats",
    "holm_adjust": "stats",
    "wilcoxon_signed_rank": "stats",
    "paired_comparisons": "paired",
    "seed_spread": "paired",
    "ResultsTable": "results",
    "plot_metric": "plotting",
    "plot_shot_curve": "plotting",
    "CSVLogger": "loggers",
    "MetricsLogger": "loggers",
    "TensorBoardLogger": "loggers",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
