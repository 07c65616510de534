"""Scoring learners: metrics, episodic evaluation, statistics, results tables, plots and training curves.

Examples:
    >>> from torchcross.evaluation import summarize_values
    >>> s = summarize_values([0.7, 0.8, 0.9])
    >>> round(s.mean, 3), s.n
    (0.8, 3)
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
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
    "wilcoxon_signed_rank": "stats",
    "paired_comparisons": "paired",
    "seed_spread": "paired",
    "ResultsTable": "results",
    "plot_metric": "plotting",
    "CSVLogger": "loggers",
    "MetricsLogger": "loggers",
    "TensorBoardLogger": "loggers",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
